"""Class names of the zoo's label sets (``models/labels/<name>.txt``)."""

from __future__ import annotations

from functools import cache

from .._paths import data_dir
from ..errors import EvitError


@cache
def class_names(label_set: str) -> tuple[str, ...]:
    """Names in index order; a line is ``name`` or ``id<TAB>name``; ``#`` starts a comment line."""
    path = data_dir("models") / "labels" / f"{label_set}.txt"
    if not path.is_file():
        raise EvitError(f"unknown label set '{label_set}' (no {path})")
    lines = [line.rstrip("\n") for line in path.read_text().splitlines()]
    return tuple(line.split("\t")[-1] for line in lines if line and not line.startswith("#"))
