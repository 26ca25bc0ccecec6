"""Task handlers: the pre- and post-processing of each task, registered in ``TASK_HANDLERS``.

Pre- and post-processing follow the official evaluation code (docs/architecture.md §8) and live in one handler per
task (no branching over task names); ``register_task`` adds one. A prediction has three stages, which the server
runs separately to batch requests: ``prepare`` (decode, resize, normalise, check the options; per image),
``infer`` (one model run for many prepared images), ``finish`` (post-process; per image).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..processing import preprocess
from ..zoo.cards import ModelCard
from ..zoo.labels import class_names as load_class_names
from .engines import Engine
from .palettes import palette_for
from .postprocess import label_map, sam_postprocess_masks, sam_transform_coords, top_k
from .prompts import OptionError, SamPrompt, parse_prompt
from .results import Classification, Result, SamMasks, Segmentation

DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class ModelInfo:
    """What pre/post-processing needs to know about the model: its card and the graph's input size."""

    card: ModelCard
    input_size: tuple[int, int]

    @cached_property
    def class_names(self) -> tuple[str, ...]:
        return load_class_names(self.card.class_names) if self.card.class_names else ()

    @cached_property
    def palette(self) -> np.ndarray:
        return palette_for(self.card.dataset, self.card.num_classes or len(self.class_names))


@dataclass
class Prepared:
    """One image made ready for the model: its input tensor, original (H, W) and checked task options."""

    x: np.ndarray | None
    original_size: tuple[int, int]
    options: dict[str, Any] = field(default_factory=dict)


def run_images(engine: Engine, role: str, input_name: str, output_name: str, xs: list[np.ndarray]) -> np.ndarray:
    """Run ``[1,...]`` inputs through ``role`` in as few calls as the engine's batch allows.

    A static batch > 1 is filled up with copies of the chunk's first input (their outputs are dropped).
    """
    step = engine.static_batch or engine.max_batch
    outs = []
    for start in range(0, len(xs), step):
        chunk = xs[start : start + step]
        n = len(chunk)
        if engine.static_batch:
            chunk = chunk + [chunk[0]] * (engine.static_batch - n)
        outs.append(engine.run(role, {input_name: np.concatenate(chunk)})[output_name][:n])
    return np.concatenate(outs)


