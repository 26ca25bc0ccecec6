"""Pre-processing as in the official evaluation code: the one place an image becomes a model input.

Each model card carries a ``preprocess`` block (:class:`Preprocess`, defined here: resize rule, interpolation,
crop ratio, mean, std); :func:`preprocess` applies it. Export validation, calibration, the
Predictor and the server all call :func:`preprocess`, so they feed a model identically. The three resize rules
are also public functions (``classification_input``, ``resized_input``, ``sam_input``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from .errors import EvitError
from .images import ImageLike, load_rgb

if TYPE_CHECKING:  # torch is imported when an image is processed: a runtime that loads no torch model starts faster
    import torch


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the model's input, as the official evaluation does it (models/README.md).

    ``resize``: ``shorter-side-crop`` (shorter side to ceil(side / crop_ratio), centre crop; ImageNet),
    ``exact`` (resize to the input size; segmentation), ``long-side-pad`` (longer side to the input side, zero-pad
    bottom/right; SAM). Pixels are scaled to [0, 1], then ``(x - mean) / std`` per RGB channel.
    """

    resize: str
    interpolation: str = "bicubic"
    crop_ratio: float = 1.0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def note(self) -> dict[str, Any]:
        """What ``export.json`` records as ``preprocessing`` (for readers outside this package; the card's
        block is what runs, and a manifest whose block differs from it is refused)."""
        return {
            "embedded": False,
            "input": "normalised float32 RGB, NCHW: (pixel / 255 - mean) / std",
            "resize": self.resize, "interpolation": self.interpolation, "crop_ratio": self.crop_ratio,
            "mean": list(self.mean), "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> Preprocess:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise EvitError(f"{where}: unknown preprocess keys {unknown}; known: {', '.join(sorted(fields))}")
        p = cls(**{k: tuple(v) if k in ("mean", "std") else v for k, v in data.items()})
        if p.resize not in RESIZE_RULES or p.interpolation not in INTERPOLATION:
            raise EvitError(f"{where}: preprocess.resize must be one of {', '.join(RESIZE_RULES)} and "
                            f"interpolation one of {', '.join(INTERPOLATION)}")
        if not 0 < p.crop_ratio <= 1 or len(p.mean) != 3 or len(p.std) != 3 or min(p.std) <= 0:
            raise EvitError(f"{where}: preprocess needs 0 < crop_ratio <= 1 and three means and positive stds")
        return p

class InputFacts(Protocol):
    """What pre-processing needs of a model: its default input size and its ``preprocess`` block. A zoo
    :class:`~evit_deploy.zoo.cards.ModelCard` has them, and so does an export subject (a competitor of the paper)."""

    @property
    def input_size(self) -> tuple[int, int]: ...

    @property
    def preprocess(self) -> Preprocess: ...


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATION = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}


def normalize(image: Image.Image, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """RGB PIL image → normalised ``[1,3,H,W]`` float32 tensor: ``(pixel / 255 - mean) / std``."""
    import torch

    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return ((x - mean_t) / std_t).unsqueeze(0).contiguous()


def classification_input(image: ImageLike, resolution: int, crop_ratio: float = 0.95, mean=IMAGENET_MEAN,
                         std=IMAGENET_STD, interpolation: str = "bicubic") -> torch.Tensor:
    """ImageNet evaluation transform: shorter side → ceil(r / crop_ratio), centre crop r, normalise."""
    img = load_rgb(image)
    short = math.ceil(resolution / crop_ratio)
    w, h = img.size
    size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    img = img.resize(size, INTERPOLATION[interpolation])
    w, h = img.size
    top = int(round((h - resolution) / 2.0))
    left = int(round((w - resolution) / 2.0))
    return normalize(img.crop((left, top, left + resolution, top + resolution)), mean, std)


def resized_input(image: ImageLike, size: tuple[int, int], mean=IMAGENET_MEAN, std=IMAGENET_STD,
                  interpolation: str = "bicubic") -> torch.Tensor:
    """Resize to exactly (H, W) and normalise (segmentation-style input)."""
    h, w = size
    return normalize(load_rgb(image).resize((w, h), INTERPOLATION[interpolation]), mean, std)


def sam_resized_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(H, W) after scaling the longer side to ``long_side`` (SAM's rounding rule)."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def sam_input(image: ImageLike, side: int, mean=IMAGENET_MEAN, std=IMAGENET_STD,
              interpolation: str = "bilinear") -> torch.Tensor:
    """SAM encoder input: longer side → ``side``, normalise, zero-pad bottom/right to side×side."""
    img = load_rgb(image)
    h, w = sam_resized_size(img.height, img.width, side)
    if (h, w) != (img.height, img.width):
        img = img.resize((w, h), INTERPOLATION[interpolation])
    import torch

    return torch.nn.functional.pad(normalize(img, mean, std), (0, side - w, 0, side - h))


ResizeRule = Callable[[ImageLike, tuple[int, int], Preprocess], "torch.Tensor"]
RESIZE_RULES: dict[str, ResizeRule] = {
    "shorter-side-crop": lambda img, size, p: classification_input(img, size[0], p.crop_ratio, p.mean, p.std,
                                                                   p.interpolation),
    "exact": lambda img, size, p: resized_input(img, size, p.mean, p.std, p.interpolation),
    "long-side-pad": lambda img, size, p: sam_input(img, size[0], p.mean, p.std, p.interpolation),
}


def preprocess(image: ImageLike, card: InputFacts, size: tuple[int, int] | None = None) -> torch.Tensor:
    """``image`` as the normalised ``[1,3,H,W]`` float32 input of ``card``'s model at ``size`` (H, W; default the
    card's), following the card's ``preprocess`` block. A shorter-side crop needs a square input: non-square
    classification exports get a plain resize, as their validation does."""
    h, w = size or card.input_size
    p = card.preprocess
    rule = "exact" if p.resize == "shorter-side-crop" and h != w else p.resize
    return RESIZE_RULES[rule](image, (h, w), p)
