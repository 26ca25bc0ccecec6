"""Which images an input names: files, folders (the images directly inside), glob patterns and list files.

Shared by ``predict`` (both engines), the Ray Data job and :meth:`Predictor.stream`'s image sources.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import EvitError
from ..images import IMAGE_SUFFIXES, is_image_file

LIST_SUFFIXES = (".txt", ".lst")  # an input file with these suffixes lists image paths, one a line
_GLOB_CHARS = frozenset("*?[")


def is_uri(path: str) -> bool:
    return "://" in path


def _folder_images(folder: Path) -> list[str]:
    return sorted(str(f) for f in folder.iterdir() if is_image_file(f) and f.is_file())


def _listed(list_file: Path, uris: bool) -> list[str]:
    """The paths a list file names (one a line, ``#`` comments; relative paths are relative to the list's folder)."""
    found = []
    for n, line in enumerate(list_file.read_text(errors="replace").splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if is_uri(entry):
            if not uris:
                raise EvitError(f"{list_file}:{n}: {entry} is a URI; only --engine ray reads those")
            found.append(entry)
            continue
        path = Path(entry) if Path(entry).is_absolute() else list_file.parent / entry
        if not path.is_file():
            raise EvitError(f"{list_file}:{n}: image not found: {path}")
        found.append(str(path))
    return found


def collect_images(inputs: Iterable[str], uris: bool = False) -> list[str]:
    """Image paths from the inputs: files as given; folders → the image files directly inside (sorted); glob
    patterns (``'photos/**/*.jpg'``) → the matching image files (sorted); list files (``.txt``, ``.lst``) → the
    paths they name. ``uris``: inputs and list entries may be URIs (``s3://...``), which Ray Data reads."""
    found: list[str] = []
    for text in inputs:
        p = Path(text)
        if uris and is_uri(text):
            found.append(text)
        elif p.is_dir():
            found += _folder_images(p)
        elif p.is_file() and p.suffix.lower() in LIST_SUFFIXES:
            found += _listed(p, uris)
        elif p.is_file():
            found.append(str(p))
        elif _GLOB_CHARS & set(text):
            matches = sorted(m for m in glob.glob(text, recursive=True) if is_image_file(m) and os.path.isfile(m))
            if not matches:
                raise EvitError(f"no image files match {text}")
            found += matches
        else:
            raise EvitError(f"image not found: {p}")
    if not found:
        raise EvitError("no images to predict on (folders are searched for " + ", ".join(sorted(IMAGE_SUFFIXES)) + ")")
    return found
