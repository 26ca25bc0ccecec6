"""The base of the official evaluation protocols (applications/efficientvit_{cls,seg,sam}/eval_*.py).

Each task's protocol lives in its task spec (:mod:`evit_deploy.tasks`). A protocol prepares a sample (decode +
pre-process, run in worker threads), runs prepared samples through an engine (any backend, or PyTorch) and
accumulates the task metric and the agreement with a reference run. No torch at import (see :mod:`..predict.handlers`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..predict.engine_base import Engine, run_images
from ..tasks.graph import Graph
from ..zoo.cards import ModelCard
from .datasets import Dataset, Sample


@dataclass
class Item:
    """A prepared sample: the model input, and what scoring needs (label, original size, prompts)."""

    sample: Sample
    x: np.ndarray
    truth: Any = None
    original_size: tuple[int, int] = (0, 0)


@dataclass
class Tally:
    """Running metric of one backend (fields per task) and its agreement with the reference backend."""

    counts: dict[str, Any] = field(default_factory=dict)
    agree: float = 0.0
    compared: float = 0.0

    def add(self, key: str, value: Any) -> None:
        self.counts[key] = self.counts.get(key, 0) + value


class Protocol(ABC):
    """One task's official protocol. ``size`` of ``prepare`` is the input (H, W); None = the protocol's own.

    ``graph``: the image graph it feeds (one report row per artifact of it); ``datasets``: the dataset kinds it
    reads; ``dataset_per_model``: a model is evaluated on its own card's dataset only; ``primary``: the metric an
    accuracy gate compares; ``headline``: the metrics of summary lines and tables."""

    graph: ClassVar[Graph]
    datasets: ClassVar[tuple[str, ...]]
    dataset_per_model: ClassVar[bool] = False
    primary: ClassVar[str]
    headline: ClassVar[tuple[str, ...]]
    dynamic_sizes: ClassVar[bool] = False  # True: the protocol's input size varies per image

    def __init__(self, card: ModelCard, dataset: Dataset, input_size: tuple[int, int]) -> None:
        self.card, self.dataset, self.input_size = card, dataset, tuple(input_size)

    def protocol_size(self, sample: Sample) -> tuple[int, int]:
        return self.input_size

    @abstractmethod
    def prepare(self, sample: Sample, size: tuple[int, int] | None) -> Item:
        """Decode and pre-process one sample (thread-safe: runs in worker threads)."""

    def run(self, engine: Engine, items: list[Item]) -> list[Any]:
        """One raw output per item (default: the first output of ``graph``)."""
        return grouped(engine, items, self.graph)

    @abstractmethod
    def score(self, tally: Tally, item: Item, raw: Any, reference: Any | None) -> Any:
        """Add one item's result to ``tally`` (and its agreement with ``reference``, the reference backend's
        scored output); returns the scored output (what a later backend is compared with)."""

    @abstractmethod
    def metrics(self, tally: Tally) -> dict[str, Any]:
        """The final metrics of a tally."""


def grouped(engine: Engine, items: list[Item], graph: Graph) -> list[np.ndarray]:
    """Run items through an image graph in batches of equal input shape (sizes vary per image in some protocols)."""
    out: list[Any] = [None] * len(items)
    shapes: dict[tuple, list[int]] = {}
    for i, item in enumerate(items):
        shapes.setdefault(item.x.shape, []).append(i)
    for indices in shapes.values():
        results = run_images(engine, graph.role, graph.input_names[0], graph.output_names[0],
                             [items[i].x for i in indices])
        for i, result in zip(indices, results):
            out[i] = result
    return out
