"""Pre- and post-processing as in the official evaluation code (architecture.md §10)."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from .images import ImageLike, load_rgb

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

def normalize(image: Image.Image, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """RGB PIL image → normalised ``[1,3,H,W]`` float32 tensor."""
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return ((x - mean_t) / std_t).unsqueeze(0).contiguous()


def classification_input(image: ImageLike, resolution: int, crop_ratio: float = 0.95) -> torch.Tensor:
    """ImageNet evaluation transform: shorter side → ceil(r / crop_ratio) (bicubic), centre crop r, normalise."""
    img = load_rgb(image)
    short = math.ceil(resolution / crop_ratio)
    w, h = img.size
    if w <= h:
        size = (short, int(short * h / w))
    else:
        size = (int(short * w / h), short)
    img = img.resize(size, Image.BICUBIC)
    w, h = img.size
    top = int(round((h - resolution) / 2.0))
    left = int(round((w - resolution) / 2.0))
    return normalize(img.crop((left, top, left + resolution, top + resolution)))


def resized_input(image: ImageLike, size: tuple[int, int]) -> torch.Tensor:
    """Resize to exactly (H, W) with bicubic interpolation and normalise (segmentation-style input)."""
    img = load_rgb(image)
    h, w = size
    return normalize(img.resize((w, h), Image.BICUBIC))


SAM_MEAN = (123.675 / 255, 116.28 / 255, 103.53 / 255)
SAM_STD = (58.395 / 255, 57.12 / 255, 57.375 / 255)


def sam_resized_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(H, W) after scaling the longer side to ``long_side`` (SAM's rounding rule)."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def sam_input(image: ImageLike, side: int) -> torch.Tensor:
    """SAM encoder input: longer side → ``side`` (bilinear), normalise, zero-pad bottom/right to side×side."""
    img = load_rgb(image)
    h, w = sam_resized_size(img.height, img.width, side)
    if (h, w) != (img.height, img.width):
        img = img.resize((w, h), Image.BILINEAR)
    x = normalize(img, SAM_MEAN, SAM_STD)
    return torch.nn.functional.pad(x, (0, side - w, 0, side - h))
