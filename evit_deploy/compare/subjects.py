"""A competitor as an :class:`~evit_deploy.export.subjects.ExportSubject`: a generic single-input image graph with
its builder's I/O names, exported, validated and written by the same pipeline as the zoo's models."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import EvitError
from ..export import ExportSubject, zoo_subject
from ..tasks import ExportSpec, ExportUnit, image_unit, task_spec
from ..zoo.cards import all_cards
from ..zoo.registry import RANDOM_WEIGHTS_SEED
from .builders import Target, builder_for
from .cards import CompetitorCard, PaperTable, paper_tables, resolve_competitor


def export_name(card: CompetitorCard, table: PaperTable) -> str:
    """The name a competitor's export carries (``segformer-b1-cityscapes``): its table's classes are part of it."""
    return f"{card.name}-{table.name}"


def batchnorm_from_noise(model: nn.Module, size: tuple[int, int], weight: float | None = None) -> None:
    """Set every BatchNorm's running statistics from one pass over a noise image of ``size`` (each layer's own batch
    statistics, as training leaves them; the rest of ``model`` in eval mode), after setting every BatchNorm's scale
    to ``weight`` (None: as built). ``model`` is left in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        if weight is not None and m.weight is not None:
            with torch.no_grad():
                m.weight.fill_(weight)
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: after one pass, exactly that pass's statistics
        m.train()
    try:
        with torch.inference_mode(False), torch.no_grad():
            model(torch.randn(1, 3, *size))
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.eval()


def competitor_subject(card: CompetitorCard, table: PaperTable) -> ExportSubject:
    """The export subject of ``card`` in ``table`` (its classes; default input size: its paper row's or the
    table's). Raises a one-line error when its package is missing or it has no builder."""
    builder = builder_for(card)
    row = card.rows.get(table.name)
    default_size = row.input_size if row else table.input_size

    def build(size: tuple[int, int]) -> nn.Module:
        card.input_rule.check(card.name, tuple(size))
        with torch.random.fork_rng(devices=[]):  # the same random weights every time
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model = builder.build(card.recipe, Target(table.num_classes, tuple(size))).eval()
            if card.random_weights.batchnorm_from_noise:
                batchnorm_from_noise(model, tuple(size), card.random_weights.batchnorm_weight)
            return model

    task = task_spec(card.task)
    graph = task.graph(builder.role)

    def units(model: nn.Module, spec: ExportSpec) -> list[ExportUnit]:
        return [image_unit(builder.role, model, subject, spec, builder.input_name, builder.output_name,
                           graph.agreement_name, graph.agreement)]

    def weights() -> dict:
        stats = (f"; BatchNorm statistics from one pass over noise ({card.random_weights.why})"
                 if card.random_weights.batchnorm_from_noise else "")
        return {"file": None, "random": True,
                "note": f"random weights: {card.name}, a competitor of the paper, built with {builder.package} "
                        f"({builder.graph_note}){stats}; latency does not depend on weights"}

    subject = ExportSubject(export_name(card, table), card.task, default_size, table.preprocess, build, units,
                            weights, measured=task.measured,
                            kind="comparison", onnx=card.onnx)
    return subject


def subject_for(name: str, weights: str | None = None, ema: bool = False) -> ExportSubject:
    """The subject an export's model name stands for: a zoo model (built from ``weights``), or a competitor
    export (``<competitor>-<table>``)."""
    if name in all_cards():
        return zoo_subject(all_cards()[name], weights, ema)
    card, table = resolve_competitor(name)
    if table is None:
        raise EvitError(f"{name}: a competitor export is named <competitor>-<table> (e.g. {card.aliases()[0]})")
    return competitor_subject(card, paper_tables()[table])


def export_subject(model: str, weights: str | None = None) -> ExportSubject | None:
    """What an export folder whose manifest names ``model`` was made from, when it is a competitor's export;
    None for a zoo model (the export and bench code's default)."""
    return None if model in all_cards() else subject_for(model, weights)
