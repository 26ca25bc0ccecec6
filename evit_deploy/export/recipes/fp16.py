"""fp16 recipes: the mixed fp16 deployment form (fp16 with fp32 islands) for the ONNX and the compiled PyTorch
engine, and weight-only fp16 for TFLite."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .registry import Written, register_recipe

if TYPE_CHECKING:
    from torch import nn

    from ...tasks import ExportUnit
    from ..exporters.base import ExportContext


@register_recipe("fp16-islands", "fp16", ("onnx", "torch-compiled"), "module",
                 step="mixed fp16 deployment form ({role})")
def fp16_islands(module: nn.Module, unit: ExportUnit, ctx: ExportContext) -> tuple[nn.Module, list[str]]:
    """fp16 everywhere but fp32 islands (attention matmuls/reductions/division, norms, resizes), BatchNorm folded
    in fp32, float32 inputs and outputs (:func:`evit_deploy.export.precision.mixed_fp16`)."""
    from ..precision import mixed_fp16

    mixed, note = mixed_fp16(module)
    return mixed, [note]


@register_recipe("fp16-weights", "fp16", ("tflite",), "artifact", requires=("ai_edge_quantizer",),
                 step="quantize fp16 with ai-edge-quantizer ({role})")
def fp16_weights(written: Written, unit: ExportUnit, ctx: ExportContext) -> list[str]:
    """Weight-only float16 (FLOAT_CASTING of conv/FC weights), dequantized to float32 at load, fp32 compute."""
    from ..quantize.tflite_recipes import weight_only_fp16

    return weight_only_fp16(written.path)
