"""Class names of the zoo's label sets (``models/labels/<name>.txt``)."""

from __future__ import annotations

from functools import cache

from .._paths import data_dir
from ..errors import EvitError


@cache
def _entries(label_set: str) -> tuple[tuple[str, str], ...]:
    """(id, name) per class in index order; a line is ``name`` or ``id<TAB>name``; ``#`` starts a comment line."""
    path = data_dir("models") / "labels" / f"{label_set}.txt"
    if not path.is_file():
        raise EvitError(f"unknown label set '{label_set}' (no {path})")
    lines = [line.rstrip("\n") for line in path.read_text().splitlines()]
    pairs = [line.split("\t") for line in lines if line and not line.startswith("#")]
    return tuple((p[0] if len(p) > 1 else "", p[-1]) for p in pairs)


def class_names(label_set: str) -> tuple[str, ...]:
    """Names in index order."""
    return tuple(name for _, name in _entries(label_set))


def class_ids(label_set: str) -> tuple[str, ...]:
    """The dataset's own class ids in index order (ImageNet: WordNet ids such as ``n01440764``)."""
    return tuple(cid for cid, _ in _entries(label_set))
