"""The :class:`TaskSpec`: everything every stage knows about one task, declared once (Optimum's per-model export
configs, timm's default cfgs).

A spec owns its graphs (roles, I/O names and ranks, dynamic axes, agreement metric: :mod:`.graph`), how a card
becomes a PyTorch module, the export units (sample inputs: :mod:`.units`), how PyTorch runs each graph by name,
the Predictor's handler (pre- and post-processing) and the official evaluation protocol. The zoo, export,
predict, serve, Triton, video, eval, device bundles and the comparison subjects all ask the spec, never the task
name. Importing a spec imports no torch: the runtime reads the graphs when it checks a manifest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import EvitError
from .graph import Graph

if TYPE_CHECKING:
    from torch import nn

    from ..eval.protocols import Protocol
    from ..predict.handlers import TaskHandler
    from ..zoo.cards import ModelCard
    from .units import ExportSpec, ExportUnit


class TaskSpec(ABC):
    """One task (a model card's ``task``). Subclasses set the class attributes and implement :meth:`build`; the
    other methods have defaults for image graphs (one image in, one tensor out) that a task overrides where its
    graphs differ (SAM's prompt decoder)."""

    name: ClassVar[str]  # the cards' and manifests' ``task``
    title: ClassVar[str]  # in words, for messages ("image classification")
    graphs: ClassVar[tuple[Graph, ...]]  # in export order
    handler: ClassVar[type[TaskHandler]]  # the Predictor's pre- and post-processing
    protocol: ClassVar[type[Protocol] | None] = None  # the official evaluation protocol (None: not evaluated)
    timed_role: ClassVar[str] = "model"  # the graph latency figures time (bench, device bundles, comparisons)
    measured: ClassVar[str] = "whole model"  # what those figures measure, in words
    square_input: ClassVar[bool] = False  # the first graph takes square inputs only
    card_size_only: ClassVar[bool] = False  # the PyTorch model predicts at its card's input size only
    dynamic_hw: ClassVar[bool] = False  # may be exported with symbolic input height and width
    output_stride: ClassVar[int | None] = None  # the class output's spatial stride (segmentation logits: 8)

    # -- the graphs ------------------------------------------------------------------------------------------------
    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(g.role for g in self.graphs)

    def graph(self, role: str) -> Graph:
        """The declared graph of ``role``; a one-line error for a role this task does not have."""
        for g in self.graphs:
            if g.role == role:
                return g
        raise EvitError(f"a {self.name} model has no '{role}' graph (graphs: {', '.join(self.roles)})")

    @property
    def prompted(self) -> bool:
        """The task takes prompts on an encoded image (``set_image``/``predict_masks``, prompts by frame)."""
        return self.handler.prompted

    def check_input_size(self, name: str, size: tuple[int, int]) -> None:
        """Refuse (one line) an input size ``name``'s graphs cannot take: multiples of 32, square where asked."""
        h, w = size
        if h <= 0 or w <= 0 or h % 32 or w % 32:
            raise EvitError(f"input size {h}x{w} does not suit {name}: height and width must be multiples of 32")
        if self.square_input and h != w:
            raise EvitError(f"input size {h}x{w} does not suit {name}: {self.title} models take a square input")

    # -- PyTorch -----------------------------------------------------------------------------------------------------
    @abstractmethod
    def build(self, card: ModelCard) -> nn.Module:
        """The PyTorch module of ``card`` with default-initialised weights (the zoo sets eps, mode and weights)."""

    def graph_module(self, model: nn.Module, role: str) -> nn.Module:
        """The module that computes graph ``role`` of a built model (default: the whole model)."""
        return model

    def torch_run(self, model: nn.Module, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run graph ``role`` of a built model in PyTorch on named numpy inputs (inference mode is the caller's)."""
        import torch

        graph = self.graph(role)
        out: Any = self.graph_module(model, role)(*(torch.from_numpy(feeds[name]) for name in graph.input_names))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return {name: t.numpy() for name, t in zip(graph.output_names, outs)}

    # -- export ------------------------------------------------------------------------------------------------------
    def export_units(self, model: nn.Module, card: ModelCard, spec: ExportSpec) -> list[ExportUnit]:
        """The graphs of a (transformed) model to export and validate at ``spec``'s size and batch (default: image
        graphs, validated on the profile's photos and noise; a task with other graphs builds those itself)."""
        from .units import graph_unit

        self.check_input_size(card.name, spec.input_size)
        other = [g.role for g in self.graphs if not g.image_input]
        if other:
            raise NotImplementedError(f"task '{self.name}' must build its {', '.join(other)} export units itself")
        return [graph_unit(g, self.graph_module(model, g.role), card, spec) for g in self.graphs]


_SPECS: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    """Add a task (once); returns the spec (``SPEC = register(MyTask())`` in the task's module)."""
    if spec.name in _SPECS:
        raise EvitError(f"task '{spec.name}' is registered twice")
    names = {g.role for g in spec.graphs}
    if spec.timed_role not in names or len(names) != len(spec.graphs):
        raise EvitError(f"task '{spec.name}': graph roles must be distinct and include its timed_role")
    _SPECS[spec.name] = spec
    return spec


def registered() -> dict[str, TaskSpec]:
    """The specs registered so far, by name, in registration order (see :func:`evit_deploy.tasks.all_specs`)."""
    return dict(_SPECS)
