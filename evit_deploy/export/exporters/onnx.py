"""ONNX exporter: torch.onnx.export → onnxsim → onnx.checker; ORT-format models converted from it."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ...artifacts import TensorSpec
from ...optional import require
from ...tasks import ExportUnit
from ..recipes.registry import Written, artifact_stage, module_stage
from .base import Artifact, Capabilities, ExportContext, Exporter, register_exporter

_DTYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 3: "int8", 2: "uint8", 9: "bool"}


def _specs(values) -> list[TensorSpec]:  # noqa: ANN001 - onnx ValueInfoProto list
    """TensorSpecs of ONNX graph inputs or outputs (symbolic dims by name, unknown ones as ``?``)."""
    specs = []
    for v in values:
        t = v.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim)
        specs.append(TensorSpec(v.name, shape, _DTYPES.get(t.elem_type, str(t.elem_type))))
    return specs


def onnx_io_specs(path: str | Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The inputs and outputs of the ONNX file ``path`` (its weights are not loaded)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return _specs(graph.input), _specs(graph.output)


def torch_to_onnx(unit: ExportUnit, path: Path, opset: int, exporter: str, module: torch.nn.Module | None = None
                  ) -> None:
    """Export ``module`` (default: the unit's) with the legacy TorchScript exporter or the dynamo exporter."""
    module = (module or unit.module).eval()
    kwargs = dict(
        input_names=list(unit.input_names), output_names=list(unit.output_names), opset_version=opset,
        dynamic_axes=unit.dynamic_axes or None,
    )
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; validation is what we trust
        if exporter == "dynamo":
            # The dynamo exporter matches dynamic_axes to inputs by position: give every input an entry.
            names = (*unit.input_names, *unit.output_names)
            kwargs["dynamic_axes"] = {n: unit.dynamic_axes.get(n, {}) for n in names} if unit.dynamic_axes else None
            torch.onnx.export(module, unit.example_inputs, str(path), dynamo=True, optimize=True, **kwargs)
        else:
            torch.onnx.export(module, unit.example_inputs, str(path), dynamo=False, do_constant_folding=True,
                              **kwargs)


PROTOBUF_LIMIT = 2**31  # bytes: a larger ONNX model keeps its weights in external data (and onnxsim cannot load it)


def gather_external_data(path: Path, written: list[Path]) -> str:
    """A graph over protobuf's 2 GB limit is written by ``torch.onnx.export`` with its weights in external files
    (``written``: one per tensor with the TorchScript exporter); gather them into one ``<graph>.data`` file beside
    the graph, which ONNX Runtime reads."""
    import onnx

    model = onnx.load(str(path))  # reads the external tensors
    data = f"{path.name}.data"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data)
    for file in written:
        if file.name != data:
            file.unlink()
    size = (path.parent / data).stat().st_size / 2**30
    return (f"weights ({size:.2f} GiB, over protobuf's 2 GB limit) in the external data file {data} beside the "
            "graph (its companion in export.json)")


def simplify(path: Path) -> str:
    import onnx
    import onnxsim

    model = onnx.load(str(path))
    simplified, ok = onnxsim.simplify(model)
    if not ok:
        return "onnxsim could not verify the simplified graph; kept the original"
    onnx.save(simplified, str(path))
    return f"onnxsim: {len(model.graph.node)} → {len(simplified.graph.node)} nodes"


@register_exporter
class OnnxExporter(Exporter):
    """``.onnx`` through torch.onnx.export → onnxsim → onnx.checker; the precision is the registered recipes'
    (:mod:`evit_deploy.export.recipes`: fp16 islands on the module before, int8 on the written graph after)."""

    format = "onnx"
    capabilities = Capabilities(precisions=("fp32", "fp16", "int8-dynamic", "int8"), spatial=("static", "dynamic"))

    def export(self, unit: ExportUnit, ctx: ExportContext) -> Artifact:
        onnx = require("onnx", "the onnx exporter")
        settings = ctx.profile.onnx
        path = ctx.workdir / ctx.file_name(unit.role, ".onnx")
        notes = ctx.kept_notes(unit) + ctx.onnx_notes()
        module, recipe_notes = module_stage(self.format, unit, ctx)
        notes += recipe_notes
        before = set(ctx.workdir.iterdir())
        with ctx.step(f"export ONNX ({unit.role}, opset {ctx.opset}, {ctx.onnx_exporter})"):
            torch_to_onnx(unit, path, ctx.opset, ctx.onnx_exporter, module)
        external = sorted(set(ctx.workdir.iterdir()) - before - {path})
        too_big = sum(f.stat().st_size for f in [path, *external]) >= PROTOBUF_LIMIT
        companions = {}
        if too_big:
            with ctx.step(f"gather external weights ({unit.role})"):
                notes.append(gather_external_data(path, external))
            companions[f"{path.name}.data"] = ""  # hash-checked with the graph whenever the export is opened
        if settings.simplify and too_big:
            notes.append("not simplified: onnxsim cannot hold a graph over 2 GB")
        elif settings.simplify:
            with ctx.step(f"simplify ({unit.role})"):
                notes.append(simplify(path))
        with ctx.step(f"check ({unit.role})"):
            onnx.checker.check_model(str(path), full_check=True)
        notes += artifact_stage(self.format, Written(path, onnx=path), unit, ctx)
        inputs, outputs = onnx_io_specs(path)
        return Artifact("onnx", unit.role, path.name, ctx.unit_precision(unit), "NCHW", inputs, outputs, notes=notes,
                        companions=companions)


def has_qdq(path: Path) -> bool:
    """Whether the ONNX graph at ``path`` is a Q/DQ graph (QuantizeLinear nodes; its weights are not read)."""
    import onnx

    return any(node.op_type == "QuantizeLinear" for node in onnx.load(str(path), load_external_data=False).graph.node)


@register_exporter
class OrtFormatExporter(Exporter):
    """ORT-format model (``.ort``) for ONNX Runtime Mobile, converted from this export's ONNX artifact."""

    format = "ort"
    capabilities = Capabilities(precisions=("fp32", "int8-dynamic", "int8"), consumes="onnx",
                                spatial=("static", "dynamic"))

    def export(self, unit: ExportUnit, ctx: ExportContext) -> Artifact:
        ort = require("onnxruntime", "the ort exporter")
        source = ctx.previous(unit.role, "onnx")
        path = ctx.workdir / ctx.file_name(unit.role, ".ort")
        # Basic optimisations keep the file portable to other CPUs and mobile builds; a Q/DQ graph (int8) needs the
        # extended level, where its QuantizeLinear/DequantizeLinear pairs fuse into QLinear* kernels (at the basic
        # level an int8 .ort ran 4.5x slower than its .onnx here). Neither adds CPU-specific layouts.
        level = "ORT_ENABLE_EXTENDED" if has_qdq(ctx.workdir / source.path) else "ORT_ENABLE_BASIC"
        with ctx.step(f"convert to ORT format ({unit.role})"):
            options = ort.SessionOptions()
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
            options.optimized_model_filepath = str(path)
            options.add_session_config_entry("session.save_model_format", "ORT")
            ort.InferenceSession(str(ctx.workdir / source.path), options, providers=["CPUExecutionProvider"])
        return Artifact("ort", unit.role, path.name, source.precision, "NCHW", source.inputs, source.outputs,
                        notes=[f"converted from {source.path} ({level})"])
