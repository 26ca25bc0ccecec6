"""Prediction results: plain dataclasses with ``to_dict()`` (JSON-ready), ``overlay(image)`` (the task's overlay,
None where it has none) and ``annotate(image)`` (always an image: the overlay, or the top class written on the photo
for classification; a video's frames)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from .overlay import caption_overlay, mask_overlay, segmentation_overlay
from .postprocess import encode_png, mask_box, rle_encode


@dataclass
class Classification:
    """Top-k classes of one image: ImageNet indices, names and softmax probabilities (best first)."""

    indices: list[int]
    labels: list[str]
    scores: list[float]
    task: str = "cls"

    def to_dict(self, **_: Any) -> dict[str, Any]:
        return {"task": self.task, "top_k": [{"index": i, "label": n, "score": s}
                                             for i, n, s in zip(self.indices, self.labels, self.scores)]}

    def overlay(self, image: Image.Image) -> Image.Image | None:
        return None

    def annotate(self, image: Image.Image) -> Image.Image:
        """The photo with the top class and its score written on it."""
        return caption_overlay(image, f"{self.labels[0]} {self.scores[0]:.2f}")


@dataclass
class Segmentation:
    """A per-pixel class map at the input image's size, with the dataset's class names and palette."""

    label_map: np.ndarray  # [H, W] class ids
    class_names: tuple[str, ...]
    palette: np.ndarray  # [C, 3] uint8
    task: str = "seg"

    def classes(self) -> list[dict[str, Any]]:
        """Classes present, largest first: index, label, pixels, fraction of the image."""
        counts = np.bincount(self.label_map.ravel(), minlength=len(self.class_names))
        total = max(1, int(self.label_map.size))
        order = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
        return [{"index": i, "label": self.class_names[i], "pixels": int(counts[i]),
                 "fraction": round(int(counts[i]) / total, 6)} for i in order]

    def to_dict(self, include_label_map: bool = True, **_: Any) -> dict[str, Any]:
        """JSON-ready summary; the label map travels as a lossless base64 PNG (8-bit, values = class ids)."""
        out: dict[str, Any] = {"task": self.task, "size": list(self.label_map.shape), "classes": self.classes()}
        if include_label_map:
            out["label_map"] = {"encoding": "png-base64", "data": encode_png(self.label_map)}
        return out

    def colorize(self) -> Image.Image:
        return Image.fromarray(self.palette[self.label_map])

    def overlay(self, image: Image.Image, alpha: float = 0.5) -> Image.Image:
        return segmentation_overlay(image, self.label_map, self.palette, alpha)

    annotate = overlay


@dataclass
class SamMasks:
    """SAM masks of one prompt at the original image size.

    ``masks`` ``[C,H,W]`` bool (C = 3 with multimask output, else 1), ``scores`` the predicted IoUs,
    ``low_res_logits`` ``[C,256,256]`` (usable as SAM mask input). ``best`` = index of the highest score.
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray
    multimask: bool
    prompt: dict[str, Any] = field(default_factory=dict)
    task: str = "sam"

    @property
    def best(self) -> int:
        return int(np.argmax(self.scores))

    def to_dict(self, **_: Any) -> dict[str, Any]:
        """JSON-ready: per mask its score, area, bounding box and run-length encoding (see ``rle_decode``)."""
        return {
            "task": self.task, "size": list(self.masks.shape[1:]), "multimask": self.multimask, "best": self.best,
            "prompt": self.prompt,
            "masks": [{"score": float(s), "area": int(m.sum()), "bbox": mask_box(m), "rle": rle_encode(m)}
                      for m, s in zip(self.masks, self.scores)],
        }

    def overlay(self, image: Image.Image, alpha: float = 0.5, best_only: bool = True) -> Image.Image:
        masks = self.masks[self.best : self.best + 1] if best_only else self.masks
        return mask_overlay(image, masks, self.prompt.get("points", []), self.prompt.get("point_labels", []),
                            self.prompt.get("box"), alpha)

    def annotate(self, image: Image.Image) -> Image.Image:
        """The best mask and the prompt over the photo."""
        return self.overlay(image)


Result = Classification | Segmentation | SamMasks
