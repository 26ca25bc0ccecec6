"""The base of the task handlers: the Predictor's pre- and post-processing of one task.

Each task's handler lives in its task spec (:mod:`evit_deploy.tasks`; no branching over task names). Pre- and
post-processing follow the official evaluation code (docs/architecture.md §8). A prediction has three stages,
which the server runs separately to batch requests: ``prepare`` (decode, resize, normalise, check the options;
per image), ``infer`` (one model run for many prepared images), ``finish`` (post-process; per image). No torch
at import: the specs that import this module are read by the runtime.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..tasks.graph import Graph
from ..zoo.cards import ModelCard
from ..zoo.labels import class_names as load_class_names
from .engine_base import Engine, run_images
from .palettes import palette_for
from .prompts import OptionError, SamPrompt

if TYPE_CHECKING:
    from PIL import Image

    from .results import Result


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


class TaskHandler(ABC):
    """Pre/post-processing of one task. ``graph``: the image graph ``infer`` runs; ``options`` = option name →
    default value; ``example_options`` = options valid for any image of at least 64x64 pixels (warm-up runs);
    ``request_example``: the options of an example request, as a Python dict literal (the Triton README)."""

    graph: ClassVar[Graph]
    options: ClassVar[dict[str, Any]] = {}
    example_options: ClassVar[dict[str, Any]] = {}
    request_example: ClassVar[str] = "{}"
    prompted: ClassVar[bool] = False  # a :class:`PromptedHandler`

    def __init__(self, info: ModelInfo) -> None:
        self.info = info

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """RGB image → ``[1,3,H,W]`` float32 model input, by the card's ``preprocess`` block (one source for
        export validation, calibration and prediction)."""
        from ..processing import preprocess

        return preprocess(image, self.info.card, self.info.input_size).numpy()

    def check_options(self, size: tuple[int, int], options: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            takes = ", ".join(self.options) or "no options"
            raise OptionError(f"{self.info.card.name} ({self.info.card.task}) does not take {', '.join(unknown)}; "
                              f"it takes: {takes}")
        return {**self.options, **{k: v for k, v in options.items() if v is not None}}

    def run_graph(self, engine: Engine, xs: list[np.ndarray]) -> np.ndarray:
        """Prepared ``[1,3,H,W]`` inputs through ``graph``, batched; its first output, one row per input."""
        g = self.graph
        return run_images(engine, g.role, g.input_names[0], g.output_names[0], xs)

    def infer(self, engine: Engine, items: list[Prepared]) -> list[Any]:
        return list(self.run_graph(engine, [it.x for it in items]))

    @abstractmethod
    def finish(self, item: Prepared, raw: Any) -> Result:
        """The model's raw output for one image → its result."""

    @staticmethod
    @abstractmethod
    def summary(record: dict[str, Any]) -> str:
        """One line for the terminal from a result's ``to_dict()`` record (top classes, largest segments, ...)."""


class PromptedHandler(TaskHandler):
    """A task whose image is encoded once and then prompted (SAM): the Predictor's ``set_image`` and
    ``predict_masks``, and prompts by frame, use these two stages."""

    prompted = True

    def encode(self, engine: Engine, xs: list[np.ndarray]) -> np.ndarray:
        """Prepared images → their embeddings, batched."""
        return self.run_graph(engine, xs)

    @abstractmethod
    def decode(self, engine: Engine, embedding: np.ndarray, size: tuple[int, int], prompt: SamPrompt) -> Any:
        """The raw output of one prompt on one embedding of an image of ``size`` (what ``finish`` takes)."""
