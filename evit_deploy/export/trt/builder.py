"""Building one engine from its plan with the TensorRT Python API, step by step: network (parse the prepared
ONNX) → builder config (precision flags, fp32 constraints) → optimisation profile → timing
cache and DLA → serialize, then the engine's sidecar.

- fp32: fp32 network, TF32 off. fp16: on TensorRT >= 10.12 (``trt.strongly_typed: auto``) a strongly typed
  network from the mixed ONNX, which carries every type; before that the FP16 builder flag with
  OBEY_PRECISION_CONSTRAINTS and the fp32 islands (layers whose outputs the ONNX declares float32, plus the
  helper layers the parser adds between them) constrained to fp32 precision and output type. int8: INT8 (+ FP16
  fallback) flags on the Q/DQ ONNX (explicit quantization, no calibrator), the float islands constrained to fp32.
- One optimisation profile (batch min/opt/max), workspace limit, builder optimisation level, timing cache beside
  the engine, DLA core with GPU fallback (Jetson).

``tensorrt`` is imported when a build starts (:func:`evit_deploy.runtime.trt_common.import_tensorrt`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from ... import __version__
from ...errors import EvitError, one_line
from ...files import atomic_write, sha256_file
from ...host import gpu_facts
from ...runtime.sidecar import write_sidecar
from ...runtime.trt_common import import_tensorrt, make_logger
from ..steps import StepReporter, silent_step
from .onnx_layers import fp32_constants, select_fp32_layers, value_types
from .plan import EnginePlan, use_strongly_typed


class Network(NamedTuple):
    """A parsed network with the builder that made it and the parser that owns its weights (kept alive until
    the engine is serialized)."""

    builder: Any
    network: Any
    parser: Any


def _failed(trt: Any, logger: Any, what: str) -> EvitError:
    reason = logger.errors[-1] if logger.errors else "no reason logged"
    return EvitError(f"TensorRT {trt.__version__} could not {what} ({one_line(reason, 300)})")


def parse_network(trt: Any, logger: Any, folder: Path, plan: EnginePlan, strongly: bool,
                  step: StepReporter = silent_step) -> Network:
    """A builder and the network parsed from the plan's ONNX (strongly typed or not); checks the plan's inputs."""
    builder = trt.Builder(logger)
    if builder is None:
        raise _failed(trt, logger, "create a builder (is a CUDA GPU available?)")
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
            raise EvitError(f"TensorRT {trt.__version__} could not parse {plan.onnx}: {one_line(errors, 300)}")
    network_inputs = {network.get_input(i).name for i in range(network.num_inputs)}
    unknown = sorted(set(plan.shapes) - network_inputs)
    if unknown:
        raise EvitError(f"{plan.onnx} has no input {unknown[0]} (inputs: {', '.join(sorted(network_inputs))})")
    return Network(builder, network, parser)


def constrain_fp32(trt: Any, network: Any, plan: EnginePlan, onnx_path: Path) -> list[str]:
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


def make_config(trt: Any, net: Network, folder: Path, plan: EnginePlan, strongly: bool) -> tuple[Any, list[str]]:
    """The builder config: workspace, optimisation level and precision flags; without a strongly typed network,
    fp16/int8 constrain the plan's fp32 layers. Returns the config and the constrained layer names."""
    config = net.builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mb << 20)
    config.builder_optimization_level = plan.builder_optimization_level
    marked: list[str] = []
    if plan.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: TF32 matmuls/convs would miss 1e-4
    if not strongly and plan.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        if plan.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
        marked = constrain_fp32(trt, net.network, plan, folder / plan.onnx)
        if marked:
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    return config, marked


def add_profile(builder: Any, config: Any, plan: EnginePlan) -> None:
    """The optimisation profile of the plan's dynamic inputs (none for static shapes)."""
    if plan.shapes:
        profile = builder.create_optimization_profile()
        for name, r in plan.shapes.items():
            profile.set_shape(name, r["min"], r["opt"], r["max"])
        config.add_optimization_profile(profile)


