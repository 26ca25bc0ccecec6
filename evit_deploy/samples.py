"""Sample photos for demos and validation: the public-domain images bundled with scikit-image."""

from __future__ import annotations

import numpy as np

SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def sample_photo(name: str = "chelsea") -> np.ndarray:
    """An HxWx3 uint8 RGB photo shipped inside scikit-image (no download)."""
    from skimage import data

    if name not in SAMPLE_PHOTOS:
        raise ValueError(f"unknown sample photo {name!r}; choose one of {', '.join(SAMPLE_PHOTOS)}")
    return np.ascontiguousarray(getattr(data, name)())


def sample_photos() -> dict[str, np.ndarray]:
    return {name: sample_photo(name) for name in SAMPLE_PHOTOS}
