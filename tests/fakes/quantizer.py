"""A stand-in for an int8 layer quantizer (:class:`evit_deploy.export.quantize.search.LayerQuantizer`).

What it checks: the sensitivity search and fallback of :mod:`evit_deploy.export.quantize.search` — which layers
it asks to keep in float, in which order and how many candidates it builds. Each "model" it builds is a text file
holding the number of float layers, so a test's metric can score it. What it does not check: quantization
itself (no ONNX or TFLite model is built); ``tests/test_int8.py`` and ``tests/test_tflite.py`` quantize real
models.
"""

from __future__ import annotations

from pathlib import Path


class FakeQuantizer:
    """A LayerQuantizer stand-in: records what it was asked to build (tests the search, not a quantizer)."""

    probe, suffix, scheme_name = "alone", ".onnx", "fake"

    def __init__(self, layers: int) -> None:
        self.layers = [(f"conv{i}", "Conv") for i in range(layers)]
        self.built: list[tuple[str, ...]] = []

    def candidates(self) -> list[tuple[str, str]]:
        return self.layers

    def build(self, out: Path, float_layers: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> Path:
        self.built.append(tuple(float_layers))
        out.write_text(str(len(float_layers)))
        return out

    def describe(self) -> str:
        return "fake"
