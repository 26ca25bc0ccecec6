"""LiteRT (TFLite) exporter: litert-torch conversion to a float32 ``.tflite``; reduced precisions are the registered
recipes' (:mod:`evit_deploy.export.recipes`), ai-edge-quantizer rewrites of that file:

- ``fp16``: weight-only float16 (``FLOAT_CASTING``): conv/FC weights stored as fp16, compute in fp32.
- ``int8-dynamic``: ``dynamic_wi8_afp32``: int8 per-channel weights, activations quantized at run time.
- ``int8``: ``static_wi8_ai8``: int8 weights and activations calibrated on ``--calib`` images (default: the
  bundled sample photos) with true min/max; the attention's core (matmuls, normaliser clamp, division) stays
  float (:mod:`evit_deploy.export.quantize.tflite_int8`); sensitivity and the fallback to ``--max-drop`` as for
  ONNX.

The artifact keeps PyTorch's NCHW input/output layout (the converter runs convolutions NHWC inside and adds
the transposes). Signature names are the unit's I/O names (``input`` → ``logits``, ``input_image`` →
``image_embeddings``). The SAM prompt decoder is not converted: it stays ONNX (ONNX Runtime on mobile).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from ...errors import EvitError, one_line
from ...host import library_version
from ...optional import require
from ...tasks import ExportUnit
from ..conversion_cache import ConversionCache, Converted, graph_key
from ..litert_quiet import quiet_litert
from ..recipes.registry import Written, artifact_stage
from .base import Artifact, Capabilities, ExportContext, Exporter, register_exporter

SIGNATURE = "serving_default"


def require_tflite() -> None:
    """Raise a one-line EvitError unless the [tflite] extra's converter and runtime are importable."""
    for module in ("litert_torch", "ai_edge_litert"):
        with quiet_litert():
            require(module, "the tflite exporter")


class NamedIO(nn.Module):
    """Calls ``module`` with keyword inputs and returns a dict, so the TFLite signature keeps the I/O names."""

    def __init__(self, module: nn.Module, input_names: tuple[str, ...], output_names: tuple[str, ...]) -> None:
        super().__init__()
        self.module = module
        self.input_names = input_names
        self.output_names = output_names

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.module(*(inputs[name] for name in self.input_names))
        out = out if isinstance(out, (tuple, list)) else (out,)
        return dict(zip(self.output_names, out))


CONVERSIONS = ConversionCache()  # this process's float conversions (see :mod:`..conversion_cache`)


def convert_fp32(unit: ExportUnit, path: Path) -> Converted | None:
    """PyTorch → float32 .tflite with litert-torch (static shapes of the unit's example inputs). Returns the
    earlier conversion it reused, if the same graph was converted before in this process, else ``None``."""
    import litert_torch

    wrapper = NamedIO(unit.module.eval(), unit.input_names, unit.output_names).eval()
    key = graph_key(wrapper, unit.input_names, unit.example_inputs, "litert-torch",
                    library_version("litert-torch") or "?", torch.__version__)
    earlier = CONVERSIONS.get(key)
    if earlier is not None:
        path.write_bytes(earlier.data)
        return earlier
    sample = dict(zip(unit.input_names, unit.example_inputs))
    started = time.perf_counter()
    try:
        with quiet_litert(), torch.inference_mode(False), torch.no_grad():
            edge = litert_torch.convert(wrapper, sample_kwargs=sample)
            edge.export(str(path))
    except Exception as exc:  # torch.export / lowering / converter failures
        raise EvitError(f"litert-torch could not convert the {unit.role} graph "
                        f"({type(exc).__name__}: {one_line(exc)})") from None
    CONVERSIONS.put(key, Converted(path.read_bytes(), time.perf_counter() - started))
    return None


def inspect_tflite(path: Path) -> dict:
    """Stored I/O specs and quantization, op counts and XNNPACK partitions of a .tflite file (via LiteRT)."""
    from ...runtime.litert_backend import LiteRtBackend, op_details

    backend = LiteRtBackend(path, threads=1)
    details = op_details(backend.interpreter)
    ops = Counter(op["op_name"] for op in details)
    tensors = {t["index"]: t for t in backend.interpreter.get_tensor_details()}
    float_div = all(
        tensors[i]["dtype"].__name__ == "float32"
        for op in details if op["op_name"] == "DIV" for i in op["inputs"] if i >= 0
    )
    return {"inputs": backend.stored_inputs, "outputs": backend.stored_outputs, "quantization": backend.io_quantization,
            "ops": ops, "xnnpack_partitions": backend.xnnpack_partitions, "float_div": float_div}


@register_exporter
class TfliteExporter(Exporter):
    """``.tflite`` through litert-torch (+ ai-edge-quantizer); the SAM decoder unit is exported as ONNX."""

    format = "tflite"
    # The SAM prompt decoder (dynamic prompt count) is not converted: it stays ONNX fp32 for ONNX Runtime Mobile.
    capabilities = Capabilities(precisions=("fp32", "fp16", "int8-dynamic", "int8"), batch=("static",),
                                image_graphs_only=True, fallback="onnx")

    def export(self, unit: ExportUnit, ctx: ExportContext) -> Artifact:
        require_tflite()
        if len(unit.input_names) != 1:
            raise EvitError(f"the tflite exporter converts single-input graphs; the {unit.role} has "
                            f"{len(unit.input_names)} inputs")
        path = ctx.workdir / ctx.file_name(unit.role, ".tflite")
        started = time.perf_counter()
        with ctx.step(f"convert to TFLite with litert-torch ({unit.role})"):
            earlier = convert_fp32(unit, path)
        seconds = time.perf_counter() - started
        how = (f"in {seconds:.1f}s" if earlier is None else
               f"in {earlier.seconds:.1f}s {earlier.source} (the same graph: reused)")
        notes = [f"converted with litert-torch {library_version('litert-torch') or '?'} {how} "
                 f"(torch.export → TFLite, no TensorFlow); runs on ai-edge-litert "
                 f"{library_version('ai-edge-litert') or '?'}"]
        notes += artifact_stage(self.format, Written(path), unit, ctx)
        info = inspect_tflite(path)
        notes += self._layout_notes(info)
        notes.append(f"XNNPACK: {info['xnnpack_partitions']} delegated partitions when loaded with LiteRT here"
                     if info["xnnpack_partitions"] else "XNNPACK delegate did not take any part of the graph here")
        return Artifact("tflite", unit.role, path.name, ctx.unit_precision(unit), "NCHW", info["inputs"],
                        info["outputs"], notes=[n for n in notes if n])

    @staticmethod
    def _layout_notes(info: dict) -> list[str]:
        return [f"I/O layout NCHW as in PyTorch; convolutions run NHWC inside the graph "
                f"({info['ops'].get('TRANSPOSE', 0)} TRANSPOSE ops)"]
