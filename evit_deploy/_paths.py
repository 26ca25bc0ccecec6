"""Where the data folders (model cards, export profiles, latency data) live.

In a source checkout they are the top-level folders; in an installed wheel they are package data under
``evit_deploy/_data`` (see ``[tool.setuptools]`` in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Folder of a shipped data set: ``models``, ``export_profiles`` or ``latency``."""
    installed = _PACKAGE / "_data" / name
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / name
