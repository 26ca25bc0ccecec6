"""Colour palettes for segmentation label maps, by dataset (a registry, not an if-chain)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

# The standard Cityscapes train-id palette (cityscapesScripts' labels.py), in train-id order.
CITYSCAPES_PALETTE = np.array(
    [
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
        (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
        (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ],
    dtype=np.uint8,
)


def bit_spread_palette(n: int, offset: int = 1) -> np.ndarray:
    """``n`` distinct deterministic colours: the PASCAL VOC bit-spreading colour map of ids ``offset..offset+n-1``.

    Every id below 256 gets a different colour (the id's bits are spread over the three channels).
    """
    colors = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        cid, r, g, b = i + offset, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((cid >> 0) & 1) << shift
            g |= ((cid >> 1) & 1) << shift
            b |= ((cid >> 2) & 1) << shift
            cid >>= 3
        colors[i] = (r, g, b)
    return colors


def ade20k_palette() -> np.ndarray:
    """150 distinct colours for ADE20K. Deterministic, but NOT the official ADE20K/MMSeg palette."""
    return bit_spread_palette(150)


PALETTES: dict[str, Callable[[], np.ndarray]] = {
    "cityscapes": lambda: CITYSCAPES_PALETTE,
    "ade20k": ade20k_palette,
}


@cache
def palette_for(dataset: str, num_classes: int) -> np.ndarray:
    """``[num_classes, 3]`` uint8 colours for a dataset; unknown datasets get :func:`bit_spread_palette`."""
    maker = PALETTES.get(dataset)
    colors = maker() if maker is not None else bit_spread_palette(num_classes)
    if len(colors) < num_classes:
        colors = np.concatenate([colors, bit_spread_palette(num_classes - len(colors), offset=len(colors) + 1)])
    out = np.ascontiguousarray(colors[:num_classes])
    out.setflags(write=False)
    return out
