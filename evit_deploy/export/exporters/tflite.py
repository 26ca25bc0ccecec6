"""LiteRT (TFLite) exporter: litert-torch conversion, then ai-edge-quantizer recipes for fp16 / int8.

- ``fp32``: ``litert_torch.convert`` (torch.export → StableHLO → TFLite flatbuffer), no TensorFlow needed.
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

import contextlib
import io
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...errors import EvitError, one_line
from ...host import library_version
from ...optional import require
from ..calibration import CalibrationSet, calibration_set
from ..tasks import ExportUnit
from .base import Artifact, Capabilities, ExportContext, Exporter, register_exporter

SIGNATURE = "serving_default"
RECIPES = {
    "fp16": "weight-only float16 (FLOAT_CASTING on CONV_2D/DEPTHWISE_CONV_2D/FULLY_CONNECTED weights); "
            "dequantized to float32 when the model is loaded, compute in float32",
    "int8-dynamic": "dynamic_wi8_afp32: int8 symmetric per-channel weights, float32 activations quantized at "
                    "run time, float32 I/O",
}


def require_tflite(precision: str = "fp32") -> None:
    """Raise a one-line EvitError unless the [tflite] extra (for ``precision``) is importable."""
    needed = ["litert_torch", "ai_edge_litert"] + ([] if precision == "fp32" else ["ai_edge_quantizer"])
    for module in needed:
        with _quiet():
            require(module, "the tflite exporter")


def _version(dist: str) -> str:
    return library_version(dist) or "?"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence litert-torch's progress console, absl/Python warnings and torchao import chatter."""
    old = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    # ai-edge-quantizer and torchao log through the root logger, torch's pytree through "torch".
    loggers = [logging.getLogger(), logging.getLogger("torch")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        # redirect_stderr: tqdm bars that ai-edge-quantizer forces on for graphs of 100+ ops.
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if old is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = old


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


def convert_fp32(unit: ExportUnit, path: Path) -> None:
    """PyTorch → float32 .tflite with litert-torch (static shapes of the unit's example inputs)."""
    import litert_torch

    wrapper = NamedIO(unit.module.eval(), unit.input_names, unit.output_names).eval()
    sample = dict(zip(unit.input_names, unit.example_inputs))
    try:
        with _quiet(), torch.inference_mode(False), torch.no_grad():
            edge = litert_torch.convert(wrapper, sample_kwargs=sample)
            edge.export(str(path))
    except Exception as exc:  # torch.export / lowering / converter failures
        raise EvitError(f"litert-torch could not convert the {unit.role} graph "
                        f"({type(exc).__name__}: {one_line(exc)})") from None


def quantize_int8(unit: ExportUnit, ctx: ExportContext, fp32: Path, path: Path, calib: CalibrationSet) -> list[str]:
    """Full int8 of the float ``fp32`` model into ``path``, with sensitivity / fallback when asked."""
    from ...runtime.litert_backend import LiteRtBackend
    from ..quantize.onnx_unit import quiet_root_logger, search_and_write
    from ..quantize.tflite_int8 import TfliteInt8

    inputs = [x.numpy() for x in calib.inputs]
    name, threads = unit.input_names[0], ctx.profile.runtime.threads

    def run(model: Path) -> list[np.ndarray]:
        backend = LiteRtBackend(model, threads=threads)
        return [next(iter(backend.run({name: x}).values())) for x in inputs]

    shutil.copyfile(fp32, path)  # the float reference, replaced by the int8 model below
    with _quiet(), quiet_root_logger(), tempfile.TemporaryDirectory(prefix="evit-int8-") as tmp:
        quantizer = TfliteInt8(fp32, inputs, name, threads)
        return search_and_write(unit, ctx, quantizer, run, path, Path(tmp), calib.source, "minmax (true min/max)",
                                accuracy_on_data=False)


def quantize(src: Path, dst: Path, precision: str, calib: CalibrationSet | None, input_names: tuple[str, ...],
             threads: int) -> None:
    """Apply the ai-edge-quantizer recipe of ``precision`` to the float model ``src``; writes ``dst``."""
    from ai_edge_quantizer import quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

    with _quiet():
        q = quantizer.Quantizer(str(src))
        if precision == "fp16":
            q.add_weight_only_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, num_bits=16,
                                     algorithm_key=AlgorithmName.FLOAT_CASTING)
        elif precision == "int8-dynamic":
            q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
        else:
            raise EvitError(f"the tflite exporter has no recipe for precision '{precision}'")
        statistics = None
        if q.need_calibration:
            if calib is None or not calib.inputs:
                raise EvitError("int8 quantization needs calibration images (--calib DIR)")
            samples = [{input_names[0]: x.numpy()} for x in calib.inputs]
            statistics = q.calibrate({SIGNATURE: samples}, num_threads=max(1, threads))
        result = q.quantize(statistics, enable_progress_bar=False, enable_progress_report=False)
        result.export_model(str(dst))
    dst.chmod(0o644)  # written through mmap with the executable bit


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
                                roles=("model", "encoder"), fallback="onnx")

    def export(self, unit: ExportUnit, ctx: ExportContext) -> Artifact:
        require_tflite(ctx.precision)
        if len(unit.input_names) != 1:
            raise EvitError(f"the tflite exporter converts single-input graphs; the {unit.role} has "
                            f"{len(unit.input_names)} inputs")

        calib = None
        if ctx.precision == "int8":
            with ctx.step(f"read calibration images ({ctx.calib or 'bundled sample photos'})"):
                calib = calibration_set(ctx.calib, ctx.subject, ctx.spec.input_size, ctx.profile.quant.min_images)
        elif ctx.calib is not None:
            warnings.warn(f"--calib is only used for int8; ignored for {ctx.precision}", stacklevel=2)

        path = ctx.workdir / ctx.file_name(unit.role, ".tflite")
        fp32 = path if ctx.precision == "fp32" else path.with_name(path.stem + ".fp32.tflite")
        started = time.perf_counter()
        with ctx.step(f"convert to TFLite with litert-torch ({unit.role})"):
            convert_fp32(unit, fp32)
        notes = [f"converted with litert-torch {_version('litert-torch')} in {time.perf_counter() - started:.1f}s "
                 f"(torch.export → TFLite, no TensorFlow); runs on ai-edge-litert {_version('ai-edge-litert')}"]
        if ctx.precision == "int8":
            with ctx.step(f"quantize int8 with ai-edge-quantizer ({unit.role})"):
                try:
                    notes += quantize_int8(unit, ctx, fp32, path, calib)
                finally:
                    fp32.unlink(missing_ok=True)
        elif ctx.precision != "fp32":
            with ctx.step(f"quantize {ctx.precision} with ai-edge-quantizer ({unit.role})"):
                try:
                    quantize(fp32, path, ctx.precision, calib, unit.input_names, ctx.profile.runtime.threads)
                finally:
                    fp32.unlink(missing_ok=True)
            notes.append(f"ai-edge-quantizer {_version('ai-edge-quantizer')} {RECIPES[ctx.precision]}")

        info = inspect_tflite(path)
        notes += self._layout_notes(info)
        if ctx.precision == "int8":
            if not info["float_div"]:
                raise EvitError(f"int8 quantization of the {unit.role} left a DIV op in int8; it would abort at run "
                                "time (division by a zero-point divisor)")
            notes.append(f"kept float32 inside the int8 graph: {info['ops'].get('DIV', 0)} DIV and the attention "
                         "core (LiteMLA matmuls, normaliser clamp, reshapes)")
            quant = [f"{name} {q['dtype']} scale {q['scale']:.6g} zero_point {q['zero_point']}"
                     for name, q in info["quantization"].items()]
            if quant:
                notes.append("quantized I/O (real = scale * (q - zero_point)): " + "; ".join(quant)
                             + "; evit_deploy.runtime takes and returns float32 and converts")
        notes.append(f"XNNPACK: {info['xnnpack_partitions']} delegated partitions when loaded with LiteRT here"
                     if info["xnnpack_partitions"] else "XNNPACK delegate did not take any part of the graph here")
        return Artifact("tflite", unit.role, path.name, ctx.precision, "NCHW", info["inputs"], info["outputs"],
                        notes=[n for n in notes if n])

    @staticmethod
    def _layout_notes(info: dict) -> list[str]:
        return [f"I/O layout NCHW as in PyTorch; convolutions run NHWC inside the graph "
                f"({info['ops'].get('TRANSPOSE', 0)} TRANSPOSE ops)"]
