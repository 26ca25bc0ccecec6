"""Full-integer int8 TFLite with ai-edge-quantizer recipes, as a :class:`~.search.LayerQuantizer`.

- Recipe: ``static_wi8_ai8`` (int8 per-channel weights, int8 asymmetric per-tensor activations) with the
  attention's core kept float — its batched matmuls, ReLU kernel, padding, slicing, reshapes and the normaliser
  clamp (``LiteMLA_main`` scopes) and every division (an int8 DIV aborts on a divisor that quantizes to its zero
  point). Its convolutions stay int8.
- Calibration: true minimum/maximum over the images (the quantizer's own ``calibrate`` keeps a moving average of
  them, which lost much of the accuracy here: mean cosine 0.87 against 0.955 on EfficientViT-B1).
- A layer is left float by a ``NO_QUANTIZE`` recipe entry matching its output tensor name exactly.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import EvitError
from ...optional import require
from ..litert_quiet import quiet_litert
from .onnx_unit import quiet_root_logger, search_and_write

if TYPE_CHECKING:
    from ...tasks import ExportUnit
    from ..exporters.base import ExportContext

SIGNATURE = "serving_default"
ATTENTION_SCOPE = "LiteMLA_main"
ATTENTION_FLOAT_OPS = ("BATCH_MATMUL", "MAXIMUM", "RELU", "PADV2", "PAD", "SLICE", "CONCATENATION", "RESHAPE",
                       "TRANSPOSE", "SUM")
LAYER_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _exact(name: str) -> str:
    return "^" + re.escape(name) + "$"


class TfliteInt8:
    """Quantizes one float ``.tflite`` to full int8; chosen layers can be left float."""

    probe = "all-but"  # each build re-runs the converter's quantization (seconds): probe by leaving one layer float
    suffix = ".tflite"
    scheme_name = "ai-edge-quantizer static_wi8_ai8, attention core float, true min/max calibration"

    def __init__(self, fp32: Path, inputs: list[np.ndarray], input_name: str, threads: int) -> None:
        self.fp32, self.inputs, self.input_name, self.threads = fp32, inputs, input_name, max(1, threads)
        self.ops = require("ai_edge_quantizer.qtyping", "int8 TFLite").TFLOperationName
        self.layers = self._layers()
        self.stats = self._calibrate()

    def _layers(self) -> list[tuple[str, str]]:
        from ...runtime.litert_backend import LiteRtBackend, op_details

        interpreter = LiteRtBackend(self.fp32, threads=1).interpreter
        names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
        return [(names[op["outputs"][0]], op["op_name"]) for op in op_details(interpreter)
                if op["op_name"] in LAYER_OPS and ATTENTION_SCOPE not in names[op["outputs"][0]].split(";")[0]]

    def _quantizer(self, float_layers: tuple[str, ...] = ()) -> Any:
        ai_edge = require("ai_edge_quantizer", "int8 TFLite")
        q = ai_edge.quantizer.Quantizer(str(self.fp32))
        q.load_quantization_recipe(ai_edge.recipe.static_wi8_ai8())
        no = ai_edge.algorithm_manager.AlgorithmName.NO_QUANTIZE
        q.update_quantization_recipe(regex=".*", operation_name=self.ops.DIV, algorithm_key=no)
        for op in ATTENTION_FLOAT_OPS:
            q.update_quantization_recipe(regex=ATTENTION_SCOPE, operation_name=self.ops(op), algorithm_key=no)
        kinds = dict(self.layers)
        for name in float_layers:
            q.update_quantization_recipe(regex=_exact(name), operation_name=self.ops(kinds[name]), algorithm_key=no)
        return q

    def _calibrate(self) -> dict[str, Any]:
        """Per-tensor min/max over every image (one calibration call per image, merged)."""
        q = self._quantizer()
        merged: dict[str, Any] = {}
        for x in self.inputs:
            stats = q.calibrate({SIGNATURE: [{self.input_name: x}]}, num_threads=self.threads)
            for tensor, qsv in stats.items():
                if tensor not in merged:
                    merged[tensor] = dict(qsv)
                elif "min" in qsv and "max" in qsv:
                    merged[tensor]["min"] = np.minimum(merged[tensor]["min"], qsv["min"])
                    merged[tensor]["max"] = np.maximum(merged[tensor]["max"], qsv["max"])
        return merged

    def candidates(self) -> list[tuple[str, str]]:
        return list(self.layers)

    def build(self, out: Path, float_layers: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> Path:
        if only is not None:  # only these int8: every other layer float (the attention core is float anyway)
            float_layers = tuple(name for name, _ in self.layers if name not in only)
        result = self._quantizer(float_layers).quantize(self.stats, enable_progress_bar=False,
                                                         enable_progress_report=False)
        result.export_model(str(out), overwrite=True)
        out.chmod(0o644)  # written through mmap with the executable bit
        return out

    def describe(self) -> str:
        return (f"full int8 ({self.scheme_name}); {len(self.layers)} conv/FC layers int8 outside the attention core; "
                f"{len(self.inputs)} calibration images")


def quantize_tflite_unit(path: Path, unit: ExportUnit, ctx: ExportContext) -> list[str]:
    """Replace the float ``.tflite`` of ``unit`` at ``path`` by its full int8 form (sensitivity / fallback when asked),
    check that every division stayed float; returns the artifact notes."""
    from ...runtime.litert_backend import LiteRtBackend
    from ..exporters.tflite import inspect_tflite

    calib = ctx.calibration()
    inputs = [x.numpy() for x in calib.inputs]
    name, threads = unit.input_names[0], ctx.profile.runtime.threads

    def run(model: Path) -> list[np.ndarray]:
        backend = LiteRtBackend(model, threads=threads)
        return [next(iter(backend.run({name: x}).values())) for x in inputs]

    with quiet_litert(), quiet_root_logger(), tempfile.TemporaryDirectory(prefix="evit-int8-") as tmp:
        fp32 = Path(tmp) / "float.tflite"
        shutil.copyfile(path, fp32)  # the quantizer's source; ``path`` (the float reference) is replaced below
        quantizer = TfliteInt8(fp32, inputs, name, threads)
        notes = search_and_write(unit, ctx, quantizer, run, path, Path(tmp), calib.source, "minmax (true min/max)",
                                 accuracy_on_data=False)
    info = inspect_tflite(path)
    if not info["float_div"]:
        raise EvitError(f"int8 quantization of the {unit.role} left a DIV op in int8; it would abort at run time "
                        "(division by a zero-point divisor)")
    notes.append(f"kept float32 inside the int8 graph: {info['ops'].get('DIV', 0)} DIV and the attention core "
                 "(LiteMLA matmuls, normaliser clamp, reshapes)")
    quant = [f"{io_name} {q['dtype']} scale {q['scale']:.6g} zero_point {q['zero_point']}"
             for io_name, q in info["quantization"].items()]
    if quant:
        notes.append("quantized I/O (real = scale * (q - zero_point)): " + "; ".join(quant)
                     + "; evit_deploy.runtime takes and returns float32 and converts")
    return notes
