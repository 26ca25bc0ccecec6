"""The int8 step of the ONNX exporter: calibrate, (rank the layers), (fall back to a bound), write the Q/DQ ONNX.

The exported fp32 ONNX of a unit is replaced by its Q/DQ int8 form. With ``sensitivity`` a ranked per-layer
table (``sensitivity-<role>.json`` and ``.md``) is written beside it; with ``max_drop`` the most sensitive layers
are kept float until the drop is within the bound, and ``export.json`` records which layers stayed float, why,
and every step of the search.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...files import atomic_write
from ...optional import require
from ...tasks import ExportUnit
from ..exporters.base import ExportContext
from .onnx_qdq import OnnxInt8
from .search import LayerQuantizer, LayerSensitivity, Run, fallback, rank


def _session(path: Path) -> Any:
    ort = require("onnxruntime", "int8 quantization")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _outputs(path: Path, name: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
    session = _session(path)
    return [session.run(None, {name: x})[0] for x in inputs]


def agreement_drop(unit: ExportUnit, reference: list[np.ndarray], run: Any) -> Any:
    """Points of the unit's agreement metric (top-1 / pixel argmax / embedding cosine) a candidate loses against
    the float model on the calibration inputs."""
    name = unit.output_names[0]

    def measure(path: Path) -> float:
        ref = {name: np.concatenate(reference)}
        out = {name: np.concatenate(run(path))}
        return 100.0 * (1.0 - unit.agreement(ref, out))

    return measure


PROBES = {"alone": "Each layer quantized alone (everything else float)",
          "all-but": "Everything quantized but this layer (kept float)"}


def sensitivity_table(ranking: list[LayerSensitivity], role: str, probe: str) -> str:
    order = "most damaging first" if probe == "alone" else "the layer whose float copy helps most first"
    lines = [f"# int8 sensitivity of the {role}", "",
             f"{PROBES[probe]}, against the float model on the calibration images; {order}.", "",
             "| rank | layer | op | min cosine | 1 − cosine | max rel. error |", "|---:|---|---|---:|---:|---:|"]
    lines += [f"| {i} | `{s.layer}` | {s.op} | {s.cosine:.6f} | {s.loss:.2e} | {s.error:.3e} |"
              for i, s in enumerate(ranking, 1)]
    return "\n".join(lines) + "\n"


def quantize_unit(unit: ExportUnit, ctx: ExportContext, path: Path, scheme: str) -> list[str]:
    """Replace the fp32 ONNX at ``path`` by its Q/DQ int8 form in ``scheme`` (:data:`.onnx_qdq.SCHEMES`); returns
    the artifact notes."""
    method = ctx.profile.quant.calibration
    calib = ctx.calibration()
    inputs = [x.numpy() for x in calib.inputs]
    input_name = unit.input_names[0]
    with tempfile.TemporaryDirectory(prefix="evit-int8-") as tmp, quiet_root_logger():
        quantizer = OnnxInt8(path, Path(tmp), inputs, input_name, scheme, method)
        return search_and_write(unit, ctx, quantizer, lambda p: _outputs(p, input_name, inputs), path, Path(tmp),
                                calib.source, method, accuracy_on_data=True)


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization and ai-edge-quantizer advise through the root logger: keep it to errors."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def search_and_write(unit: ExportUnit, ctx: ExportContext, quantizer: LayerQuantizer, run: Run, path: Path,
                     work: Path, calib_source: str, method: str, accuracy_on_data: bool) -> list[str]:
    """:func:`search_and_build` written over ``path`` (the float model, whose outputs are the reference); records
    it in ``export.json``; returns the artifact notes."""
    record: dict[str, Any] = {"scheme": quantizer.scheme_name, "calibration": {"method": method,
                                                                              "images": calib_source}}
    built = search_and_build(unit, ctx, quantizer, run, run(path), work, record, accuracy_on_data)
    shutil.copyfile(built, path)
    record["description"] = quantizer.describe()
    ctx.quantization[unit.role] = record
    return int8_notes(record, calib_source)


def search_and_build(unit: ExportUnit, ctx: ExportContext, quantizer: LayerQuantizer, run: Run,
                     reference: list[np.ndarray], work: Path, record: dict[str, Any],
                     accuracy_on_data: bool = True) -> Path:
    """What every int8 exporter does around its quantizer: with ``--sensitivity`` (or a fallback) the per-layer
    table beside the artifacts; with ``--max-drop`` the accuracy-aware fallback; else everything quantized.
    Fills ``record`` (``export.json`` ``quantization``); returns the built model."""
    options = ctx.int8
    ranking = None
    if options.sensitivity or options.max_drop is not None:
        with ctx.step(f"int8 sensitivity of the {unit.role}: {len(quantizer.candidates())} layers"):
            ranking = rank(quantizer, run, reference, work)
        name = f"sensitivity-{unit.role}"
        atomic_write(ctx.workdir / f"{name}.json", json.dumps(
            {"probe": quantizer.probe, "layers": [{"layer": s.layer, "op": s.op, "min_cosine": s.cosine,
                                                   "max_rel_error": s.error} for s in ranking]}, indent=2) + "\n")
        atomic_write(ctx.workdir / f"{name}.md", sensitivity_table(ranking, unit.role, quantizer.probe))
        record["sensitivity"] = f"{name}.json"
    if options.max_drop is None:
        return quantizer.build(work / f"int8{quantizer.suffix}")
    on_data = accuracy_on_data and options.accuracy_drop is not None and unit.role == "model"
    what = ("measured with eval on the --eval dataset" if on_data else
            f"lost {unit.agreement_name} against the float model on the calibration images")
    measure = options.accuracy_drop if on_data else agreement_drop(unit, reference, run)
    with ctx.step(f"int8 fallback of the {unit.role} to --max-drop {options.max_drop:g} ({what})"):
        result = fallback(quantizer, ranking, measure, options.max_drop, work / f"candidate{quantizer.suffix}", what)
    by_layer = {s.layer: s for s in ranking}
    record["fallback"] = {
        "max_drop": options.max_drop, "measured": what, "drop": round(result.drop, 4), "tried": result.tried,
        "float_layers": [{"layer": name, "op": by_layer[name].op,
                          "why": f"sensitivity rank {i} (probe '{quantizer.probe}': min cosine "
                                 f"{by_layer[name].cosine:.6f})"} for i, name in enumerate(result.float_layers, 1)],
    }
    return result.path


def int8_notes(record: dict[str, Any], source: str) -> list[str]:
    """The artifact notes of an int8 unit (its ``quantization`` record)."""
    notes = [record["description"], f"calibrated on {source}"]
    if "fallback" in record:
        fb = record["fallback"]
        notes.append(f"accuracy-aware fallback: {len(fb['float_layers'])} layers kept float for a drop of "
                     f"{fb['drop']:.2f} <= {fb['max_drop']:g} points ({fb['measured']})")
    return notes
