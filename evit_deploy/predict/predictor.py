"""The Predictor: images (and SAM prompts) in, results out, for an export folder or a PyTorch zoo model.

Pre- and post-processing follow the official evaluation code (architecture.md §10) and live in one task
handler per task, registered in ``TASK_HANDLERS`` (no branching over task names). A prediction has three
stages, which the server runs separately to batch requests: ``prepare`` (decode, resize, normalise, check the
options; per image), ``infer`` (one model run for many prepared images), ``finish`` (post-process; per image).
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..artifacts import read_manifest
from ..errors import EvitError
from ..images import ImageError, ImageTooLarge, load_rgb, open_image  # noqa: F401  (errors re-exported)
from ..limits import LIMITS
from ..processing import classification_input, resized_input, sam_input
from ..zoo.cards import ModelCard, get_card
from ..zoo.labels import class_names as load_class_names
from .engines import Engine, OnnxEngine, TorchEngine
from .palettes import palette_for
from .postprocess import label_map, sam_postprocess_masks, sam_transform_coords, top_k
from .results import Classification, Result, SamMasks, Segmentation

ImageInput = str | os.PathLike | Image.Image | np.ndarray
MAX_POINTS = 64
DEFAULT_TOP_K = 5
DEFAULT_MAX_PIXELS = LIMITS.max_image_pixels


class OptionError(EvitError):
    """A prediction option the model's task does not take, or a bad option value."""


class PromptError(OptionError):
    """A SAM prompt of the wrong shape, with non-finite values, or outside the image."""


def to_rgb(image: ImageInput) -> Image.Image:
    """A file path, encoded bytes, PIL image or uint8 array as an upright RGB image (see :mod:`evit_deploy.images`)."""
    return load_rgb(image)


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Encoded image bytes → upright RGB image; :class:`ImageTooLarge` over ``max_pixels`` (checked before
    decoding), :class:`ImageError` for anything that is not an image."""
    return open_image(data, max_pixels)


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


@dataclass(frozen=True)
class SamImage:
    """An encoded image (``set_image``'s state): pass it to ``predict_masks(image=...)`` from any thread."""

    embedding: np.ndarray  # [1, 256, 64, 64]
    original_size: tuple[int, int]


@dataclass(frozen=True)
class SamPrompt:
    """Checked prompt in original-image pixels: points [N,2], labels [N] (1 fg / 0 bg), box [4] XYXY or None."""

    points: np.ndarray
    labels: np.ndarray
    box: np.ndarray | None
    multimask: bool

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"points": self.points.tolist(), "point_labels": self.labels.tolist()}
        out["box"] = self.box.tolist() if self.box is not None else None
        return out


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

    @abstractmethod
    def preprocess(self, image: Image.Image) -> np.ndarray:
        """RGB image → ``[1,3,H,W]`` float32 model input."""

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
    def decorator(cls: type[TaskHandler]) -> type[TaskHandler]:
        cls.task = task
        TASK_HANDLERS[task] = cls
        return cls

    return decorator


@register_task("cls")
class ClassificationHandler(TaskHandler):
    """ImageNet evaluation transform (shorter side → ceil(r/crop_ratio) bicubic, centre crop); softmax top-k."""

    options = {"top_k": DEFAULT_TOP_K}

    def preprocess(self, image: Image.Image) -> np.ndarray:
        h, w = self.info.input_size
        if h == w:
            return classification_input(image, h, self.info.card.crop_ratio or 0.95).numpy()
        return resized_input(image, (h, w)).numpy()  # non-square exports: plain resize, as the export's validation

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

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return resized_input(image, self.info.input_size).numpy()

    def finish(self, item: Prepared, raw: np.ndarray) -> Segmentation:
        return Segmentation(label_map(raw, item.original_size), self.info.class_names, self.info.palette)


@register_task("sam")
class SamHandler(TaskHandler):
    """EfficientViTSamPredictor: long side → encoder side (bilinear), normalise, pad; prompts and masks in the
    1024 frame; low-res masks → 1024² → crop → original size → threshold 0."""

    options = {"points": None, "point_labels": None, "box": None, "multimask": True}
    example_options = {"points": [[32.0, 32.0]]}

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return sam_input(image, self.info.input_size[0]).numpy()

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


