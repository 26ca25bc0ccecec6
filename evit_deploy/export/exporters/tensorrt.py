"""TensorRT exporters: ``trt-engine`` (cloud-gpu-trt: build the engine here) and ``trt-bundle``
(jetson-orin-trt: a build bundle for the device), both from the prepared ONNX of the ``onnx`` exporter.

- fp32: fp32 network, TF32 off. fp16: on TensorRT >= 10.12 (``trt.strongly_typed: auto``) a strongly typed
  network from the mixed ONNX, which carries every type; before that the FP16 builder flag with
  OBEY_PRECISION_CONSTRAINTS and the fp32 islands (layers whose outputs the ONNX declares float32, plus the
  helper layers the parser adds between them) constrained to fp32 precision and output type. int8: INT8 (+ FP16
  fallback) flags, an IInt8EntropyCalibrator2 fed the pre-processed ``--calib`` images, the attention/norm/resize
  layers constrained to fp32; TensorRT 11 has no calibrator, so int8 needs TensorRT 10.x.
- One optimisation profile (batch min/opt/max from the profile and ``--batch``), workspace limit, builder
  optimisation level, timing cache beside the engine, DLA core with GPU fallback (Jetson).
- Every export writes ``trt_build.json`` (the plans) and, for int8, ``calibration/<role>.npy``, so
  ``evit-deploy build-engine`` can build or rebuild the engines later on a TensorRT host.

``tensorrt`` is imported inside functions only. Verified on this project's CI host (no TensorRT, no GPU):
the skip path, the plans, the bundle and the calibration inputs. The code after ``import tensorrt`` follows
TensorRT's public Python API (10.3 and 10.12+/11.x) but has not been run here.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ... import __version__
from ...artifacts import Manifest, TensorSpec, read_manifest, write_manifest
from ...errors import EvitError
from ...files import atomic_write
from ..tasks import ExportUnit
from ..trt_plan import (
    BUILD_SCRIPT,
    EnginePlan,
    batch_range,
    describe,
    fp32_constants,
    gpu_facts,
    make_plan,
    read_plans,
    select_fp32_layers,
    sidecar_path,
    use_strongly_typed,
    value_types,
    write_bundle,
    write_calibration,
    write_plans,
)
from .base import (
    Artifact,
    Capabilities,
    ExportContext,
    Exporter,
    StepReporter,
    register_exporter,
    sha256_file,
    silent_step,
)


def tensorrt_problem() -> str | None:
    """Why this host cannot build and run TensorRT engines here (None = it can)."""
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or a broken install
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        return f"TensorRT is not installed on this host (import tensorrt failed: {detail})"
    try:
        import torch

        if not torch.cuda.is_available():
            return (f"TensorRT {trt.__version__} is installed but PyTorch sees no CUDA GPU (the engine is validated "
                    "through torch CUDA buffers)")
    except Exception as exc:  # noqa: BLE001 - a broken CUDA setup
        return f"no usable CUDA GPU ({type(exc).__name__}: {exc})"
    return None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text[:limit] + ("..." if len(text) > limit else "")


def _onnx_specs(path: Path) -> tuple[list[dict], list[dict]]:
    import onnx

    from .onnx import _specs

    graph = onnx.load(str(path), load_external_data=False).graph
    return [s.to_dict() for s in _specs(graph.input)], [s.to_dict() for s in _specs(graph.output)]


def _calibrator(trt: Any, data: np.ndarray, batch: int, cache: Path) -> Any:
    """An IInt8EntropyCalibrator2 feeding ``data`` ([N,...] float32) ``batch`` rows at a time from a CUDA buffer."""
    import torch

    if len(data) < batch:
        data = np.concatenate([data] * (batch // len(data) + 1))
    count = len(data) // batch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.buffer = torch.empty((batch, *data.shape[1:]), dtype=torch.float32, device="cuda")

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= count:
                return None
            rows = np.ascontiguousarray(data[self.index * batch : (self.index + 1) * batch], dtype=np.float32)
            self.buffer.copy_(torch.from_numpy(rows))
            torch.cuda.synchronize()
            self.index += 1
            return [int(self.buffer.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, blob: Any) -> None:
            atomic_write(cache, bytes(memoryview(blob)))

    return EntropyCalibrator()


def _constrain_fp32(trt: Any, network: Any, plan: EnginePlan, onnx_path: Path) -> list[str]:
    """Constrain the plan's fp32 layers of the parsed ``network`` (precision and float output types)."""
    floats = {trt.float32, trt.float16} | ({trt.bfloat16} if hasattr(trt, "bfloat16") else set())
    layers, by_name = [], {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        ins = [layer.get_input(j) for j in range(layer.num_inputs)]
        outs = [layer.get_output(j) for j in range(layer.num_outputs)]
        layers.append((layer.name, [t.name for t in ins if t is not None and t.dtype in floats],
                       [t.name for t in outs if t is not None and t.dtype in floats]))
        by_name[layer.name] = layer
    marked = select_fp32_layers(layers, plan.fp32_tensors, set(value_types(onnx_path)), fp32_constants(onnx_path))
    for name in marked:
        layer = by_name[name]
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            if layer.get_output(j).dtype in floats:
                layer.set_output_type(j, trt.float32)
    return marked


def build_engine(folder: Path, plan: EnginePlan, timing_cache: Path | None = None,
                 step: StepReporter = silent_step) -> dict[str, Any]:
    """Build ``plan`` with the TensorRT Python API into ``folder``; writes the engine, its sidecar JSON and the
    timing cache, and returns the sidecar. Not run on this project's CI host (no TensorRT there)."""
    from ...runtime.tensorrt_backend import import_tensorrt, make_logger

    trt = import_tensorrt(f"building {plan.engine}")
    folder = Path(folder)
    strongly = use_strongly_typed(plan.strongly_typed, plan.precision, trt.__version__)
    logger = make_logger(trt)

    def failed(what: str) -> EvitError:
        reason = logger.errors[-1] if logger.errors else "no reason logged"
        return EvitError(f"TensorRT {trt.__version__} could not {what} ({_one_line(reason)})")

    builder = trt.Builder(logger)
    if builder is None:
        raise failed("create a builder (is a CUDA GPU available?)")
    flags = 0
    if strongly:
        flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if flag is None:
            raise EvitError(f"TensorRT {trt.__version__} has no strongly typed networks: set trt.strongly_typed: auto")
        flags |= 1 << int(flag)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with step(f"parse {plan.onnx} (TensorRT {trt.__version__})"):
        if not parser.parse_from_file(str(folder / plan.onnx)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EvitError(f"TensorRT {trt.__version__} could not parse {plan.onnx}: {_one_line(errors)}")
    network_inputs = {network.get_input(i).name for i in range(network.num_inputs)}
    unknown = sorted(set(plan.shapes) - network_inputs)
    if unknown:
        raise EvitError(f"{plan.onnx} has no input {unknown[0]} (inputs: {', '.join(sorted(network_inputs))})")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mb << 20)
    config.builder_optimization_level = plan.builder_optimization_level
    marked: list[str] = []
    if plan.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: TF32 matmuls/convs would miss 1e-4
    if not strongly and plan.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        if plan.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
        marked = _constrain_fp32(trt, network, plan, folder / plan.onnx)
        if marked:
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)

    if plan.shapes:
        profile = builder.create_optimization_profile()
        for name, r in plan.shapes.items():
            profile.set_shape(name, r["min"], r["opt"], r["max"])
        config.add_optimization_profile(profile)
    calibration = ""
    if plan.precision == "int8":
        data = np.load(folder / plan.calibration["inputs"], mmap_mode="r")
        (name, shape), = plan.static_shapes.items()
        batch = plan.shapes[name]["min"][0] if name in plan.shapes else shape[0]
        config.int8_calibrator = _calibrator(trt, data, batch, folder / plan.calibration["cache"])
        if plan.shapes:
            calib_profile = builder.create_optimization_profile()
            calib_shape = [batch, *data.shape[1:]]
            calib_profile.set_shape(name, calib_shape, calib_shape, calib_shape)
            config.set_calibration_profile(calib_profile)
        calibration = plan.calibration.get("source", "")

    cache_path = timing_cache or (folder / plan.timing_cache if plan.timing_cache else None)
    if cache_path is not None:
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
        if not config.set_timing_cache(cache, ignore_mismatch=False):  # from another GPU/version: start afresh
            config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    if plan.dla_core is not None:
        if builder.num_DLA_cores <= plan.dla_core:
            raise EvitError(f"trt.dla_core is {plan.dla_core} but this device has {builder.num_DLA_cores} DLA cores")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    started = time.perf_counter()
    with step(f"build {plan.engine} ({plan.precision}{', strongly typed' if strongly else ''})"):
        blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise failed(f"build {plan.engine}")
    seconds = time.perf_counter() - started
    atomic_write(folder / plan.engine, bytes(memoryview(blob)))
    if cache_path is not None:
        atomic_write(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    inputs, outputs = _onnx_specs(folder / plan.onnx)
    if strongly:
        typing = "strongly typed network: precisions as the ONNX declares them"
    elif marked:
        typing = f"FP16{' + INT8' if plan.precision == 'int8' else ''} flags, {len(marked)} layers obey fp32"
    else:
        typing = {"fp32": "fp32, TF32 off", "fp16": "FP16 flag", "int8": "INT8 + FP16 flags"}[plan.precision]
    sidecar = {
        "engine": plan.engine, "role": plan.role, "onnx": plan.onnx, "onnx_sha256": sha256_file(folder / plan.onnx),
        "precision": plan.precision, "strongly_typed": strongly, "typing": typing, "fp32_layers": len(marked),
        "tensorrt_version": trt.__version__, **gpu_facts(), "dla_core": plan.dla_core, "cuda_graph": plan.cuda_graph,
        "shapes": plan.shapes, "static_shapes": plan.static_shapes, "inputs": inputs, "outputs": outputs,
        "workspace_mb": plan.workspace_mb, "builder_optimization_level": plan.builder_optimization_level,
        "timing_cache": str(cache_path.name) if cache_path else None, "calibration": calibration or None,
        "build_seconds": round(seconds, 1), "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "evit_deploy": __version__,
    }
    atomic_write(sidecar_path(folder / plan.engine), json.dumps(sidecar, indent=2) + "\n")
    return sidecar


def engine_notes(sidecar: dict[str, Any]) -> list[str]:
    """The artifact notes of a built engine (what export.json records)."""
    notes = [
        f"TensorRT {sidecar['tensorrt_version']} engine for {sidecar.get('gpu_name') or 'an unknown GPU'} (compute "
        f"capability {sidecar.get('compute_capability') or '?'}), built in {sidecar['build_seconds']}s",
        f"precision {sidecar['precision']}: {sidecar['typing']}; strongly_typed={sidecar['strongly_typed']}",
        f"sidecar {sidecar['engine']}.json (the runtime refuses the engine on another GPU or TensorRT version)",
    ]
    if sidecar.get("shapes"):
        notes.append("optimisation profile: " + "; ".join(
            f"{n} min {r['min']} opt {r['opt']} max {r['max']}" for n, r in sidecar["shapes"].items()))
    if sidecar.get("timing_cache"):
        notes.append(f"timing cache {sidecar['timing_cache']}")
    if sidecar.get("dla_core") is not None:
        notes.append(f"DLA core {sidecar['dla_core']} with GPU fallback")
    if sidecar.get("calibration"):
        notes.append(f"int8 calibration (IInt8EntropyCalibrator2): {sidecar['calibration']}")
    return notes


def _plan_unit(ctx: ExportContext, unit: ExportUnit) -> tuple[EnginePlan, Artifact]:
    """The unit's plan from its prepared ONNX; records it in trt_build.json (+ calibration inputs for int8)."""
    role = unit.role
    source = ctx.previous(role, "onnx")
    if source is None:
        raise EvitError(f"TensorRT engines are built from the prepared ONNX: list 'onnx' before the TensorRT format "
                        f"in the formats of profile {ctx.profile.name}")
    batch = batch_range(ctx.profile.batch, ctx.spec.batch, ctx.spec.dynamic_batch)
    plan = make_plan(ctx.workdir / source.path, role, ctx.unit_precision(unit), [s.to_dict() for s in source.inputs],
                     ctx.profile.trt, batch, ctx.file_name(role, ".engine"))
    if plan.precision == "int8":
        from ..calibration import calibration_set

        with ctx.step(f"calibration inputs for the {role} ({ctx.calib or 'bundled sample photos'})"):
            calib = calibration_set(ctx.calib, ctx.card, ctx.spec.input_size)
            write_calibration(ctx.workdir, plan, [x.numpy() for x in calib.inputs], calib.source)
    plans = read_plans(ctx.workdir)
    plans[role] = plan
    write_plans(ctx.workdir, plans, {"model": ctx.model_name, "target": ctx.profile.name,
                                     "input_size": list(ctx.spec.input_size), "batch": list(batch)})
    return plan, source


@register_exporter
class TrtEngineExporter(Exporter):
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
class TrtBundleExporter(Exporter):
    """A build bundle for engines built on the device (Jetson): build_engine.sh, README.md, trt_build.json and
    the int8 calibration inputs, beside the prepared ONNX. The artifact (``build_engine.sh``) is not runnable."""

    format = "trt-bundle"
    capabilities = Capabilities(precisions=("fp32", "fp16", "int8"), consumes="onnx")

    def export(self, unit: ExportUnit, ctx: ExportContext) -> Artifact:
        plan, source = _plan_unit(ctx, unit)
        with ctx.step(f"write the TensorRT build bundle ({unit.role})"):
            write_bundle(ctx.workdir, read_plans(ctx.workdir), ctx.model_name, ctx.profile.name)
        notes = [f"build bundle: engines are built on the device with `bash {BUILD_SCRIPT}` (trtexec) or "
                 f"`evit-deploy build-engine <folder>` (TensorRT Python API)", f"{plan.engine}: {describe(plan)}"]
        if plan.calibration:
            notes.append(f"int8 calibration inputs {plan.calibration['inputs']} ({plan.calibration['source']}); "
                         "TensorRT computes the calibration cache from them on the device")
        return Artifact("trt-bundle", unit.role, BUILD_SCRIPT, plan.precision, "NCHW", source.inputs, source.outputs,
                        notes=notes)


# ------------------------------------------------------------------------------------------- build-engine


def folder_plans(folder: Path, manifest: Manifest) -> dict[str, EnginePlan]:
    """Build plans of an export folder: its trt_build.json, else one per ONNX artifact of the manifest."""
    plans = read_plans(folder)
    if plans:
        return plans
    from ..profiles import profile_from_dict

    profile = profile_from_dict(manifest.profile)
    batch = batch_range(profile.batch, manifest.batch.size, manifest.batch.dynamic)
    for entry in manifest.artifacts:
        if entry.format != "onnx":
            continue
        if entry.precision not in ("fp32", "fp16"):
            raise EvitError(f"{entry.path} is {entry.precision}: TensorRT builds engines from fp32 or mixed "
                            "fp16 ONNX (export with a TensorRT target for int8)")
        plans[entry.role] = make_plan(folder / entry.path, entry.role, entry.precision,
                                      [s.to_dict() for s in entry.inputs], profile.trt, batch)
    if not plans:
        raise EvitError(f"{folder} has no prepared ONNX to build engines from")
    return plans


def build_folder(folder: str | Path, role: str | None = None, timing_cache: str | Path | None = None,
                 step: StepReporter = silent_step) -> list[dict[str, Any]]:
    """Build the engines of an export folder / Jetson bundle here; adds them to export.json (atomically).

    Returns the sidecars. Raises a one-line EvitError without TensorRT. Not run on this project's CI host.
    """
    from ...runtime.tensorrt_backend import import_tensorrt

    folder = Path(folder)
    manifest = read_manifest(folder, verify=True)  # the prepared ONNX must be the one the export validated
    plans = folder_plans(folder, manifest)
    if role is not None:
        if role not in plans:
            raise EvitError(f"{folder} has no engine plan for role '{role}' (roles: {', '.join(plans)})")
        plans = {role: plans[role]}
    import_tensorrt("evit-deploy build-engine")
    sidecars = []
    for plan in plans.values():
        sidecar = build_engine(folder, plan, Path(timing_cache) if timing_cache else None, step)
        sidecars.append(sidecar)
        spec = {s["name"]: TensorSpec(s["name"], tuple(s["shape"]), s["dtype"]) for s in sidecar["inputs"]}
        outs = [TensorSpec(s["name"], tuple(s["shape"]), s["dtype"]) for s in sidecar["outputs"]]
        artifact = Artifact("trt-engine", plan.role, plan.engine, plan.precision, "NCHW", list(spec.values()), outs,
                            sha256=sha256_file(folder / plan.engine),
                            notes=[*engine_notes(sidecar), "built by evit-deploy build-engine; not yet validated "
                                   "against PyTorch: run evit-deploy validate"])
        manifest.artifacts = [a for a in manifest.artifacts if not (a.format == "trt-engine" and a.role == plan.role)]
        manifest.artifacts.append(artifact)
        new_files = [plan.engine, sidecar_path(Path(plan.engine)).as_posix()]
        if sidecar.get("timing_cache") and timing_cache is None:
            new_files.append(sidecar["timing_cache"])
        if plan.calibration and (folder / plan.calibration["cache"]).is_file():
            new_files.append(plan.calibration["cache"])
        manifest.files = sorted(set(manifest.files) | set(new_files))
        write_manifest(folder, manifest)
    return sidecars
