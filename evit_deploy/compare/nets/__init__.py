"""Competitors that no installable package provides, written here from their published architectures (the
papers and the authors' configs; facts only, our own code). Each keeps its authors' module names, so an official
checkpoint's keys match, and its counted params/MACs sit within 2% of the published ones (see the cards'
``count_note`` where a published figure is itself inconsistent).

``ARCHS`` maps a card's ``recipe.arch`` to where its builder lives: ``build(**recipe, num_classes=...)`` returns the
timed graph, ``counted(**recipe, num_classes=...)`` what the paper's parameter count covers (the inference model
for segmentation; encoder + prompt encoder + mask decoder for SAM). Modules are imported on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class Arch:
    module: str  # under evit_deploy.compare.nets
    build: str
    counted: str


ARCHS = {
    "segnext": Arch("segnext", "segnext", "segnext"),
    "deeplabv3plus-mbv2": Arch("deeplabv3plus", "deeplabv3plus_mbv2", "inference_parts"),
    "mobilesam": Arch("tinyvit_sam", "mobilesam_encoder", "mobilesam_whole"),
    "edgesam": Arch("repvit_sam", "edgesam_encoder", "edgesam_whole"),
    "efficientsam": Arch("efficientsam", "efficientsam_encoder", "efficientsam_whole"),
}


def _function(arch: str, which: str):
    if arch not in ARCHS:
        raise KeyError(f"unknown written architecture '{arch}' (known: {', '.join(ARCHS)})")
    spec = ARCHS[arch]
    return getattr(importlib.import_module(f"{__name__}.{spec.module}"), getattr(spec, which))


def build(arch: str, **kwargs: Any) -> nn.Module:
    """The timed graph of ``arch`` (``kwargs``: the recipe's settings and ``num_classes`` where it takes classes)."""
    return _function(arch, "build")(**kwargs)


def counted(arch: str, **kwargs: Any) -> nn.Module:
    """What the paper's parameter count of ``arch`` covers."""
    return _function(arch, "counted")(**kwargs)
