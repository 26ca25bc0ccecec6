"""Parameters and MACs of every model of a comparison, counted as the zoo counts its own
(:mod:`evit_deploy.zoo.stats`): ``torch.utils.flop_counter`` on the meta device (MACs = FLOPs / 2, attention
matmuls included), on the CPU for builders that cannot build on meta. Counted at the paper's input size, so they
sit beside the paper's columns; a difference over 5% means the wrong model was built, unless the card explains it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..errors import one_line
from ..zoo.stats import model_stats
from .builders import Target, builder_for
from .cards import CompetitorCard, PaperRow, PaperTable

MISMATCH = 0.05  # relative difference beyond which counted and published figures disagree


@dataclass(frozen=True)
class Count:
    params: int
    macs: int
    input_size: tuple[int, int]
    device: str  # where it was counted: meta, cpu, or the zoo's cache

    @property
    def params_M(self) -> float:
        return self.params / 1e6

    @property
    def macs_G(self) -> float:
        return self.macs / 1e9


def _macs(graph: torch.nn.Module, size: tuple[int, int], device: str) -> int:
    x = torch.empty(1, 3, *size, device=device)
    with FlopCounterMode(display=False) as counter, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph(x)
    return counter.get_total_flops() // 2


def count_competitor(card: CompetitorCard, table: PaperTable, size: tuple[int, int], macs: bool = True) -> Count:
    """Params (of what the paper counts: SAM the whole model) and MACs (of the timed graph) at ``size``
    (``macs=False``: params only, no forward pass; MACs reported as 0)."""
    builder = builder_for(card)
    target = Target(table.num_classes, tuple(size))
    devices = ("meta", "cpu") if builder.meta else ("cpu",)
    for device in devices:
        try:
            with torch.device(device), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                graph = builder.build(card.recipe, target).eval()
                counted = builder.counted(card.recipe, target) if builder.counted else graph
            return Count(sum(p.numel() for p in counted.parameters()), _macs(graph, size, device) if macs else 0,
                         tuple(size), device)
        except Exception:
            if device == devices[-1]:
                raise
    raise AssertionError("unreachable")


def count_efficientvit(name: str, size: tuple[int, int]) -> Count:
    stats = model_stats(name, tuple(size))
    return Count(stats.params, stats.macs, tuple(size), "meta")


def check_counts(count: Count | None, row: PaperRow | None) -> list[dict[str, Any]]:
    """Counted vs published params and MACs (where the paper gives them), each with its relative difference."""
    if count is None or row is None:
        return []
    checks = []
    for what, counted, paper, unit in (("params", count.params_M, row.params_M, "M"),
                                       ("MACs", count.macs_G, row.macs_G, "G")):
        if paper is None:
            continue
        delta = counted / paper - 1
        checks.append({"what": what, "counted": round(counted, 3), "paper": paper, "unit": unit,
                       "delta": round(delta, 4), "mismatch": abs(delta) > MISMATCH})
    return checks


def mismatch_text(name: str, checks: list[dict[str, Any]], row: PaperRow | None) -> str:
    """One line saying a >5% difference and what it means ('' when everything is within 5%)."""
    bad = [c for c in checks if c["mismatch"]]
    if not bad:
        return ""
    diff = ", ".join(f"{c['what']} {c['counted']:.4g}{c['unit']} vs the paper's {c['paper']}{c['unit']} "
                     f"({c['delta']:+.1%})" for c in bad)
    meaning = (row.count_note if row and row.count_note
               else "more than 5% off: the model built here is probably not the paper's; treat its timings with care")
    return f"{name}: counted {diff}: {one_line(meaning, 400)}"
