"""Per-layer sensitivity and the accuracy-aware fallback, for any quantizer that can leave layers float.

A quantizer (:class:`LayerQuantizer`: the ONNX Q/DQ one or the TFLite one) lists candidate layers and builds an
int8 model with some of them float. :func:`rank` quantizes one layer at a time and measures the output error
against the float model on the calibration images; :func:`fallback` keeps the most sensitive layers float, in
growing numbers (0, 1, 2, 4, 8, ...), until a measured drop is within the bound (NNCF's
``quantize_with_accuracy_control`` and Polygraphy's ``debug precision`` do this search for other models).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ...errors import EvitError
from ...metrics import row_cosines


class LayerQuantizer(Protocol):
    """``probe``: how a layer's sensitivity is measured — ``alone`` (only that layer int8) or ``all-but`` (every
    layer int8 but that one); ``suffix``: the model files' suffix; ``scheme_name``: what :meth:`build` makes."""

    probe: str
    suffix: str
    scheme_name: str

    def candidates(self) -> list[tuple[str, str]]: ...

    def build(self, out: Path, float_layers: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> Path: ...

    def describe(self) -> str: ...


Run = Callable[[Path], list[np.ndarray]]  # a built model → its first output on every calibration input


@dataclass
class LayerSensitivity:
    layer: str
    op: str
    cosine: float  # min over the calibration images, the model with only this layer int8 against float
    error: float  # max |int8 − float| / max |float|

    @property
    def loss(self) -> float:
        return 1.0 - self.cosine


def compare_outputs(reference: list[np.ndarray], outputs: list[np.ndarray]) -> tuple[float, float]:
    """(min cosine, max relative error) of ``outputs`` against ``reference`` over all inputs."""
    cos = min(float(row_cosines(r, o).min()) for r, o in zip(reference, outputs))
    scale = max(float(np.abs(r).max()) for r in reference) or 1.0
    err = max(float(np.abs(o.astype(np.float64) - r).max()) for r, o in zip(reference, outputs)) / scale
    return cos, err


def rank(quantizer: LayerQuantizer, run: Run, reference: list[np.ndarray], workdir: Path,
         progress: Callable[[int, int], None] | None = None) -> list[LayerSensitivity]:
    """Every candidate layer probed (see :class:`LayerQuantizer`), the one to keep float first: with ``alone``
    the most damaging when quantized, with ``all-but`` the one whose float copy helps most."""
    layers = quantizer.candidates()
    ranking = []
    for i, (layer, op) in enumerate(layers):
        probe = workdir / f"probe{quantizer.suffix}"
        path = (quantizer.build(probe, only=(layer,)) if quantizer.probe == "alone"
                else quantizer.build(probe, float_layers=(layer,)))
        cos, err = compare_outputs(reference, run(path))
        ranking.append(LayerSensitivity(layer, op, cos, err))
        if progress:
            progress(i + 1, len(layers))
    if quantizer.probe == "alone":
        return sorted(ranking, key=lambda s: (s.cosine, -s.error))
    return sorted(ranking, key=lambda s: (-s.cosine, s.error))


@dataclass
class FallbackResult:
    path: Path
    float_layers: list[str]
    drop: float
    tried: list[dict[str, Any]] = field(default_factory=list)  # {"float_layers": n, "drop": points}

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "path"}


def fallback(quantizer: LayerQuantizer, ranking: list[LayerSensitivity], measure: Callable[[Path], float],
             max_drop: float, out: Path, what: str) -> FallbackResult:
    """The smallest prefix of ``ranking`` (0, 1, 2, 4, ... layers) that, left float, brings ``measure`` (the drop,
    in points) within ``max_drop``; raises a one-line error saying how close it got when none does."""
    counts = sorted({0, *(2**k for k in range(len(ranking).bit_length())), len(ranking)})
    tried = []
    for count in counts:
        float_layers = tuple(s.layer for s in ranking[:count])
        path = quantizer.build(out, float_layers=float_layers)
        drop = measure(path)
        tried.append({"float_layers": count, "drop": round(drop, 4)})
        if drop <= max_drop:
            return FallbackResult(path, list(float_layers), drop, tried)
    best = min(tried, key=lambda t: t["drop"])
    names = ", ".join(s.layer for s in ranking[:3])
    raise EvitError(f"int8 cannot reach --max-drop {max_drop:g} ({what}): the best was {best['drop']:.2f} points with "
                    f"{best['float_layers']} of {len(ranking)} layers float (most sensitive first: {names}, ...); "
                    "raise --max-drop or export fp16/fp32; nothing was written")
