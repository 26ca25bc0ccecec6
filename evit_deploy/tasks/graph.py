"""The graphs a task exports, declared once (numpy only: the manifest contract and the runtime read them).

A :class:`Graph` is a role (``model``; SAM: ``encoder``, ``decoder``), its inputs and outputs as ``(name, rank)`` in
order (the names the exporters give, the Predictor feeds and ``export.json`` lists), the axes that are always
symbolic, and the agreement metric the validation gate, ``validate`` and ``bench import`` report for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..metrics import row_cosines

Agreement = Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], float]


@dataclass(frozen=True)
class Graph:
    """One graph of a task. ``image_input``: its first input is the ``[B, 3, H, W]`` image at the export's input
    size (batch and, where the profile asks, height and width symbolic); ``class_output``: its first output holds
    one channel per class on axis 1; ``reduced_precision``: False keeps it fp32 whatever the export precision."""

    role: str
    inputs: tuple[tuple[str, int], ...]
    outputs: tuple[tuple[str, int], ...]
    agreement_name: str
    agreement: Agreement
    image_input: bool = True
    class_output: bool = False
    dynamic_axes: Mapping[str, Mapping[int, str]] = field(default_factory=dict)  # always symbolic (SAM prompts)
    reduced_precision: bool = True

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.outputs)


def argmax_agreement(axis: int) -> Agreement:
    """Share of positions where the first output's argmax over ``axis`` is the reference's (top-1, per pixel)."""

    def agreement(ref: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> float:
        name = next(iter(ref))
        return float(np.mean(ref[name].argmax(axis=axis) == out[name].argmax(axis=axis)))

    return agreement


def min_cosine(ref: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> float:
    """The lowest cosine similarity of a batch row of the first output with the reference's."""
    name = next(iter(ref))
    return float(row_cosines(ref[name], out[name]).min())
