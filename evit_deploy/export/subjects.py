"""What an export is made from: an :class:`ExportSubject`.

A subject is a name, the facts that input checks and pre-processing need (task, default input size, the
``preprocess`` block), how to build its PyTorch module, and the graphs (:class:`~evit_deploy.tasks.ExportUnit`) it
exports (a zoo card's: its task spec's).
A zoo card is one kind (:func:`zoo_subject`); a competitor of the paper (:mod:`evit_deploy.compare`) is another,
a generic single-input image graph with its own I/O names. The pipeline, the exporters and the validation gate
see only the subject, so both go through the same profile, exporters, gate and ``export.json``.

No torch import here: :func:`~.request.preflight` resolves a subject before any heavy work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import sha256_file
from ..processing import Preprocess
from ..tasks import task_spec
from ..zoo.cards import ModelCard

if TYPE_CHECKING:
    from torch import nn

    from ..tasks import ExportSpec, ExportUnit

Builder = Callable[[tuple[int, int]], "nn.Module"]  # input size (H, W) -> the untransformed module, eval, CPU, fp32
Units = Callable[["nn.Module", "ExportSpec"], list["ExportUnit"]]


def _whole(model: nn.Module) -> nn.Module:
    return model


@dataclass(frozen=True)
class OnnxNeeds:
    """What a model's operators need from the ONNX export: at least ``min_opset``, and ``exporter`` (None: the
    profile's); ``why`` names the operator."""

    min_opset: int
    exporter: str | None
    why: str


@dataclass(frozen=True)
class ExportSubject:
    """One model to export. ``bench_graph`` picks, from the built module, the graph timed beside the artifacts
    (SAM: the image encoder); ``measured`` says so in words. ``weights`` gives the manifest's weights entry
    (called when the export is written: it may hash a checkpoint)."""

    name: str
    task: str
    input_size: tuple[int, int]
    preprocess: Preprocess
    build: Builder
    units: Units
    weights: Callable[[], dict[str, Any]]
    bench_graph: Callable[[nn.Module], nn.Module] = _whole
    measured: str = "whole model"
    kind: str = "zoo"  # "zoo": an EfficientViT zoo card; "comparison": a competitor of the paper
    onnx: OnnxNeeds | None = None  # what its ONNX export needs beyond the profile's settings


def weights_entry(weights: str | None, card: ModelCard, ema: bool) -> dict[str, Any]:
    """The manifest's ``weights`` entry of a zoo export (file name and sha256, or random with the official file)."""
    if weights is None:
        return {"file": None, "random": True, "note": f"random weights; the official file is {card.checkpoint}"}
    return {"file": Path(weights).name, "sha256": sha256_file(Path(weights)), "random": False, "ema": ema}


def zoo_subject(card: ModelCard, weights: str | None = None, ema: bool = False) -> ExportSubject:
    """The subject of a zoo card, built from ``weights`` (an official checkpoint; None = random weights)."""

    def build(size: tuple[int, int]) -> nn.Module:
        from ..zoo.registry import create_model

        return create_model(card.name, weights, ema=ema)

    task = task_spec(card.task)

    def units(model: nn.Module, spec: ExportSpec) -> list[ExportUnit]:
        return task.export_units(model, card, spec)

    def bench_graph(model: nn.Module) -> nn.Module:
        return task.graph_module(model, task.timed_role)

    return ExportSubject(card.name, card.task, card.input_size, card.preprocess, build, units,
                         lambda: weights_entry(weights, card, ema), bench_graph, task.measured)
