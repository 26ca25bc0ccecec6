"""The Predictor: images (and SAM prompts) in, results out, for an export folder or a PyTorch zoo model.

The facade over an :class:`Engine` (how the graphs run) and the handler of the model's task spec (pre- and
post-processing as the official evaluation does it, :mod:`evit_deploy.tasks`). Images are decoded by
:mod:`evit_deploy.images`.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..artifacts import read_manifest
from ..errors import EvitError, NonFiniteOutput
from ..images import load_rgb, open_image
from ..limits import LIMITS
from ..metrics import non_finite_count
from ..signing import TrustSpec
from ..tasks import prompted_titles, task_spec
from ..zoo.cards import get_card
from .engine_base import Engine
from .engines import ExportEngine, TorchEngine
from .handlers import ModelInfo, Prepared, PromptedHandler
from .prompts import parse_prompt
from .results import Result, SamMasks

ImageInput = str | os.PathLike | Image.Image | np.ndarray
WARM_UP_SIDE = 64  # the blank image of ``warm_up``; handlers' ``example_options`` suit any image this size


def to_rgb(image: ImageInput) -> Image.Image:
    """A file path, encoded bytes, PIL image or uint8 array as an upright RGB image (see :mod:`evit_deploy.images`)."""
    return load_rgb(image)


def decode_image(data: bytes, max_pixels: int = LIMITS.max_image_pixels) -> Image.Image:
    """Encoded image bytes → upright RGB image; :class:`ImageTooLarge` over ``max_pixels`` (checked before
    decoding), :class:`ImageError` for anything that is not an image."""
    return open_image(data, max_pixels)


@dataclass(frozen=True)
class SamImage:
    """An encoded image (``set_image``'s state): pass it to ``predict_masks(image=...)`` from any thread."""

    embedding: np.ndarray  # [1, 256, 64, 64]
    original_size: tuple[int, int]


def check_finite(raw: Any, what: str) -> None:
    """Refuse a model output holding NaN or Inf (:class:`NonFiniteOutput`, one line)."""
    bad = non_finite_count(raw)
    if bad:
        raise NonFiniteOutput(f"the model's output for {what} is not finite ({bad} NaN/Inf values); no result")


class Predictor:
    """Pre-processing, model run and post-processing for one model, identical to the official evaluation.

    ``Predictor.from_export(folder_or_artifact)`` runs an export, each artifact with its runtime backend
    (:class:`ExportEngine`); ``Predictor.from_model(name, weights)`` runs the PyTorch zoo model. Then
    ``predictor(image)`` → :class:`Classification` (top-k ImageNet labels), :class:`Segmentation` (label map at the
    image's size) or, for SAM with ``points=``/``box=``, :class:`SamMasks`; a list of images gives a list, run in
    batches.

    Thread safety: ``predict``/``__call__``, ``prepare``/``infer``/``finish`` keep all state per call and may be
    used from many threads at once. SAM's ``set_image`` keeps *one* current image per predictor (like the stock
    predictor): threads sharing a predictor must not rely on it; they pass the :class:`SamImage` that
    ``set_image`` returns to ``predict_masks(image=...)``, or call ``predict(image, points=...)``.
    """

    def __init__(self, engine: Engine, model: str, input_size: Sequence[int] | None = None, source: str = "") -> None:
        card = get_card(model)
        self.engine = engine
        self.info = ModelInfo(card, tuple(int(v) for v in (input_size or card.input_size)))
        self._handler = task_spec(card.task).handler(self.info)
        self.source = source
        self._lock = threading.Lock()
        self._image: SamImage | None = None

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_export(cls, path: str | os.PathLike, threads: int | None = None,
                    require_signature: TrustSpec = None, shared_cpu: bool = False) -> Predictor:
        """An export folder, or one artifact file inside one (its ``export.json`` says the model and sizes).

        ``require_signature``: the public key or CA certificate file the folder's signature must verify with
        (default: the ``EVIT_DEPLOY_REQUIRE_SIGNATURE`` environment variable), before any artifact is opened.
        ``shared_cpu``: other work runs on the same cores (a video pipeline), so idle runtime threads must not spin
        or pin cores."""
        path = Path(path)
        if not path.exists():
            raise EvitError(f"not found: {path}")
        folder, artifact = (path.parent, path) if path.is_file() else (path, None)
        # each artifact is hash-checked when the engine opens it, against the (signed) manifest read here
        manifest = read_manifest(folder, verify=False, require_signature=require_signature)
        engine = ExportEngine(folder, manifest, artifact, threads, shared_cpu=shared_cpu)
        return cls(engine, manifest.model, manifest.input_size, source=str(path))

    @classmethod
    def from_model(cls, name: str, weights: str | os.PathLike | None = None,
                   input_size: Sequence[int] | None = None, ema: bool = False) -> Predictor:
        """A PyTorch zoo model (``evit_deploy.create_model``); ``input_size`` (H, W) defaults to the card's."""
        from ..zoo import create_model

        card = get_card(name)
        spec = task_spec(card.task)
        size = tuple(int(v) for v in (input_size or card.input_size))
        if len(size) != 2 or min(size) <= 0 or size[0] % 32 or size[1] % 32:
            raise EvitError(f"input size {size} does not suit {name}: (H, W), multiples of 32")
        if spec.card_size_only and size != tuple(card.input_size):
            raise EvitError(f"{name} takes {card.input_size[0]}x{card.input_size[1]} input only, got {size}")
        return cls(TorchEngine(create_model(name, weights, ema=ema), spec), name, size, source=f"pytorch:{name}")

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

    @property
    def options(self) -> dict[str, Any]:
        """The options ``prepare``/``predict`` take for this model's task, name → default (a copy)."""
        return dict(self._handler.options)

    @property
    def example_options(self) -> dict[str, Any]:
        """Options valid for any image of at least 64x64 pixels (a SAM prompt for warm-up runs; a copy)."""
        return dict(self._handler.example_options)

    def __repr__(self) -> str:
        return f"Predictor({self.model}, task={self.task}, input={self.input_size}, source={self.source})"

    # -- the three stages ---------------------------------------------------------------------------------------
    def prepare(self, image: ImageInput, **options: Any) -> Prepared:
        """Decode and pre-process one image and check the task options (``top_k``; SAM ``points``,
        ``point_labels``, ``box``, ``multimask``). Raises :class:`ImageError` / :class:`OptionError`."""
        rgb = to_rgb(image)
        size = (rgb.height, rgb.width)
        checked = self._handler.check_options(size, options)
        return Prepared(self._handler.preprocess(rgb), size, checked)

    def infer(self, items: list[Prepared]) -> list[Any]:
        """Run the model on prepared images, batched as far as the engine allows; one raw output per image."""
        return self._handler.infer(self.engine, items) if items else []

    def finish(self, item: Prepared, raw: Any) -> Result:
        """Post-process one raw output into its result; :class:`NonFiniteOutput` when the model gave NaN or Inf
        for this image (an error for the image, never a result)."""
        check_finite(raw, "this image")
        return self._handler.finish(item, raw)

    def predict(self, images: ImageInput | Sequence[ImageInput], **options: Any) -> Result | list[Result]:
        """One image → one result; a list or tuple of images → a list of results (same options for all)."""
        single = not isinstance(images, (list, tuple))
        batch = [images] if single else list(images)
        items = [self.prepare(image, **options) for image in batch]
        results = [self.finish(it, raw) for it, raw in zip(items, self.infer(items))]
        return results[0] if single else results

    __call__ = predict

    def stream(self, source: Any, *, max_frames: int | None = None, duration: float | None = None,
               live: bool | None = None, prompts: str | os.PathLike | None = None,
               max_pixels: int = LIMITS.max_image_pixels, timeout: float = 10.0, **options: Any) -> Iterator[Result]:
        """Results frame by frame (the same objects ``predict`` returns) for a video file, a camera (``0``,
        ``"/dev/video0"``), an ``rtsp://``/``http(s)://`` URL, or images (a file, folder, glob or list of them).

        Decoding, pre-processing, the model and post-processing run pipelined on threads (bounded queues), ahead of
        the consumer by a few frames. ``max_frames``/``duration`` (seconds) stop early; ``live`` (default: cameras
        and streams) keeps only the newest frame when the consumer is slower, dropping the others; ``prompts``: a
        JSONL of SAM prompts by frame (:mod:`evit_deploy.video.prompts`); ``options`` as ``predict`` takes them.
        Needs the ``[video]`` extra for video. A source damaged part-way raises :class:`VideoError` after its
        last good frame. :func:`evit_deploy.video.run_video` writes the annotated video and per-frame JSONL.
        """
        from ..video.frames import SourceSettings, VideoError
        from ..video.pipeline import StreamSettings, stream_jobs
        from ..video.prompts import PromptSchedule, frame_options
        from ..video.sources import open_source

        schedule = None
        if prompts is not None:
            self._prompted("prompts by frame")
            schedule = PromptSchedule.read(prompts, {k: options.get(k) for k in ("points", "point_labels", "box")})
        with open_source(source, SourceSettings(max_pixels, timeout, live)) as opened:
            if schedule is not None:
                schedule.check(opened.info.size, options.get("multimask", True))
            for job in stream_jobs(self, opened, StreamSettings(max_frames, duration),
                                   frame_options(options, schedule)):
                yield job.result
            if opened.damage is not None:
                raise VideoError(f"{opened.info.name} is damaged: {opened.damage}")

    def warm_up(self) -> None:
        """One model run on a blank image, so the first real call does not pay for lazy initialisation."""
        image = Image.new("RGB", (WARM_UP_SIDE, WARM_UP_SIDE), (128, 128, 128))
        item = self.prepare(image, **self._handler.example_options)
        try:
            self.finish(item, self.infer([item])[0])
        except NonFiniteOutput as exc:  # an error for that input only, like any request's; say it once
            warnings.warn(f"warm-up on a blank image: {exc}; inputs whose outputs are not finite get an error",
                          stacklevel=2)

    # -- prompted tasks (SAM): encode once, prompt many times --------------------------------------------------
    def _prompted(self, what: str) -> PromptedHandler:
        if not isinstance(self._handler, PromptedHandler):
            raise EvitError(f"{what} is for {prompted_titles()} models; {self.model} is a {self.task} model")
        return self._handler

    def set_image(self, image: ImageInput) -> SamImage:
        """Encode an image once (the expensive part); it becomes the current image and is also returned."""
        handler = self._prompted("set_image")
        rgb = to_rgb(image)
        embedding = handler.encode(self.engine, [handler.preprocess(rgb)])
        check_finite(embedding, "this image (its embedding)")
        state = SamImage(embedding, (rgb.height, rgb.width))
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
        handler = self._prompted("predict_masks")
        if image is None:
            with self._lock:
                image = self._image
            if image is None:
                raise EvitError("no image set: call set_image(image) first or pass image=")
        prompt = parse_prompt(image.original_size, points, point_labels, box, multimask)
        raw = handler.decode(self.engine, image.embedding, image.original_size, prompt)
        check_finite(raw, "this prompt")
        return handler.finish(Prepared(None, image.original_size, {"prompt": prompt}), raw)