class TaskHandler(ABC):
    """Pre/post-processing of one task. ``options`` = option name → default value; ``example_options`` = options
    valid for any image of at least 64x64 pixels (warm-up runs)."""

    task: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}
    example_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, info: ModelInfo) -> None:
        self.info = info

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """RGB image → ``[1,3,H,W]`` float32 model input, by the card's ``preprocess`` block (one source for
        export validation, calibration and prediction)."""
        return preprocess(image, self.info.card, self.info.input_size).numpy()

    def check_options(self, size: tuple[int, int], options: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            takes = ", ".join(self.options) or "no options"
            raise OptionError(f"{self.info.card.name} ({self.task}) does not take {', '.join(unknown)}; "
                              f"it takes: {takes}")
        return {**self.options, **{k: v for k, v in options.items() if v is not None}}

    def infer(self, engine: Engine, items: list[Prepared]) -> list[Any]:
        return list(run_images(engine, "model", "input", "logits", [it.x for it in items]))

    @abstractmethod
    def finish(self, item: Prepared, raw: Any) -> Result:
        """The model's raw output for one image → its result."""


TASK_HANDLERS: dict[str, type[TaskHandler]] = {}


def register_task(task: str) -> Callable[[type[TaskHandler]], type[TaskHandler]]:
    """Class decorator: the handler of ``task`` (a card's ``task``), registered in ``TASK_HANDLERS``."""

    def decorator(cls: type[TaskHandler]) -> type[TaskHandler]:
        cls.task = task
        TASK_HANDLERS[task] = cls
        return cls

    return decorator


@register_task("cls")
class ClassificationHandler(TaskHandler):
    """ImageNet evaluation transform (shorter side → ceil(r/crop_ratio) bicubic, centre crop); softmax top-k."""

    options = {"top_k": DEFAULT_TOP_K}

    def check_options(self, size: tuple[int, int], options: dict[str, Any]) -> dict[str, Any]:
        checked = super().check_options(size, options)
        k, n = checked["top_k"], len(self.info.class_names) or self.info.card.num_classes
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
            raise OptionError(f"top_k must be an integer from 1 to {n}, got {k!r}")
        checked["top_k"] = int(k)
        return checked

    def finish(self, item: Prepared, raw: np.ndarray) -> Classification:
        idx, probs = top_k(np.asarray(raw, dtype=np.float32), item.options["top_k"])
        names = self.info.class_names
        return Classification([int(i) for i in idx], [names[i] if i < len(names) else str(i) for i in idx],
                              [float(p) for p in probs])


@register_task("seg")
class SegmentationHandler(TaskHandler):
    """Resize to the export's fixed input size (bicubic); stride-8 logits → bicubic to the image size → argmax.

    The official evaluation resizes Cityscapes to 1024x2048 and ADE20K to short side 512 with OpenCV
    INTER_CUBIC; an export has one fixed input size, and PIL's bicubic resize stands in for OpenCV's.
    """

    def finish(self, item: Prepared, raw: np.ndarray) -> Segmentation:
        return Segmentation(label_map(raw, item.original_size), self.info.class_names, self.info.palette)


@register_task("sam")
class SamHandler(TaskHandler):
    """EfficientViTSamPredictor: long side → encoder side (bilinear), normalise, pad; prompts and masks in the
    1024 frame; low-res masks → 1024² → crop → original size → threshold 0."""

    options = {"points": None, "point_labels": None, "box": None, "multimask": True}
    example_options = {"points": [[32.0, 32.0]]}

    def check_options(self, size: tuple[int, int], options: dict[str, Any]) -> dict[str, Any]:
        checked = super().check_options(size, options)
        return {"prompt": parse_prompt(size, checked["points"], checked["point_labels"], checked["box"],
                                       checked["multimask"])}

    def encode(self, engine: Engine, xs: list[np.ndarray]) -> np.ndarray:
        return run_images(engine, "encoder", "input_image", "image_embeddings", xs)

    def decode(self, engine: Engine, embedding: np.ndarray, size: tuple[int, int],
               prompt: SamPrompt) -> tuple[np.ndarray, np.ndarray]:
        """All four mask tokens ``([4,256,256] logits, [4] IoU)`` for one prompt on one embedding."""
        coords = sam_transform_coords(prompt.points, size).reshape(-1, 2)
        labels = prompt.labels.astype(np.float32)
        box = sam_transform_coords(prompt.box.reshape(2, 2), size) if prompt.box is not None else None
        feeds = {"image_embeddings": np.ascontiguousarray(embedding, dtype=np.float32)}
        if engine.native_boxes:
            feeds["boxes"] = box.reshape(1, 4) if box is not None else None
        elif box is not None:  # the ONNX decoder takes a box as two corner points (labels 2, 3)
            coords = np.concatenate([coords, box])
            labels = np.concatenate([labels, np.array([2, 3], dtype=np.float32)])
        feeds["point_coords"] = coords[None].astype(np.float32)
        feeds["point_labels"] = labels[None]
        out = engine.run("decoder", feeds)
        return out["masks"][0], out["iou_predictions"][0]

    @staticmethod
    def decode_boxes(engine: Engine, embedding: np.ndarray, size: tuple[int, int],
                     boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All four mask tokens of ``P`` box prompts (``[P,4]`` XYXY pixels) on one embedding, in one decoder run:
        ``([P,4,256,256] logits, [P,4] IoU)``."""
        corners = sam_transform_coords(np.asarray(boxes, np.float64).reshape(-1, 2), size).reshape(-1, 2, 2)
        count = len(corners)
        feeds = {"image_embeddings": np.ascontiguousarray(embedding, dtype=np.float32)}
        if engine.native_boxes:
            feeds |= {"boxes": corners.reshape(count, 4).astype(np.float32),
                      "point_coords": np.zeros((count, 0, 2), np.float32),
                      "point_labels": np.zeros((count, 0), np.float32)}
        else:  # the ONNX decoder takes a box as two corner points (labels 2, 3)
            feeds |= {"point_coords": corners.astype(np.float32),
                      "point_labels": np.tile(np.array([[2, 3]], np.float32), (count, 1))}
        out = engine.run("decoder", feeds)
        return out["masks"], out["iou_predictions"]

    def infer(self, engine: Engine, items: list[Prepared]) -> list[Any]:
        embeddings = self.encode(engine, [it.x for it in items])
        return [self.decode(engine, embeddings[i : i + 1], it.original_size, it.options["prompt"])
                for i, it in enumerate(items)]

    def finish(self, item: Prepared, raw: tuple[np.ndarray, np.ndarray]) -> SamMasks:
        masks4, iou4 = raw
        prompt: SamPrompt = item.options["prompt"]
        tokens = [1, 2, 3] if prompt.multimask else [0]
        low = np.asarray(masks4[tokens], dtype=np.float32)
        # one mask at a time: full-size float logits of several masks would dominate memory on large photos
        masks = np.stack([sam_postprocess_masks(low[None, i : i + 1], item.original_size)[0, 0] > 0.0
                          for i in range(len(tokens))])
        return SamMasks(masks, np.asarray(iou4[tokens], dtype=np.float32), low, prompt.multimask, prompt.to_dict())
