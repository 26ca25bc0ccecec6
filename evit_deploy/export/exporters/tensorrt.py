"""TensorRT exporters: ``trt-engine`` (cloud-gpu-trt: build the engine here) and ``trt-bundle``
(jetson-orin-trt: a build bundle for the device), both from the prepared ONNX of the ``onnx`` exporter.

Every export writes ``trt_build.json`` (the plans), so ``evit-deploy build-engine`` can build or rebuild the
engines later on a TensorRT host. int8 engines are built from the Q/DQ ONNX the ``onnx`` exporter writes (explicit
quantization: the scales are calibrated at export, TensorRT needs no calibrator). The plans, bundle and
build live in :mod:`evit_deploy.export.trt`.
"""

from __future__ import annotations

from ...errors import EvitError
from ...runtime.trt_common import tensorrt_problem
from ...tasks import ExportUnit
from ..profiles import ExportProfile
from ..trt.builder import build_engine, engine_notes
from ..trt.bundle import BUILD_SCRIPT, plan_notes, write_bundle
from ..trt.plan import EnginePlan, batch_range, make_plan, read_plans, trt_settings_problem, write_plans
from .base import Artifact, Capabilities, ExportContext, Exporter, register_exporter


def _plan_unit(ctx: ExportContext, unit: ExportUnit) -> tuple[EnginePlan, Artifact]:
    """The unit's plan from its prepared ONNX; records it in trt_build.json."""
    role = unit.role
    source = ctx.previous(role, "onnx")
    if source is None:
        raise EvitError(f"TensorRT engines are built from the prepared ONNX: list 'onnx' before the TensorRT format "
                        f"in the formats of profile {ctx.profile.name}")
    batch = batch_range(ctx.profile.batch, ctx.spec.batch, ctx.spec.dynamic_batch)
    plan = make_plan(ctx.workdir / source.path, role, ctx.unit_precision(unit), [s.to_dict() for s in source.inputs],
                     ctx.profile.trt, batch, ctx.file_name(role, ".engine"))
    plans = read_plans(ctx.workdir)
    plans[role] = plan
    write_plans(ctx.workdir, plans, {"model": ctx.model_name, "target": ctx.profile.name,
                                     "input_size": list(ctx.spec.input_size), "batch": list(batch)})
    return plan, source


class _TrtExporter(Exporter):
    """What both TensorRT exporters check before any work: the profile's ``trt`` settings for the precision."""

    @classmethod
    def settings_problem(cls, profile: ExportProfile, precision: str) -> str | None:
        return trt_settings_problem(profile.trt, precision, profile.quant.scheme)


@register_exporter
class TrtEngineExporter(_TrtExporter):
    """``<role>.engine`` built here with the TensorRT Python API; skipped (with the reason) without TensorRT."""

    format = "trt-engine"
    capabilities = Capabilities(precisions=("fp32", "fp16", "int8"), consumes="onnx")

    def export(self, unit: ExportUnit, ctx: ExportContext) -> Artifact | None:
        plan, source = _plan_unit(ctx, unit)
        problem = tensorrt_problem()
        if problem:
            ctx.skipped.append(f"trt-engine skipped for {unit.role}: {problem}; the validated prepared ONNX "
                               f"{source.path} builds on a TensorRT host with `evit-deploy build-engine` or trtexec")
            return None
        sidecar = build_engine(ctx.workdir, plan, step=ctx.step)
        return Artifact("trt-engine", unit.role, plan.engine, plan.precision, "NCHW", source.inputs, source.outputs,
                        notes=engine_notes(sidecar))


@register_exporter
class TrtBundleExporter(_TrtExporter):
    """A build bundle for engines built on the device (Jetson): build_engine.sh, README.md and trt_build.json
    beside the prepared ONNX (Q/DQ for int8). The artifact (``build_engine.sh``) is not runnable."""

    format = "trt-bundle"
    capabilities = Capabilities(precisions=("fp32", "fp16", "int8"), consumes="onnx")

    def export(self, unit: ExportUnit, ctx: ExportContext) -> Artifact:
        plan, source = _plan_unit(ctx, unit)
        with ctx.step(f"write the TensorRT build bundle ({unit.role})"):
            write_bundle(ctx.workdir, read_plans(ctx.workdir), ctx.model_name, ctx.profile.name)
        notes = [f"build bundle: engines are built on the device with `bash {BUILD_SCRIPT}` (trtexec) or "
                 "`evit-deploy build-engine <folder>` (TensorRT Python API)", *plan_notes(plan)]
        return Artifact("trt-bundle", unit.role, BUILD_SCRIPT, plan.precision, "NCHW", source.inputs, source.outputs,
                        notes=notes)
