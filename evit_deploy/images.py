"""Decoding images: the one place that turns a file, bytes, PIL image or array into an upright 8-bit RGB image.

Every decoder of the package (CLI, server, calibration, validation photos) comes here, so all of them:

- check the pixel count from the header before decoding (decompression bombs → :class:`ImageTooLarge`);
- apply the EXIF orientation (phone photos are stored sideways with a rotate tag);
- scale 16-bit and 32-bit grayscale (``I;16``, ``I``, ``F``) to 8 bits instead of saturating them;
- drop alpha, expand palettes, convert CMYK/YCbCr/LAB to RGB.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import EvitError, one_line
from .limits import LIMITS

ImageLike = str | os.PathLike | bytes | Image.Image | np.ndarray
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF", "PPM")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"})


class ImageError(EvitError):
    """An input that cannot be read as an RGB image."""


class ImageTooLarge(ImageError):
    """An encoded image with more pixels than allowed (decompression-bomb guard)."""


def is_image_file(path: str | os.PathLike) -> bool:
    return os.path.splitext(str(path))[1].lower() in IMAGE_SUFFIXES


def _to_8bit(img: Image.Image) -> Image.Image:
    """High-bit-depth grayscale → 8-bit ``L``: 16-bit values scale by 255/65535, floats and wider integers by their
    own range when it exceeds 0..255."""
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        scaled = arr.astype(np.float64) * (255.0 / 65535.0)
    else:  # "I" (32-bit int: how some decoders give 16-bit PNGs) or "F"
        arr = np.nan_to_num(arr.astype(np.float64))
        top = float(arr.max()) if arr.size else 0.0
        scaled = arr if top <= 255.0 else arr * (255.0 / (65535.0 if top <= 65535.0 else top))
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def upright_rgb(img: Image.Image, upright: bool = True) -> Image.Image:
    """An opened PIL image → RGB (EXIF orientation applied unless ``upright=False``, bit depth scaled, alpha
    dropped). Datasets whose labels are in the stored pixel frame are read with ``upright=False``."""
    try:
        img = ImageOps.exif_transpose(img) if upright else img
    except (OSError, ValueError, SyntaxError, TypeError) as exc:  # a corrupt EXIF block: keep the pixels as stored
        warnings.warn(f"ignoring unreadable EXIF orientation ({exc})", stacklevel=3)
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit(img)
    return img if img.mode == "RGB" else img.convert("RGB")


def open_image(source: str | os.PathLike | bytes, max_pixels: int | None = None, upright: bool = True,
               name: str | None = None) -> Image.Image:
    """A file path or encoded bytes → RGB image (upright unless ``upright=False``), checking the pixel count
    before decoding. Errors name ``name``, else the path, else "payload"."""
    limit = max_pixels or LIMITS.max_image_pixels
    what = name or ("payload" if isinstance(source, bytes) else str(source))
    if isinstance(source, bytes) and not source and name is None:
        raise ImageError("empty image payload")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            handle = io.BytesIO(source) if isinstance(source, bytes) else source
            with Image.open(handle, formats=IMAGE_FORMATS) as img:
                if img.width * img.height > limit:
                    raise ImageTooLarge(f"{what}: image is {img.width}x{img.height} pixels; the limit is {limit} "
                                        "pixels")
                img.load()
                return upright_rgb(img, upright)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(f"{what}: image has more than {limit} pixels (decompression bomb guard)") from None
    except FileNotFoundError:
        raise ImageError(f"image not found: {what}") from None
    except IsADirectoryError:
        raise ImageError(f"{what} is a folder, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{what} is not an image in a supported format ({', '.join(IMAGE_FORMATS)})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"{what} is not a decodable image: {one_line(exc, 120)}") from None


def load_rgb(image: ImageLike, max_pixels: int | None = None, upright: bool = True) -> Image.Image:
    """A file path, encoded bytes, PIL image or uint8 array (HxW, HxWx3 RGB, HxWx4 RGBA) as an RGB image, upright
    unless ``upright=False`` (evaluation datasets label the pixels as stored)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ImageError(f"expected a uint8 image array, got dtype {image.dtype}")
        if image.ndim == 2 and min(image.shape) > 0:
            return Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
        if image.ndim == 3 and image.shape[2] in (3, 4) and image.shape[0] > 0 and image.shape[1] > 0:
            return Image.fromarray(np.ascontiguousarray(image[..., :3]))
        raise ImageError(f"expected an HxW, HxWx3 or HxWx4 image array, got shape {tuple(image.shape)}")
    if isinstance(image, Image.Image):
        return upright_rgb(image, upright)
    if isinstance(image, (str, os.PathLike, bytes)):
        return open_image(image, max_pixels, upright)
    raise ImageError(f"expected a file path, bytes, PIL image or numpy array, got {type(image).__name__}")