def use_timing_cache(config: Any, cache_path: Path) -> None:
    """Start from the timing cache at ``cache_path`` (a cache from another GPU or version: start afresh)."""
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def use_dla(trt: Any, builder: Any, config: Any, dla_core: int) -> None:
    """Build for DLA core ``dla_core`` with GPU fallback."""
    if builder.num_DLA_cores <= dla_core:
        raise EvitError(f"trt.dla_core is {dla_core} but this device has {builder.num_DLA_cores} DLA cores")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = dla_core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def typing_note(plan: EnginePlan, strongly: bool, marked: list[str]) -> str:
    """How the engine's precisions were chosen, in words."""
    if strongly:
        return "strongly typed network: precisions as the ONNX declares them"
    if marked:
        return f"FP16{' + INT8' if plan.precision == 'int8' else ''} flags, {len(marked)} layers obey fp32"
    return {"fp32": "fp32, TF32 off", "fp16": "FP16 flag", "int8": "INT8 + FP16 flags"}[plan.precision]


def build_engine(folder: Path, plan: EnginePlan, timing_cache: Path | None = None,
                 step: StepReporter = silent_step) -> dict[str, Any]:
    """Build ``plan`` with the TensorRT Python API into ``folder``; writes the engine, its sidecar JSON and the
    timing cache, and returns the sidecar."""
    trt = import_tensorrt(f"building {plan.engine}")
    folder = Path(folder)
    strongly = use_strongly_typed(plan.strongly_typed, plan.precision, trt.__version__)
    logger = make_logger(trt)
    net = parse_network(trt, logger, folder, plan, strongly, step)
    config, marked = make_config(trt, net, folder, plan, strongly)
    add_profile(net.builder, config, plan)
    cache_path = timing_cache or (folder / plan.timing_cache if plan.timing_cache else None)
    if cache_path is not None:
        use_timing_cache(config, cache_path)
    if plan.dla_core is not None:
        use_dla(trt, net.builder, config, plan.dla_core)

    started = time.perf_counter()
    with step(f"build {plan.engine} ({plan.precision}{', strongly typed' if strongly else ''})"):
        blob = net.builder.build_serialized_network(net.network, config)
    if blob is None:
        raise _failed(trt, logger, f"build {plan.engine}")
    seconds = time.perf_counter() - started
    atomic_write(folder / plan.engine, bytes(memoryview(blob)))
    if cache_path is not None:
        atomic_write(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    from ..exporters.onnx import onnx_io_specs  # here: the exporters package imports this module

    inputs, outputs = onnx_io_specs(folder / plan.onnx)
    sidecar = {
        "engine": plan.engine, "role": plan.role, "onnx": plan.onnx, "onnx_sha256": sha256_file(folder / plan.onnx),
        "precision": plan.precision, "strongly_typed": strongly, "typing": typing_note(plan, strongly, marked),
        "fp32_layers": len(marked), **gpu_facts(trt=trt), "dla_core": plan.dla_core, "cuda_graph": plan.cuda_graph,
        "shapes": plan.shapes, "static_shapes": plan.static_shapes, "inputs": [s.to_dict() for s in inputs],
        "outputs": [s.to_dict() for s in outputs], "workspace_mb": plan.workspace_mb,
        "builder_optimization_level": plan.builder_optimization_level,
        "timing_cache": str(cache_path.name) if cache_path else None,
        "build_seconds": round(seconds, 1), "built": datetime.now(UTC).isoformat(timespec="seconds"),
        "evit_deploy": __version__,
    }
    write_sidecar(folder / plan.engine, sidecar)
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
    if sidecar["precision"] == "int8":
        notes.append("int8 from the Q/DQ ONNX (explicit quantization: scales calibrated at export)")
    return notes
