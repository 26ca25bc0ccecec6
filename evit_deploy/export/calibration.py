"""Calibration inputs for full-integer (int8) quantization: a folder of images, or the bundled sample photos.

Images are pre-processed exactly like the validation photos, by the card's ``preprocess`` block
(:func:`evit_deploy.processing.preprocess`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import EvitError
from ..images import IMAGE_SUFFIXES, is_image_file, load_rgb
from ..processing import InputFacts, preprocess
from ..samples import SAMPLE_PHOTOS, sample_photo

MAX_IMAGES = 100  # calibration cost grows linearly; min/max statistics settle well before this


class CalibrationWarning(UserWarning):
    """Calibration fell back to the bundled sample photos, or skipped files of the --calib folder."""


@dataclass
class CalibrationSet:
    """Pre-processed calibration inputs (``[1,3,H,W]`` each) and where they came from."""

    inputs: list[torch.Tensor]
    source: str  # human-readable, recorded in the artifact notes


def find_images(folder: Path) -> list[Path]:
    """Image files of ``folder`` (sorted; not recursive). Raises EvitError on a missing/empty/image-less folder."""
    if not folder.exists():
        raise EvitError(f"--calib folder not found: {folder}")
    if not folder.is_dir():
        raise EvitError(f"--calib must be a folder of images, but {folder} is a file")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise EvitError(f"--calib folder {folder} is empty: put representative images (.jpg, .png, ...) in it")
    images = [p for p in files if is_image_file(p)]
    if not images:
        names = ", ".join(p.name for p in files[:3]) + (", ..." if len(files) > 3 else "")
        raise EvitError(f"--calib folder {folder} has no image files (found {len(files)} other files: {names}); "
                        f"accepted: {', '.join(sorted(IMAGE_SUFFIXES))}")
    skipped = len(files) - len(images)
    if skipped:
        warnings.warn(f"--calib: ignoring {skipped} non-image files in {folder}", CalibrationWarning, stacklevel=2)
    if len(images) > MAX_IMAGES:
        warnings.warn(f"--calib: using the first {MAX_IMAGES} of {len(images)} images in {folder} (sorted by name)",
                      CalibrationWarning, stacklevel=2)
    return images[:MAX_IMAGES]


def calibration_set(folder: Path | None, card: InputFacts, size: tuple[int, int], min_images: int = 1
                    ) -> CalibrationSet:
    """Calibration inputs from ``folder`` (``--calib``; at least ``min_images``), or the bundled sample photos with
    a warning."""
    if folder is None:
        warnings.warn(
            "int8 calibration: no --calib folder given, calibrating on the bundled sample photos "
            f"({', '.join(SAMPLE_PHOTOS)}); pass --calib DIR with images like your deployment data",
            CalibrationWarning, stacklevel=2,
        )
        inputs = [preprocess(sample_photo(name), card, size) for name in SAMPLE_PHOTOS]
        return CalibrationSet(inputs, f"{len(inputs)} bundled sample photos (no --calib given)")
    folder = Path(folder)
    images = find_images(folder)
    if len(images) < min_images:
        raise EvitError(f"--calib folder {folder} has {len(images)} image(s); int8 calibration needs at least "
                        f"{min_images} (images like your deployment data)")
    inputs = []
    for path in images:
        try:
            image = load_rgb(path)
        except EvitError as exc:
            raise EvitError(f"--calib: {exc}") from None
        inputs.append(preprocess(image, card, size))
    return CalibrationSet(inputs, f"{len(inputs)} images from {folder}")
