"""int8 as explicit quantization: a Q/DQ ONNX (QuantizeLinear/DequantizeLinear around weights and activations)
made with ``onnxruntime.quantization.quantize_static``, calibrated on images, with float islands.

Two schemes, chosen by the target (measured on this project's x86 machine; latency/reports/int8-cpu.md):

- ``cpu`` (cpu-ort, mobile-cpu-ort): uint8 asymmetric activations, int8 per-channel weights (U8S8, the form
  ONNX Runtime fuses into QLinearConv on every CPU), Conv/MatMul/Gemm and the element-wise Add/Mul/Clip
  quantized; each HardSwish is first rewritten as ``x · Clip(x + 3, 0, 6) · 1/6``, because ONNX Runtime has no
  int8 HardSwish and a float HardSwish between int8 convolutions costs more than the int8 saves;
- ``tensorrt`` (cloud-gpu-trt, jetson-orin-trt): symmetric int8 activations and weights (zero point 0, what a
  strongly typed TensorRT network takes), Conv/MatMul/Gemm only (TensorRT fuses the rest itself).

Both keep float the nodes the fp16 form keeps in fp32: the attention's matmuls, normaliser and division,
the norms and the resizes (:func:`~evit_deploy.export.trt.onnx_layers.int8_sensitive_layers`). Calibration runs
once per export (``calibration_cache_path``); every later quantization (sensitivity, fallback) reuses its ranges.

``int8-dynamic`` (:func:`quantize_dynamic_int8`) is onnxruntime's ``quantize_dynamic``: no Q/DQ, no calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import EvitError
from ...optional import require
from ..trt.onnx_layers import int8_sensitive_layers

HEAVY_OPS = ("Conv", "MatMul", "Gemm")  # the layers a sensitivity ranking and a fallback choose among
ORT_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
CALIBRATION_METHODS = tuple(ORT_METHODS)


@dataclass(frozen=True)
class QdqScheme:
    name: str
    activation: str  # onnxruntime QuantType name of activations
    symmetric: bool
    op_types: tuple[str, ...]
    rewrite_hardswish: bool
    float_islands: bool = True  # keep the attention/norm/resize nodes float (False only to measure why they must)


SCHEMES = {
    "cpu": QdqScheme("cpu", "QUInt8", False, ("Conv", "MatMul", "Gemm", "Add", "Mul", "Clip"), True),
    "tensorrt": QdqScheme("tensorrt", "QInt8", True, HEAVY_OPS, False),
}


def rewrite_hardswish(model: Any) -> int:
    """Replace every ``HardSwish(x)`` by ``Mul(Mul(x, Clip(Add(x, 3), 0, 6)), 1/6)`` in place (the same function,
    in ops ONNX Runtime runs in int8); returns how many were rewritten."""
    onnx = require("onnx", "int8 quantization")
    helper = onnx.helper
    graph = model.graph
    consts = {"__evit_hs_three": 3.0, "__evit_hs_zero": 0.0, "__evit_hs_six": 6.0, "__evit_hs_sixth": 1.0 / 6.0}
    nodes, count = [], 0
    for node in graph.node:
        if node.op_type != "HardSwish":
            nodes.append(node)
            continue
        x, y, base = node.input[0], node.output[0], node.name or f"hardswish_{count}"
        nodes += [
            helper.make_node("Add", [x, "__evit_hs_three"], [f"{base}/plus3"], name=f"{base}/Add"),
            helper.make_node("Clip", [f"{base}/plus3", "__evit_hs_zero", "__evit_hs_six"], [f"{base}/relu6"],
                             name=f"{base}/Clip"),
            helper.make_node("Mul", [x, f"{base}/relu6"], [f"{base}/scaled"], name=f"{base}/Mul"),
            helper.make_node("Mul", [f"{base}/scaled", "__evit_hs_sixth"], [y], name=f"{base}/Mul_sixth"),
        ]
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
        existing = {i.name for i in graph.initializer}
        graph.initializer.extend(onnx.numpy_helper.from_array(np.array(v, np.float32), name)
                                 for name, v in consts.items() if name not in existing)
    return count


def drop_input_qdq(model: Any, nodes: set[str]) -> int:
    """Feed ``nodes`` the float tensor instead of its Q→DQ copy (the producer's quantized output stays for its
    other consumers): a layer left out of quantization then also gets float activations. Returns the inputs
    rewired."""
    producers = {out: n for n in model.graph.node for out in n.output}
    rewired = 0
    for node in model.graph.node:
        if node.name not in nodes:
            continue
        for i, name in enumerate(node.input):
            dq = producers.get(name)
            q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
                rewired += 1
    return rewired


class OnnxInt8:
    """Quantizes one fp32 ONNX graph to a Q/DQ int8 ONNX; chosen layers can be left float (``float_layers``)."""

    probe = "alone"  # quantizing a single layer is cheap here: the calibration ranges are cached
    suffix = ".onnx"

    def __init__(self, fp32_path: Path, workdir: Path, inputs: list[np.ndarray], input_name: str,
                 scheme: str | QdqScheme, method: str = "minmax") -> None:
        if isinstance(scheme, str) and scheme not in SCHEMES:
            raise EvitError(f"unknown int8 scheme '{scheme}' (known: {', '.join(SCHEMES)})")
        if method not in CALIBRATION_METHODS:
            raise EvitError(f"unknown calibration method '{method}' (known: {', '.join(CALIBRATION_METHODS)})")
        onnx = require("onnx", "int8 quantization")
        self.scheme = SCHEMES[scheme] if isinstance(scheme, str) else scheme
        self.method, self.inputs, self.input_name = method, inputs, input_name
        self.workdir = workdir
        model = onnx.load(str(fp32_path))
        self.hardswish = rewrite_hardswish(model) if self.scheme.rewrite_hardswish else 0
        self.base = workdir / "int8-base.onnx"
        onnx.save(model, str(self.base))
        self.islands = [layer.node for layer in int8_sensitive_layers(model)] if self.scheme.float_islands else []
        self.layers = [(n.name, n.op_type) for n in model.graph.node
                       if n.op_type in HEAVY_OPS and n.name and n.name not in self.islands]
        self.cache = workdir / "int8-calibration.json"
        self.scheme_name = f"Q/DQ ONNX, {self.scheme.name} scheme"

    def candidates(self) -> list[tuple[str, str]]:
        """(node name, op type) of the layers a ranking or a fallback chooses among."""
        return list(self.layers)

    def build(self, out: Path, float_layers: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> Path:
        """Write the int8 graph to ``out``: every layer quantized but ``float_layers`` (float weights and
        activations), or only the layers in ``only`` (a sensitivity probe)."""
        quantization = require("onnxruntime.quantization", "int8 quantization")
        onnx = require("onnx", "int8 quantization")
        reader = calibration_reader(self.input_name, self.inputs)
        extra: dict[str, Any] = {"ActivationSymmetric": self.scheme.symmetric, "WeightSymmetric": True}
        if self.method == "percentile":
            extra["CalibPercentile"] = 99.99
        quantization.quantize_static(
            str(self.base), str(out), reader, quant_format=quantization.QuantFormat.QDQ,
            activation_type=getattr(quantization.QuantType, self.scheme.activation),
            weight_type=quantization.QuantType.QInt8, per_channel=True,
            op_types_to_quantize=list(self.scheme.op_types), nodes_to_quantize=list(only) if only else None,
            nodes_to_exclude=[*self.islands, *float_layers],
            calibrate_method=getattr(quantization.CalibrationMethod, ORT_METHODS[self.method]),
            extra_options=extra, calibration_cache_path=str(self.cache),
        )
        if float_layers:
            model = onnx.load(str(out))
            drop_input_qdq(model, set(float_layers))
            onnx.save(model, str(out))
        return out

    def describe(self) -> str:
        s = self.scheme
        parts = [f"Q/DQ int8 ({s.name} scheme): {'int8 symmetric' if s.symmetric else 'uint8 asymmetric'} "
                 f"activations, int8 per-channel weights; quantized ops {', '.join(s.op_types)}",
                 f"{self.method} calibration on {len(self.inputs)} images",
                 f"float islands: {len(self.islands)} nodes (the attention's matmuls/normaliser/division, norms, "
                 "resizes)"]
        if self.hardswish:
            parts.append(f"{self.hardswish} HardSwish rewritten as x*Clip(x+3,0,6)/6 so they run in int8")
        return "; ".join(parts)


def quantize_dynamic_int8(path: Path) -> None:
    """Replace the fp32 ONNX at ``path`` by onnxruntime's ``quantize_dynamic`` form (int8 weights, activations
    quantized at run time)."""
    quantization = require("onnxruntime.quantization", "int8-dynamic quantization")
    fp32 = path.with_name(path.stem + ".fp32.onnx")
    path.rename(fp32)
    try:
        quantization.quantize_dynamic(str(fp32), str(path), weight_type=quantization.QuantType.QInt8)
    finally:
        fp32.unlink()


def calibration_reader(name: str, inputs: list[np.ndarray]) -> Any:
    """An onnxruntime ``CalibrationDataReader`` over pre-processed inputs (``[1,3,H,W]`` float32 each)."""
    base = require("onnxruntime.quantization", "int8 quantization").CalibrationDataReader

    class Reader(base):
        def __init__(self) -> None:
            self.index = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.index >= len(inputs):
                return None
            self.index += 1
            return {name: np.ascontiguousarray(inputs[self.index - 1], dtype=np.float32)}

        def rewind(self) -> None:
            self.index = 0

    return Reader()
