"""Overlay images: a segmentation colour map over the photo, SAM masks with their prompts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .palettes import bit_spread_palette


def colorize(label_map: np.ndarray, palette: np.ndarray) -> Image.Image:
    """``[H,W]`` class ids → RGB image with ``palette[id]``."""
    return Image.fromarray(np.asarray(palette, dtype=np.uint8)[label_map])


def segmentation_overlay(image: Image.Image, label_map: np.ndarray, palette: np.ndarray,
                         alpha: float = 0.5) -> Image.Image:
    """The photo blended with its colour map (``alpha`` = weight of the colours)."""
    colors = colorize(label_map, palette)
    return Image.blend(image.convert("RGB"), colors, alpha)


def mask_overlay(image: Image.Image, masks: np.ndarray, points: Sequence[Sequence[float]] = (),
                 point_labels: Sequence[int] = (), box: Sequence[float] | None = None,
                 alpha: float = 0.5) -> Image.Image:
    """Binary masks ``[K,H,W]`` tinted over the photo (one colour each), foreground points green, background
    points red, the box outlined."""
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    colors = bit_spread_palette(len(masks), offset=1).astype(np.float32)
    for mask, color in zip(np.asarray(masks, dtype=bool), colors):
        base[mask] = (1 - alpha) * base[mask] + alpha * color
    out = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    radius = max(3, round(max(out.size) / 150))
    for (x, y), label in zip(points, list(point_labels) or [1] * len(points)):
        fill = (0, 220, 0) if label == 1 else (230, 0, 0)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill, outline=(255, 255, 255))
    if box is not None:
        draw.rectangle(tuple(float(v) for v in box), outline=(0, 160, 255), width=max(2, radius // 2))
    return out


def caption_overlay(image: Image.Image, text: str) -> Image.Image:
    """The photo with ``text`` in a dark box at its top left (classification: label and score), the font scaled
    to the image (1/18 of its shorter side, at least 10 px)."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    size = max(10, round(min(out.size) / 18))
    font = ImageFont.load_default(size=size)
    pad = max(2, size // 4)
    left, top, right, bottom = draw.textbbox((pad, pad), text, font=font)
    draw.rectangle((0, 0, right + pad, bottom + pad), fill=(0, 0, 0))
    draw.text((pad, pad), text, fill=(255, 255, 255), font=font)
    return out
