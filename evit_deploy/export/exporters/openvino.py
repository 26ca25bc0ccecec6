"""OpenVINO exporter: the unit's fp32 ONNX (the ONNX exporter's own path: torch.onnx.export → onnxsim →
onnx.checker) converted with ``openvino.convert_model`` → IR (``model.xml`` + ``model.bin``, fp32 weights).

- ``fp32``/``bf16``: the same IR; what differs is the inference precision the profile pins (``openvino.
  inference_precision``), written into the IR's ``rt_info`` so the runtime compiles it that way. Converting the
  PyTorch module directly (``openvino.convert_model(module)``) gave the same latency here (B1 r224 bs1, f32 and
  bf16, within 1%) and takes 15 s of tracing; the ONNX is the graph every CPU target shares, with the node names
  the int8 islands are found by.
- ``int8``: the ``int8-nncf`` recipe rewrites that IR: NNCF post-training quantization
  (:mod:`..quantize.openvino_nncf`), calibrated on ``--calib`` images, with the same float islands and the same
  accuracy-aware fallback as the other int8 targets.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ...artifacts import TensorSpec
from ...errors import EvitError, one_line
from ...optional import require
from ...runtime.openvino_backend import RT_INFO_KEY
from ...tasks import ExportUnit
from ..profiles import ExportProfile
from ..recipes.registry import Written, artifact_stage
from .base import Artifact, Capabilities, ExportContext, Exporter, register_exporter
from .onnx import simplify, torch_to_onnx


def _specs(ports) -> list[TensorSpec]:  # noqa: ANN001 - openvino Output ports
    import numpy as np

    return [TensorSpec(p.get_any_name(), tuple(d.get_length() if d.is_static else "?" for d in p.get_partial_shape()),
                       np.dtype(p.get_element_type().to_dtype()).name) for p in ports]


def export_fp32_onnx(unit: ExportUnit, ctx: ExportContext, path: Path) -> list[str]:
    """The unit's fp32 ONNX at ``path``, made exactly as the ONNX exporter makes it; returns notes."""
    onnx = require("onnx", "the openvino exporter (it converts the ONNX)")
    settings = ctx.profile.onnx
    with ctx.step(f"export ONNX ({unit.role}, opset {ctx.opset}, {ctx.onnx_exporter})"):
        torch_to_onnx(unit, path, ctx.opset, ctx.onnx_exporter)
    notes = ctx.onnx_notes() + ([simplify(path)] if settings.simplify else [])
    onnx.checker.check_model(str(path), full_check=True)
    return notes


@register_exporter
class OpenVinoExporter(Exporter):
    format = "openvino"
    capabilities = Capabilities(precisions=("fp32", "bf16", "int8"), spatial=("static", "dynamic"))

    @classmethod
    def settings_problem(cls, profile: ExportProfile, precision: str) -> str | None:
        pinned = profile.openvino.inference_precision
        if precision not in pinned:
            return (f"openvino.inference_precision has no entry for {precision} (it pins "
                    f"{', '.join(pinned) or 'nothing'})")
        return None

    def export(self, unit: ExportUnit, ctx: ExportContext) -> Artifact:
        ov = require("openvino", "the openvino exporter")
        precision = ctx.unit_precision(unit)
        settings = ctx.profile.openvino
        hint = settings.inference_precision[precision]
        path = ctx.workdir / ctx.file_name(unit.role, ".xml")
        notes = ctx.kept_notes(unit)
        with tempfile.TemporaryDirectory(prefix="evit-openvino-") as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            notes += export_fp32_onnx(unit, ctx, onnx_path)
            with ctx.step(f"convert to OpenVINO IR ({unit.role})"):
                try:
                    model = ov.convert_model(str(onnx_path))
                except Exception as exc:  # noqa: BLE001 - a conversion failure is reported in one line
                    raise EvitError(f"OpenVINO cannot convert the {unit.role} ONNX: {one_line(exc, 200)}") from None
            notes.append(f"OpenVINO IR converted from the fp32 ONNX (opset {ctx.opset}) with "
                         f"openvino {ov.__version__.split('-')[0]}; fp32 weights")
            runtime = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": settings.performance_hint,
                       "NUM_STREAMS": str(settings.streams), "PRECISION_CHOICE": "auto" if ctx.auto_precision
                       else precision}
            for key, value in runtime.items():
                model.set_rt_info(value, [RT_INFO_KEY, key])
            ov.save_model(model, str(path), compress_to_fp16=False)
            del model
            notes += artifact_stage(self.format, Written(path, onnx=onnx_path), unit, ctx)
        notes.append(f"runtime settings pinned in the IR for evit-deploy's runtime: INFERENCE_PRECISION_HINT={hint}, "
                     f"PERFORMANCE_HINT={settings.performance_hint}, NUM_STREAMS={settings.streams or 'auto'}. "
                     "OpenVINO itself does not apply them from the IR: any other consumer (benchmark_app "
                     f"-infer_precision {hint}, OpenVINO Model Server, Triton's OpenVINO backend, compile_model) must "
                     "pass load_settings, or it may run another precision (bf16 on CPUs with AVX512_BF16/AMX)")
        load = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": settings.performance_hint}
        if settings.streams:
            load["NUM_STREAMS"] = str(settings.streams)
        written = ov.Core().read_model(str(path))
        return Artifact("openvino", unit.role, path.name, precision, "NCHW", _specs(written.inputs),
                        _specs(written.outputs), notes=notes, load_settings=load)
