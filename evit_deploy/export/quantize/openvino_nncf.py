"""int8 OpenVINO IR: NNCF post-training quantization (``nncf.quantize``), calibrated on ``--calib`` images.

- The same float islands as every int8 target (:func:`~evit_deploy.export.trt.onnx_layers.int8_sensitive_layers`
  on the unit's ONNX: the attention's matmuls/normaliser/division, norms, resizes), given to NNCF as its
  ``ignored_scope`` by node name (OpenVINO keeps the ONNX node names).
- NNCF's ``MIXED`` preset: uint8 asymmetric activations (HardSwish outputs reach below zero), int8 symmetric
  per-channel weights. Activation ranges are the true min/max over the calibration images (``minmax``) or a
  quantile (``percentile``); NNCF's default (the mean of per-image ranges) clipped B1's activations: min cosine
  0.56 against 0.93 with min/max on the same 16 images.
- The accuracy-aware fallback is this project's search (:mod:`.search`: per-layer sensitivity, then the most
  sensitive layers float until ``--max-drop`` holds), the same for ONNX, TFLite and OpenVINO, recorded the same way
  in ``export.json``. Calibration runs once: a layer is left float by feeding it the float tensors its
  FakeQuantize nodes quantized (what ``nncf.quantize_with_accuracy_control`` reverts too), so ranking B1's 74
  layers costs a compile and a few inferences each, not 74 calibrations.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import EvitError
from ...optional import require
from ...runtime.openvino_backend import RT_INFO_KEY, ir_settings
from ...tasks import ExportUnit
from ..exporters.base import ExportContext
from ..trt.onnx_layers import int8_sensitive_layers
from .onnx_unit import int8_notes, search_and_build

HEAVY_TYPES = ("Convolution", "GroupConvolution", "MatMul")  # the layers a ranking and a fallback choose among
RANGES = {"minmax": "MINMAX", "percentile": "QUANTILE"}  # QuantSettings.calibration → NNCF range estimator


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """NNCF's INFO lines and progress bars off."""
    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        nncf_logger.setLevel(level)


def layer_name(friendly: str) -> str:
    """The ONNX node name of an OpenVINO op (a Conv with bias becomes ``<name>/WithoutBiases`` + ``<name>``)."""
    return friendly.removesuffix("/WithoutBiases")


