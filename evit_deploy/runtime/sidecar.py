"""Engine sidecars: the ``<artifact>.json`` written beside a built engine (``model.engine.json``,
``model.pt2.json``) recording what it was built for, so the runtime can refuse it elsewhere before loading it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import EvitError
from ..files import atomic_write


def sidecar_path(artifact: str | Path) -> Path:
    """``model.engine`` → ``model.engine.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def read_sidecar(artifact: str | Path) -> dict[str, Any] | None:
    """The sidecar of ``artifact`` (None when there is none; a one-line EvitError when it is not a JSON object)."""
    path = sidecar_path(artifact)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise EvitError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise EvitError(f"{path} is not an engine sidecar (expected a JSON object)")
    return data


def write_sidecar(artifact: str | Path, data: dict[str, Any]) -> Path:
    """Write the sidecar of ``artifact`` atomically; returns its path."""
    path = sidecar_path(artifact)
    atomic_write(path, json.dumps(data, indent=2) + "\n")
    return path