def _as_array(value: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise PromptError(f"{name} must be numbers, got {type(value).__name__}") from None
    if not np.isfinite(arr).all():
        raise PromptError(f"{name} must be finite numbers")
    return arr


def parse_prompt(size: tuple[int, int], points: Any = None, point_labels: Any = None, box: Any = None,
                 multimask: Any = True) -> SamPrompt:
    """Check a SAM prompt against the image size (H, W); raises :class:`PromptError` with a one-line reason."""
    h, w = size
    pts = _as_array(points if points is not None else np.zeros((0, 2)), "points")
    if pts.ndim == 1 and pts.size == 2:
        pts = pts[None]
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise PromptError(f"points must have shape [N, 2] as (x, y) pairs, got shape {list(pts.shape)}")
    if len(pts) > MAX_POINTS:
        raise PromptError(f"at most {MAX_POINTS} points per prompt, got {len(pts)}")
    if point_labels is None:
        labels = np.ones(len(pts), dtype=np.int64)
    else:
        raw = _as_array(point_labels, "point_labels").reshape(-1) if np.ndim(point_labels) else None
        if raw is None or raw.shape != (len(pts),):
            raise PromptError(f"point_labels must have one label per point ({len(pts)}), got {point_labels!r}"[:200])
        if not np.isin(raw, (0, 1)).all():
            raise PromptError("point_labels must be 1 (foreground) or 0 (background)")
        labels = raw.astype(np.int64)
    bx = None
    if box is not None:
        bx = _as_array(box, "box").reshape(-1)
        if bx.shape != (4,):
            raise PromptError(f"box must be [x0, y0, x1, y1], got {np.size(box)} numbers")
        if bx[0] > bx[2] or bx[1] > bx[3]:
            raise PromptError(f"box must have x0 <= x1 and y0 <= y1, got {bx.tolist()}")
    if not len(pts) and bx is None:
        raise PromptError("SAM needs a prompt: give points and/or a box")
    xy = np.concatenate([pts, bx.reshape(2, 2)]) if bx is not None else pts
    if ((xy < 0) | (xy[:, 0] > w)[:, None] | (xy[:, 1] > h)[:, None]).any():
        raise PromptError(f"prompt coordinates must lie inside the {w}x{h} image (x in [0, {w}], y in [0, {h}])")
    if not isinstance(multimask, (bool, np.bool_)):
        raise PromptError(f"multimask must be true or false, got {multimask!r}")
    return SamPrompt(pts, labels, bx, bool(multimask))


class Predictor:
    """Pre-processing, model run and post-processing for one model, identical to the official evaluation.

    ``Predictor.from_export(folder_or_artifact)`` runs an export with ONNX Runtime;
    ``Predictor.from_model(name, weights)`` runs the PyTorch zoo model. Then ``predictor(image)`` →
    :class:`Classification` (top-k ImageNet labels), :class:`Segmentation` (label map at the image's size) or,
    for SAM with ``points=``/``box=``, :class:`SamMasks`; a list of images gives a list, run in batches.

    Thread safety: ``predict``/``__call__``, ``prepare``/``infer``/``finish`` keep all state per call and may be
    used from many threads at once. SAM's ``set_image`` keeps *one* current image per predictor (like the stock
    predictor): threads sharing a predictor must not rely on it; they pass the :class:`SamImage` that
    ``set_image`` returns to ``predict_masks(image=...)``, or call ``predict(image, points=...)``.
    """

    def __init__(self, engine: Engine, model: str, input_size: Sequence[int] | None = None, source: str = "") -> None:
        card = get_card(model)
        self.engine = engine
        self.info = ModelInfo(card, tuple(int(v) for v in (input_size or card.input_size)))
        self.handler = TASK_HANDLERS[card.task](self.info)
        self.source = source
        self._lock = threading.Lock()
        self._image: SamImage | None = None

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_export(cls, path: str | os.PathLike, threads: int | None = None) -> Predictor:
        """An export folder, or one artifact file inside one (its ``export.json`` says the model and sizes)."""
        path = Path(path)
        if not path.exists():
            raise EvitError(f"not found: {path}")
        folder, artifact = (path.parent, path) if path.is_file() else (path, None)
        manifest = read_manifest(folder, verify=False)  # each artifact is hash-checked when the engine opens it
        engine = OnnxEngine(folder, manifest, artifact, threads)
        return cls(engine, manifest.model, manifest.input_size, source=str(path))

    @classmethod
    def from_model(cls, name: str, weights: str | os.PathLike | None = None,
                   input_size: Sequence[int] | None = None, ema: bool = False) -> Predictor:
        """A PyTorch zoo model (``evit_deploy.create_model``); ``input_size`` (H, W) defaults to the card's."""
        from ..zoo import create_model

        card = get_card(name)
        size = tuple(int(v) for v in (input_size or card.input_size))
        if len(size) != 2 or min(size) <= 0 or size[0] % 32 or size[1] % 32:
            raise EvitError(f"input size {size} does not suit {name}: (H, W), multiples of 32")
        if card.task == "sam" and size != tuple(card.input_size):
            raise EvitError(f"{name} takes {card.input_size[0]}x{card.input_size[1]} encoder input, got {size}")
        return cls(TorchEngine(create_model(name, weights, ema=ema)), name, size, source=f"pytorch:{name}")

    # -- facts ------------------------------------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self.info.card.name

    @property
    def task(self) -> str:
        return self.info.card.task

    @property
    def input_size(self) -> tuple[int, int]:
        return self.info.input_size

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    @property
    def max_batch(self) -> int:
        return self.engine.max_batch

    def __repr__(self) -> str:
        return f"Predictor({self.model}, task={self.task}, input={self.input_size}, source={self.source})"

    # -- the three stages ---------------------------------------------------------------------------------------
    def prepare(self, image: ImageInput, **options: Any) -> Prepared:
        """Decode and pre-process one image and check the task options (``top_k``; SAM ``points``,
        ``point_labels``, ``box``, ``multimask``). Raises :class:`ImageError` / :class:`OptionError`."""
        rgb = to_rgb(image)
        size = (rgb.height, rgb.width)
        checked = self.handler.check_options(size, options)
        return Prepared(self.handler.preprocess(rgb), size, checked)

    def infer(self, items: list[Prepared]) -> list[Any]:
        """Run the model on prepared images, batched as far as the engine allows; one raw output per image."""
        return self.handler.infer(self.engine, items) if items else []

    def finish(self, item: Prepared, raw: Any) -> Result:
        """Post-process one raw output into its result."""
        return self.handler.finish(item, raw)

    def predict(self, images: ImageInput | Sequence[ImageInput], **options: Any) -> Result | list[Result]:
        """One image → one result; a list or tuple of images → a list of results (same options for all)."""
        single = not isinstance(images, (list, tuple))
        batch = [images] if single else list(images)
        items = [self.prepare(image, **options) for image in batch]
        results = [self.finish(it, raw) for it, raw in zip(items, self.infer(items))]
        return results[0] if single else results

    __call__ = predict

    # -- SAM: encode once, prompt many times ----------------------------------------------------------------
    def _sam(self, what: str) -> SamHandler:
        if not isinstance(self.handler, SamHandler):
            raise EvitError(f"{what} is for Segment Anything models; {self.model} is a {self.task} model")
        return self.handler

    def set_image(self, image: ImageInput) -> SamImage:
        """Encode an image once (the expensive part); it becomes the current image and is also returned."""
        handler = self._sam("set_image")
        rgb = to_rgb(image)
        state = SamImage(handler.encode(self.engine, [handler.preprocess(rgb)]), (rgb.height, rgb.width))
        with self._lock:
            self._image = state
        return state

    def reset_image(self) -> None:
        with self._lock:
            self._image = None

    def predict_masks(self, points: Any = None, point_labels: Any = None, box: Any = None, multimask: bool = True,
                      image: SamImage | None = None) -> SamMasks:
        """Masks for one prompt on ``image`` (default: the current ``set_image`` image); coordinates in pixels of
        the original image. ``multimask`` → 3 masks, else the single-mask output."""
        handler = self._sam("predict_masks")
        if image is None:
            with self._lock:
                image = self._image
            if image is None:
                raise EvitError("no image set: call set_image(image) first or pass image=")
        prompt = parse_prompt(image.original_size, points, point_labels, box, multimask)
        raw = handler.decode(self.engine, image.embedding, image.original_size, prompt)
        return handler.finish(Prepared(None, image.original_size, {"prompt": prompt}), raw)
