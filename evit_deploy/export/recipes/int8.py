"""int8 recipes, all on the written artifact: dynamic int8 (ONNX Runtime, ai-edge-quantizer) and calibrated full
int8 (a Q/DQ ONNX in the ``cpu`` or ``tensorrt`` scheme, NNCF for OpenVINO, ai-edge-quantizer for TFLite), each
with the same float islands, per-layer sensitivity and accuracy-aware fallback (:mod:`evit_deploy.export.quantize`).

``scheme`` is the profile's ``quant.scheme`` a recipe makes: ``cpu`` = asymmetric activations for CPU kernels,
``tensorrt`` = symmetric int8 activations, what TensorRT builds as written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .registry import Written, register_recipe

if TYPE_CHECKING:
    from ...tasks import ExportUnit
    from ..exporters.base import ExportContext

ORT_CALIBRATIONS = ("minmax", "entropy", "percentile")  # onnxruntime.quantization's calibrators


@register_recipe("int8-dynamic-ort", "int8-dynamic", ("onnx",), "artifact", requires=("onnxruntime",),
                 step="quantize int8-dynamic ({role})")
def int8_dynamic_ort(written: Written, unit: ExportUnit, ctx: ExportContext) -> list[str]:
    """onnxruntime quantize_dynamic: int8 weights, activations quantized at run time."""
    from ..quantize.onnx_qdq import quantize_dynamic_int8

    quantize_dynamic_int8(written.path)
    return ["onnxruntime quantize_dynamic: int8 weights, activations quantized at run time"]


@register_recipe("int8-qdq-cpu", "int8", ("onnx",), "artifact", scheme="cpu", calibrations=ORT_CALIBRATIONS,
                 requires=("onnxruntime",), step="quantize int8 ({role}, cpu scheme)")
def int8_qdq_cpu(written: Written, unit: ExportUnit, ctx: ExportContext) -> list[str]:
    """Q/DQ ONNX (cpu scheme): uint8 asymmetric activations, int8 per-channel weights, HardSwish in int8."""
    from ..quantize.onnx_unit import quantize_unit

    return quantize_unit(unit, ctx, written.path, "cpu")


@register_recipe("int8-qdq-tensorrt", "int8", ("onnx",), "artifact", scheme="tensorrt", calibrations=ORT_CALIBRATIONS,
                 requires=("onnxruntime",), step="quantize int8 ({role}, tensorrt scheme)")
def int8_qdq_tensorrt(written: Written, unit: ExportUnit, ctx: ExportContext) -> list[str]:
    """Q/DQ ONNX (tensorrt scheme): symmetric int8 activations and weights on Conv/MatMul/Gemm."""
    from ..quantize.onnx_unit import quantize_unit

    return quantize_unit(unit, ctx, written.path, "tensorrt")


@register_recipe("int8-nncf", "int8", ("openvino",), "artifact", scheme="cpu", calibrations=("minmax", "percentile"),
                 requires=("nncf",), step="quantize int8 ({role}, NNCF)")
def int8_nncf(written: Written, unit: ExportUnit, ctx: ExportContext) -> list[str]:
    """NNCF post-training quantization of the IR (MIXED preset: uint8 asymmetric activations), float islands."""
    from ..quantize.openvino_nncf import quantize_openvino_ir

    return quantize_openvino_ir(written.path, written.onnx, unit, ctx)


@register_recipe("int8-dynamic-tflite", "int8-dynamic", ("tflite",), "artifact", requires=("ai_edge_quantizer",),
                 step="quantize int8-dynamic with ai-edge-quantizer ({role})")
def int8_dynamic_tflite(written: Written, unit: ExportUnit, ctx: ExportContext) -> list[str]:
    """ai-edge-quantizer dynamic_wi8_afp32: int8 per-channel weights, activations quantized at run time."""
    from ..quantize.tflite_recipes import dynamic_int8

    return dynamic_int8(written.path)


@register_recipe("int8-static-tflite", "int8", ("tflite",), "artifact", scheme="cpu", calibrations=("minmax",),
                 requires=("ai_edge_quantizer",), step="quantize int8 with ai-edge-quantizer ({role})")
def int8_static_tflite(written: Written, unit: ExportUnit, ctx: ExportContext) -> list[str]:
    """ai-edge-quantizer static_wi8_ai8 (int8 asymmetric activations), true min/max, attention core and DIV float."""
    from ..quantize.tflite_int8 import quantize_tflite_unit

    return quantize_tflite_unit(written.path, unit, ctx)