class OpenVinoInt8:
    """One NNCF calibration of an OpenVINO model; int8 models with chosen layers left float (``float_layers``) or
    only chosen layers int8 (``only``), written as IR."""

    probe = "alone"  # a layer's sensitivity: only that layer int8
    suffix = ".xml"
    scheme_name = "nncf-mixed"

    def __init__(self, model: Any, onnx_path: Path, inputs: list[np.ndarray], method: str) -> None:
        if method not in RANGES:
            raise EvitError(f"OpenVINO int8 (NNCF) calibrates with {' or '.join(RANGES)}, not '{method}' "
                            "(set quant.calibration in the profile)")
        nncf = require("nncf", "OpenVINO int8 quantization")
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        names = {op.get_friendly_name() for op in model.get_ops()}
        self.islands = [layer.node for layer in int8_sensitive_layers(str(onnx_path)) if layer.node in names]
        self.method, self.images = method, len(inputs)
        with quiet():
            self.quantized = nncf.quantize(
                model, nncf.Dataset(inputs), subset_size=len(inputs), preset=nncf.QuantizationPreset.MIXED,
                ignored_scope=nncf.IgnoredScope(names=self.islands, validate=False),
                advanced_parameters=AdvancedQuantizationParameters(
                    activations_range_estimator_params=getattr(RangeEstimatorParametersSet, RANGES[method])))
        self.layers = [(layer_name(op.get_friendly_name()), op.get_type_name())
                       for op in self.quantized.get_ordered_ops()
                       if op.get_type_name() in HEAVY_TYPES and self._quantized_inputs(op)]
        self.fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in self.quantized.get_ops())

    @staticmethod
    def _quantized_inputs(op: Any) -> list[Any]:
        return [i for i in op.inputs() if i.get_source_output().get_node().get_type_name() == "FakeQuantize"]

    def candidates(self) -> list[tuple[str, str]]:
        return list(self.layers)

    def build(self, out: Path, float_layers: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> Path:
        """Write the IR to ``out`` (``.xml`` + ``.bin``): every layer int8 but ``float_layers``, or only ``only``
        (then every other FakeQuantize, element-wise ones included, is bypassed)."""
        ov = require("openvino", "OpenVINO int8 quantization")
        model = self.quantized.clone()
        chosen = set(only if only is not None else float_layers)
        for op in model.get_ops():
            if op.get_type_name() == "FakeQuantize":
                continue
            is_chosen = op.get_type_name() in HEAVY_TYPES and layer_name(op.get_friendly_name()) in chosen
            if is_chosen == (only is None):  # float: this chosen layer; only: every op but the chosen ones
                for port in self._quantized_inputs(op):
                    port.replace_source_output(port.get_source_output().get_node().input_value(0))
        path = out.with_suffix(".xml")
        ov.save_model(model, str(path), compress_to_fp16=False)
        return path

    def describe(self) -> str:
        from ...host import library_version

        return (f"NNCF {library_version('nncf')} post-training quantization, MIXED preset: uint8 asymmetric "
                f"activations, int8 symmetric per-channel weights ({self.fake_quantize} FakeQuantize nodes); "
                f"{self.method} activation ranges on {self.images} images; float islands: {len(self.islands)} nodes "
                "(the attention's matmuls/normaliser/division, norms, resizes)")


def _runner(inputs: list[np.ndarray], hint: str) -> Any:
    ov = require("openvino", "OpenVINO int8 quantization")
    core = ov.Core()

    def run(model: Any) -> list[np.ndarray]:
        compiled = core.compile_model(model if not isinstance(model, Path) else str(model), "CPU",
                                      {"INFERENCE_PRECISION_HINT": hint})
        request = compiled.create_infer_request()
        return [request.infer({0: x})[0].copy() for x in inputs]

    return run


def quantize_openvino_ir(path: Path, onnx_path: Path, unit: ExportUnit, ctx: ExportContext) -> list[str]:
    """Replace the fp32 IR of ``unit`` at ``path`` (``.xml`` + ``.bin``, converted from ``onnx_path``) by its int8
    form, with the runtime settings its ``rt_info`` pins; returns the artifact notes and records ``export.json``
    ``quantization`` for the unit."""
    ov = require("openvino", "OpenVINO int8 quantization")
    method = ctx.profile.quant.calibration
    calib = ctx.calibration()
    inputs = [np.ascontiguousarray(x.numpy(), dtype=np.float32) for x in calib.inputs]
    run = _runner(inputs, ctx.profile.openvino.inference_precision.get("int8", "f32"))
    core = ov.Core()
    model = core.read_model(str(path))
    settings = ir_settings(model)
    quantizer = OpenVinoInt8(model, onnx_path, inputs, method)
    record: dict[str, Any] = {"scheme": quantizer.scheme_name, "calibration": {"method": method,
                                                                              "images": calib.source}}
    with tempfile.TemporaryDirectory(prefix="evit-int8-") as tmp:
        built = search_and_build(unit, ctx, quantizer, run, run(model), Path(tmp), record)
        quantized = core.read_model(str(built))
        for key, value in settings.items():
            quantized.set_rt_info(value, [RT_INFO_KEY, key])
        staged = Path(tmp) / "final.xml"
        ov.save_model(quantized, str(staged), compress_to_fp16=False)
        del model, quantized
        os.replace(staged.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(staged, path)
    record["description"] = quantizer.describe()
    ctx.quantization[unit.role] = record
    return int8_notes(record, calib.source)
