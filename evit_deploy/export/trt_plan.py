"""TensorRT engine build plans, without TensorRT: everything about an engine build that can be computed (and
tested) on any host.

- which layers stay fp32: in a mixed fp16 ONNX (``precision.mixed_fp16``) the nodes whose outputs the graph
  declares float32 (the fp32 islands, found from the ONNX value types); in the fp32 graph an int8 build
  calibrates, the precision-sensitive nodes (attention matmuls/reductions/division, norms, resizes);
- optimisation-profile shapes (min/opt/max) from the export's batch settings;
- ``trtexec`` command lines, the Jetson build bundle (``build_engine.sh``, ``README.md``, ``trt_build.json``,
  ``calibration/<role>.npy``) and the engine sidecar (``<engine>.json``) compatibility check.

TensorRT names a parsed layer after its ONNX node (helper layers that one node expands into get suffixed
names) and its output tensors after the node's outputs; the Python API path (``exporters/tensorrt.py``) marks
layers by output tensor name, the ``trtexec`` path by node name.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import EvitError
from ..files import atomic_write

BUILD_PLAN = "trt_build.json"
BUILD_SCRIPT = "build_engine.sh"
BUNDLE_README = "README.md"
TIMING_CACHE = "timing.cache"
CALIBRATION_DIR = "calibration"
JETPACK = "JetPack 6.1/6.2 (L4T r36.4, TensorRT 10.3, CUDA 12.6)"
ENGINE_PRECISIONS = ("fp32", "fp16", "int8")
STRONGLY_TYPED_SETTINGS = ("auto", "always", "never")
STRONGLY_TYPED_SINCE = (10, 12)  # weakly typed networks deprecated from here; TensorRT 11 drops them
# Ranges of the symbolic dimensions other than the batch (the SAM prompt decoder's prompts and points).
DIM_RANGES: dict[str, tuple[int, int, int]] = {"prompts": (1, 1, 16), "points": (1, 2, 16)}
MAX_ARG_CHARS = 131072 - 1024  # Linux MAX_ARG_STRLEN: one argument of a command line, with a margin

_FLOAT, _FLOAT16 = 1, 10  # onnx.TensorProto.FLOAT / FLOAT16
_NO_LAYER_OPS = frozenset({"Constant"})  # the ONNX parser adds no layer for these
_NORM_OPS = frozenset({"LayerNormalization", "GroupNormalization", "InstanceNormalization", "BatchNormalization"})
_NORM_SCOPE = re.compile(r"/(norm|ln)[\w.]*/")
_HEAVY_OPS = frozenset({"Conv", "ConvTranspose", "Gemm"})  # what int8 is for: they stay quantizable


@dataclass
class Fp32Layer:
    """An ONNX node kept in fp32: TensorRT's layer of the same name, whose outputs carry these tensor names."""

    node: str
    outputs: list[str]


@dataclass
class EnginePlan:
    """Everything needed to build one engine from one prepared ONNX (paths relative to the export folder)."""

    role: str
    onnx: str
    engine: str
    precision: str  # fp32 | fp16 | int8
    shapes: dict[str, dict[str, list[int]]]  # dynamic inputs only: {name: {min, opt, max}}
    static_shapes: dict[str, list[int]]  # every input at the opt shape (calibration, trtexec --shapes)
    fp32_layers: list[Fp32Layer] = field(default_factory=list)
    workspace_mb: int = 4096
    timing_cache: str | None = TIMING_CACHE
    builder_optimization_level: int = 3
    strongly_typed: str = "auto"
    dla_core: int | None = None
    cuda_graph: bool = False
    calibration: dict[str, str] | None = None  # int8: {inputs: .npy, cache: .cache, source: text}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnginePlan:
        data = dict(data)
        data["fp32_layers"] = [Fp32Layer(**entry) for entry in data.get("fp32_layers", [])]
        return cls(**data)

    @property
    def fp32_tensors(self) -> set[str]:
        return {name for layer in self.fp32_layers for name in layer.outputs}


# ------------------------------------------------------------------------------------------- ONNX analysis


def _load(model: Any) -> Any:
    import onnx

    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(str(model), load_external_data=False)
    return model


def value_types(model: Any) -> dict[str, int]:
    """ONNX element type of every tensor (inputs, initializers, node outputs), after shape inference."""
    import onnx

    model = _load(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inference is best effort; the declared types are used then
        inferred = model
    graph = inferred.graph
    types = {init.name: init.data_type for init in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    return types


def layer_name(node: Any) -> str:
    """The name TensorRT's ONNX parser gives the layer of ``node`` (``node_of_<output>`` for unnamed nodes)."""
    return node.name or f"node_of_{node.output[0]}"


def fp32_islands(model: Any) -> list[Fp32Layer]:
    """Nodes of a mixed fp16 graph whose every output is declared float32 (the fp32 islands, Casts into fp32
    included). Empty for a graph with no float16 tensor (an fp32 graph has no islands)."""
    model = _load(model)
    types = value_types(model)
    if _FLOAT16 not in types.values():
        return []
    layers = []
    for node in model.graph.node:
        outputs = [o for o in node.output if o]
        if node.op_type in _NO_LAYER_OPS or not outputs:
            continue
        if all(types.get(o) == _FLOAT for o in outputs):
            layers.append(Fp32Layer(layer_name(node), outputs))
    return layers


def attention_scopes(model: Any) -> list[str]:
    """Name scopes of the LiteMLA attention modules (the scope holding a ``kernel_func`` ReLU)."""
    scopes = []
    for node in _load(model).graph.node:
        if node.op_type == "Relu" and "/kernel_func" in node.name:
            scope = node.name.split("/kernel_func")[0] + "/"
            if scope not in scopes:
                scopes.append(scope)
    return scopes


def int8_sensitive_layers(model: Any) -> list[Fp32Layer]:
    """Nodes of an fp32 graph an int8 build keeps in fp32: inside each attention module everything but its
    convolutions (matmuls, reductions, the normaliser clamp and division, reshapes), every normalisation and
    every resize, as in the mixed fp16 form's islands. Float outputs only."""
    model = _load(model)
    types = value_types(model)
    scopes = attention_scopes(model)
    layers = []
    for node in model.graph.node:
        outputs = [o for o in node.output if o]
        if node.op_type in _NO_LAYER_OPS or node.op_type in _HEAVY_OPS or not outputs:
            continue
        if not all(types.get(o) == _FLOAT for o in outputs):
            continue
        name = layer_name(node)
        in_attention = any(name.startswith(s) and "/proj/" not in name[len(s) - 1:] for s in scopes)
        is_norm = node.op_type in _NORM_OPS or bool(_NORM_SCOPE.search(name))
        if in_attention or is_norm or node.op_type == "Resize":
            layers.append(Fp32Layer(name, outputs))
    return layers


def fp32_layers_for(model: Any, precision: str) -> list[Fp32Layer]:
    """The layers an engine of ``precision`` keeps in fp32 (nothing to mark for an fp32 engine)."""
    if precision == "fp16":
        return fp32_islands(model)
    if precision == "int8":
        return int8_sensitive_layers(model)
    return []


def fp32_constants(model: Any) -> set[str]:
    """Float32 initializers and Constant-node outputs (in a mixed graph, only fp32 islands consume them)."""
    model = _load(model)
    names = {init.name for init in model.graph.initializer if init.data_type == _FLOAT}
    constants = [o for node in model.graph.node if node.op_type in _NO_LAYER_OPS for o in node.output]
    types = value_types(model) if constants else {}
    return names | {o for o in constants if types.get(o) == _FLOAT}


def select_fp32_layers(layers: list[tuple[str, list[str], list[str]]], fp32_tensors: set[str],
                       onnx_tensors: set[str], constants: set[str] = frozenset()) -> list[str]:
    """Names of the parsed network's layers to constrain to fp32.

    ``layers``: (name, float input tensor names, float output tensor names) in network order. A layer is
    marked when one of its outputs is an fp32 tensor of the ONNX, or when it is a helper layer the parser
    added (no output named in the ONNX) whose float inputs all come from marked layers, fp32 tensors or fp32
    ``constants`` (and not from constants alone).
    """
    marked, fp32 = [], set(fp32_tensors)
    for name, inputs, outputs in layers:
        if not outputs:
            continue
        direct = any(o in fp32_tensors for o in outputs)
        helper = (not any(o in onnx_tensors for o in outputs) and any(i in fp32 for i in inputs)
                  and all(i in fp32 or i in constants for i in inputs))
        if direct or helper:
            marked.append(name)
            fp32.update(outputs)
    return marked


# --------------------------------------------------------------------------------------------- the plan


def batch_range(batch: Any, spec_batch: int, dynamic: bool) -> tuple[int, int, int]:
    """(min, opt, max) batch of the optimisation profile.

    ``batch`` is the profile's BatchSettings (or its dict). ``opt`` is ``--batch`` when given (the batch the
    engine will run at: the paper's 16 for ADE20K and SAM), else the profile's ``opt``; ``max`` also covers the
    batch the validation gate runs a dynamic axis at (``--batch`` + 1).
    """
    get = batch.get if isinstance(batch, dict) else (lambda k: getattr(batch, k))
    lo, opt, hi, size = int(get("min")), int(get("opt")), int(get("max")), int(get("size"))
    if not dynamic:
        return spec_batch, spec_batch, spec_batch
    opt = spec_batch if spec_batch != size else opt
    opt = max(lo, opt)
    return lo, opt, max(hi, opt, spec_batch + 1)


def input_shapes(inputs: list[dict[str, Any]], batch: tuple[int, int, int]
                 ) -> tuple[dict[str, dict[str, list[int]]], dict[str, list[int]]]:
    """Optimisation-profile shapes of the dynamic inputs, and every input's opt shape.

    ``inputs``: TensorSpec dicts (name, shape with symbolic dims as strings). ``batch`` ranges the ``batch``
    axis; other symbolic dims use :data:`DIM_RANGES`.
    """
    dynamic, static = {}, {}
    for spec in inputs:
        ranges = {"min": [], "opt": [], "max": []}
        symbolic = False
        for dim in spec["shape"]:
            if isinstance(dim, int) and dim > 0:
                triple = (dim, dim, dim)
            else:
                symbolic = True
                triple = batch if dim == "batch" else DIM_RANGES.get(str(dim))
                if triple is None:
                    raise EvitError(f"input {spec['name']} has a dynamic dimension '{dim}' with no engine shape range "
                                    f"(known: batch, {', '.join(DIM_RANGES)})")
            for key, value in zip(("min", "opt", "max"), triple):
                ranges[key].append(int(value))
        if symbolic:
            dynamic[spec["name"]] = ranges
        static[spec["name"]] = ranges["opt"]
    return dynamic, static


def check_trt_settings(trt: Any, precision: str) -> None:
    """Reject settings the builders cannot honour (one-line EvitError)."""
    if precision not in ENGINE_PRECISIONS:
        raise EvitError(f"TensorRT engines are built in {', '.join(ENGINE_PRECISIONS)}; not '{precision}'")
    if trt.strongly_typed not in STRONGLY_TYPED_SETTINGS:
        raise EvitError(f"trt.strongly_typed must be one of {', '.join(STRONGLY_TYPED_SETTINGS)}; "
                        f"got '{trt.strongly_typed}'")
    if trt.workspace_mb < 1:
        raise EvitError(f"trt.workspace_mb must be >= 1; got {trt.workspace_mb}")
    if not 0 <= trt.builder_optimization_level <= 5:
        raise EvitError(f"trt.builder_optimization_level must be 0..5; got {trt.builder_optimization_level}")
    if trt.dla_core is not None and precision == "fp32":
        raise EvitError("DLA runs fp16 and int8 only: use --precision fp16 or int8 with trt.dla_core, or unset it")


def make_plan(onnx_path: Path, role: str, precision: str, inputs: list[dict[str, Any]], trt: Any,
              batch: tuple[int, int, int], engine: str | None = None) -> EnginePlan:
    """The build plan of one prepared ONNX file (``trt``: the profile's TrtSettings; ``engine``: the engine's file
    name, default ``<onnx stem>.engine``)."""
    check_trt_settings(trt, precision)
    shapes, static = input_shapes(inputs, batch)
    if precision == "int8" and len(inputs) != 1:
        raise EvitError(f"int8 calibration feeds single-input graphs; the {role} has {len(inputs)} inputs")
    calibration = None
    if precision == "int8":
        calibration = {"inputs": f"{CALIBRATION_DIR}/{role}.npy", "cache": f"{CALIBRATION_DIR}/{role}.cache",
                       "source": ""}
    return EnginePlan(
        role=role, onnx=Path(onnx_path).name, engine=engine or Path(onnx_path).stem + ".engine", precision=precision,
        shapes=shapes,
        static_shapes=static, fp32_layers=fp32_layers_for(onnx_path, precision), workspace_mb=trt.workspace_mb,
        timing_cache=TIMING_CACHE if trt.timing_cache else None,
        builder_optimization_level=trt.builder_optimization_level, strongly_typed=trt.strongly_typed,
        dla_core=trt.dla_core, cuda_graph=trt.cuda_graph, calibration=calibration,
    )


def version_tuple(version: str) -> tuple[int, ...]:
    """``"10.3.0.30"`` → ``(10, 3, 0, 30)`` (non-numeric parts dropped)."""
    return tuple(int(p) for p in re.findall(r"\d+", str(version)))


def use_strongly_typed(setting: str, precision: str, trt_version: str) -> bool:
    """Whether to build a strongly typed network: ``auto`` = from TensorRT 10.12 on (the mixed ONNX carries the
    types); int8 needs a weakly typed network with a calibrator, which TensorRT 11 no longer has."""
    major_minor = version_tuple(trt_version)[:2]
    if precision == "int8":
        if major_minor >= (11, 0):
            raise EvitError(f"int8 with a calibrator needs TensorRT < 11 (this is {trt_version}, which only takes "
                            "explicitly quantized Q/DQ ONNX): build fp16, or quantize the ONNX with NVIDIA ModelOpt")
        return False
    if setting == "always":
        return True
    if setting == "never":
        if major_minor >= (11, 0):
            raise EvitError(f"TensorRT {trt_version} builds strongly typed networks only: set trt.strongly_typed to "
                            "auto or always")
        return False
    return major_minor >= STRONGLY_TYPED_SINCE


# ------------------------------------------------------------------------------------------------ trtexec


def _spec_list(entries: list[tuple[str, str]]) -> str:
    for name, _ in entries:
        if any(c in name for c in ",:'\"") or "*" in name:
            raise EvitError(f"layer name {name!r} cannot be passed to trtexec (it contains , : * or quotes)")
    return ",".join(f"{name}:{value}" for name, value in entries)


def _shape(shape: list[int]) -> str:
    return "x".join(str(d) for d in shape)


def trtexec_args(plan: EnginePlan, trtexec: str = "trtexec") -> list[str]:
    """The ``trtexec`` command that builds ``plan`` with TensorRT 10.3's builder flags (the Jetson path).

    fp16: ``--fp16`` with ``--precisionConstraints=obey`` and per-layer fp32 precisions/output types for the
    fp32 islands (node names = TensorRT layer names); int8: ``--int8 --fp16`` with the calibration cache and
    the sensitive layers in fp32; fp32: no reduced precision and no TF32.
    """
    args = [trtexec, f"--onnx={plan.onnx}", f"--saveEngine={plan.engine}"]
    precisions = _spec_list([(layer.node, "fp32") for layer in plan.fp32_layers])
    output_types = _spec_list([(layer.node, "fp32") for layer in plan.fp32_layers])  # one type: every output
    if plan.precision == "fp32":
        args.append("--noTF32")
    elif plan.precision == "fp16":
        args.append("--fp16")
        if plan.fp32_layers:  # "*" first: later entries override earlier ones
            args += ["--precisionConstraints=obey", f"--layerPrecisions=*:fp16,{precisions}",
                     f"--layerOutputTypes=*:fp16,{output_types}"]
    elif plan.precision == "int8":
        args += ["--int8", "--fp16", f"--calib={plan.calibration['cache']}"]
        if plan.fp32_layers:  # no "*": unconstrained layers stay free to run int8
            args += ["--precisionConstraints=obey", f"--layerPrecisions={precisions}",
                     f"--layerOutputTypes={output_types}"]
    if plan.shapes:
        for key, flag in (("min", "--minShapes"), ("opt", "--optShapes"), ("max", "--maxShapes")):
            args.append(f"{flag}=" + ",".join(f"{name}:{_shape(r[key])}" for name, r in plan.shapes.items()))
        args.append("--shapes=" + ",".join(f"{name}:{_shape(r['opt'])}" for name, r in plan.shapes.items()))
    args.append(f"--memPoolSize=workspace:{plan.workspace_mb}M")
    args.append(f"--builderOptimizationLevel={plan.builder_optimization_level}")
    if plan.timing_cache:
        args.append(f"--timingCacheFile={plan.timing_cache}")
    if plan.dla_core is not None:
        args += [f"--useDLACore={plan.dla_core}", "--allowGPUFallback"]
    too_long = [a.split("=")[0] for a in args if len(a) > MAX_ARG_CHARS]
    if too_long:
        raise EvitError(f"the trtexec argument {too_long[0]} of the {plan.role} would exceed the kernel's "
                        f"{MAX_ARG_CHARS} character limit; build it with `evit-deploy build-engine` instead")
    return args


# ------------------------------------------------------------------------------------------------ bundle


def write_calibration(folder: Path, plan: EnginePlan, inputs: list[Any], source: str) -> Path:
    """Save the pre-processed calibration inputs (``[N,3,H,W]`` float32) for ``plan`` as ``calibration/<role>.npy``."""
    if plan.calibration is None:
        raise EvitError(f"the {plan.role} plan is not int8: it has no calibration inputs")
    array = np.ascontiguousarray(np.concatenate([np.asarray(x, dtype=np.float32) for x in inputs]))
    (name, expected), = plan.static_shapes.items()
    if list(array.shape[1:]) != expected[1:]:
        raise EvitError(f"calibration inputs of shape {list(array.shape)} do not fit {name} {expected}")
    path = Path(folder) / plan.calibration["inputs"]
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write(path, buffer.getvalue())
    plan.calibration["source"] = f"{source}; {array.shape[0]} inputs of {list(array.shape[1:])} float32"
    return path


def read_plans(folder: Path) -> dict[str, EnginePlan]:
    """The build plans recorded in ``folder/trt_build.json`` by role (empty when there is none)."""
    path = Path(folder) / BUILD_PLAN
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return {role: EnginePlan.from_dict(entry) for role, entry in data["plans"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise EvitError(f"{path} is not a valid engine build plan ({type(exc).__name__}: {exc})") from None


def write_plans(folder: Path, plans: dict[str, EnginePlan], meta: dict[str, Any]) -> Path:
    """Write ``trt_build.json``: the plans by role plus ``meta`` (model, target, input size, ...)."""
    path = Path(folder) / BUILD_PLAN
    doc = {"evit_deploy": __version__, **meta, "plans": {role: p.to_dict() for role, p in plans.items()}}
    atomic_write(path, json.dumps(doc, indent=2) + "\n")
    return path


def _calibration_guard(plan: EnginePlan) -> list[str]:
    cache, npy = plan.calibration["cache"], plan.calibration["inputs"]
    return [
        f'if [ ! -f {shlex.quote(cache)} ]; then',
        f'  echo "{cache} is missing: TensorRT computes it on this device from {npy}. Run'
        f' \'evit-deploy build-engine .\' (it calibrates, writes the cache and builds the engine);'
        f' then this script can rebuild with trtexec." >&2',
        "  exit 2",
        "fi",
    ]


def build_script(plans: dict[str, EnginePlan], model: str) -> str:
    """``build_engine.sh``: one ``trtexec`` command per role (``bash build_engine.sh [ROLE...]``)."""
    roles = " ".join(plans)
    lines = [
        "#!/usr/bin/env bash",
        f"# Build the TensorRT engines of this bundle ({model}) ON THE TARGET DEVICE: engines are specific to",
        f"# the GPU and the TensorRT version that build them. Written by evit-deploy {__version__} for {JETPACK}.",
        "# Usage: bash build_engine.sh [ROLE...]   (roles: " + roles + "; default: all)",
        "# TRTEXEC=/path/to/trtexec overrides where trtexec is found.",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"',
        'if [ ! -x "$TRTEXEC" ]; then',
        '  echo "trtexec not found (looked on PATH and in /usr/src/tensorrt/bin): install TensorRT (JetPack) or set'
        ' TRTEXEC" >&2',
        "  exit 2",
        "fi",
        f'ROLES=" ${{*:-{roles}}} "',
    ]
    for role, plan in plans.items():
        args = trtexec_args(plan, "$TRTEXEC")
        body = ['"$TRTEXEC"'] + [shlex.quote(a) for a in args[1:]]
        lines += ["", f"# {role}: {describe(plan)}", f'if [[ "$ROLES" == *" {role} "* ]]; then']
        if plan.precision == "int8":
            lines += ["  " + line for line in _calibration_guard(plan)]
        if plan.precision == "fp16" and plan.fp32_layers:
            lines.append("  # TensorRT >= 10.12: use --stronglyTyped instead of --fp16 and the three precision flags"
                         " (the ONNX carries the types)")
        lines.append(f'  echo "building {plan.engine} ({plan.precision}) from {plan.onnx}"')
        lines.append("  " + " \\\n    ".join(body))
        lines.append("fi")
    lines += ["", 'echo "done: check an engine with: $TRTEXEC --loadEngine=<role>.engine (or evit-deploy validate .)"',
              ""]
    return "\n".join(lines)


def describe(plan: EnginePlan) -> str:
    """One line: precision, fp32 layers, shapes."""
    shapes = "; ".join(
        f"{name} {_shape(plan.shapes[name]['min'])}..{_shape(plan.shapes[name]['max'])}" if name in plan.shapes
        else f"{name} {_shape(shape)}" for name, shape in plan.static_shapes.items())
    kept = f", {len(plan.fp32_layers)} layers kept fp32" if plan.fp32_layers else ""
    dla = f", DLA core {plan.dla_core} with GPU fallback" if plan.dla_core is not None else ""
    return f"{plan.precision}{kept}{dla}; {shapes}"


def bundle_readme(plans: dict[str, EnginePlan], model: str, target: str) -> str:
    """README.md of a Jetson build bundle."""
    rows = "\n".join(f"| `{p.role}` | `{p.onnx}` | `{p.engine}` | {describe(p)} |" for p in plans.values())
    int8 = [p for p in plans.values() if p.precision == "int8"]
    calib = ""
    if int8:
        calib = (
            "\n## int8 calibration\n\n"
            + "\n".join(f"- `{p.calibration['inputs']}`: {p.calibration['source']}" for p in int8)
            + "\n\nThese are the pre-processed calibration inputs (normalised NCHW float32, made exactly like the "
            "validation inputs). The TensorRT calibration cache (`calibration/<role>.cache`) can only be produced by "
            "TensorRT itself, on the device: `evit-deploy build-engine .` runs the entropy calibrator "
            "(IInt8EntropyCalibrator2) on them, writes the cache and builds the engine. trtexec cannot calibrate from "
            "data, so `build_engine.sh` needs that cache and stops with a message while it is missing. The attention, "
            "norm and resize layers are kept fp32 in the int8 engine; measure it against fp32 "
            "(`evit-deploy validate . --weights ...`).\n"
        )
    return f"""# TensorRT build bundle: {model} ({target})

Engines are specific to the GPU and the TensorRT version that build them, so they are built **on the device**
from this bundle. Assumed: {JETPACK} on Jetson AGX Orin / Orin NX / Orin Nano.

| role | prepared ONNX (validated) | engine | build |
|---|---|---|---|
{rows}

- `*.onnx`: the prepared graphs, validated against PyTorch with ONNX Runtime when the bundle was exported
  (figures in `export.json`). fp16 graphs are mixed precision: fp16 with fp32 islands (attention
  matmuls/reductions/division, norms, resizes) and explicit Casts; inputs and outputs stay float32.
- `{BUILD_SCRIPT}`: the exact `trtexec` command per role. TensorRT 10.3 takes the precision from builder flags,
  so an fp16 build uses `--fp16 --precisionConstraints=obey` and names every fp32-island layer in
  `--layerPrecisions`/`--layerOutputTypes` (TensorRT names parsed layers after the ONNX nodes). Helper layers
  the parser adds for a node get suffixed names, so trtexec's `*:fp16` default applies to them; the Python
  API path below keeps those inside an island fp32 too. On TensorRT >= 10.12 use `--stronglyTyped` instead.
- `{BUILD_PLAN}`: the same plan as data (shapes, fp32 layers, workspace, timing cache, DLA) for
  `evit-deploy build-engine`.
- `export.json`: the export manifest (model, profile, validation figures).
{calib}
## Build

```bash
bash {BUILD_SCRIPT}               # every role with trtexec (or: bash {BUILD_SCRIPT} {next(iter(plans))})
evit-deploy build-engine .       # or with the TensorRT Python API (needs evit-deploy and tensorrt on the device)
```

`evit-deploy build-engine` also writes `<engine>.json` (TensorRT version, GPU, compute capability, precision)
beside each engine and adds the engines to `export.json`, so `evit_deploy.runtime.load(".")` runs the engine
and refuses it on another GPU or TensorRT version. Engines built by `{BUILD_SCRIPT}` have no such sidecar.

## Check

- `trtexec --loadEngine=<role>.engine` (with `--shapes=...` for dynamic inputs): loads and times the engine.
- `evit-deploy validate . --weights <checkpoint>`: runs every artifact, engines included, against PyTorch on
  the sample photos (needs PyTorch on the device; pass the checkpoint the export was made from).
"""


def write_bundle(folder: Path, plans: dict[str, EnginePlan], model: str, target: str) -> Path:
    """Write ``build_engine.sh`` (executable) and ``README.md`` for ``plans``; returns the script path."""
    script = Path(folder) / BUILD_SCRIPT
    atomic_write(script, build_script(plans, model), mode=0o755)
    atomic_write(Path(folder) / BUNDLE_README, bundle_readme(plans, model, target))
    return script


# ----------------------------------------------------------------------------------------------- sidecars


def sidecar_path(engine: Path) -> Path:
    """``model.engine`` → ``model.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def read_sidecar(engine: Path) -> dict[str, Any] | None:
    path = sidecar_path(engine)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise EvitError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise EvitError(f"{path} is not an engine sidecar (expected a JSON object)")
    return data


def _norm(name: str | None) -> str:
    return " ".join(str(name or "").lower().split())


def check_compatibility(sidecar: dict[str, Any], facts: dict[str, Any]) -> str | None:
    """Why an engine described by ``sidecar`` cannot run here (None = it can).

    ``facts``: this host's ``tensorrt_version``, ``gpu_name`` and ``compute_capability`` (None = unknown, not
    compared). An engine only deserializes in the TensorRT version that built it, and its kernels are chosen for
    one GPU model.
    """
    built, here = sidecar.get("tensorrt_version"), facts.get("tensorrt_version")
    if built and here and version_tuple(built)[:3] != version_tuple(here)[:3]:
        return (f"it was built with TensorRT {built} and this host has TensorRT {here}; an engine only loads in "
                "the TensorRT version that built it: rebuild it here (evit-deploy build-engine)")
    built_cc, here_cc = sidecar.get("compute_capability"), facts.get("compute_capability")
    built_gpu, here_gpu = sidecar.get("gpu_name"), facts.get("gpu_name")
    if built_cc and here_cc and str(built_cc) != str(here_cc):
        return (f"it was built for {built_gpu or 'a GPU'} (compute capability {built_cc}) and this GPU is "
                f"{here_gpu or 'different'} (compute capability {here_cc}): rebuild it on this GPU "
                "(evit-deploy build-engine)")
    if built_gpu and here_gpu and _norm(built_gpu) != _norm(here_gpu):
        return (f"it was built for {built_gpu} and this GPU is {here_gpu} (same compute capability {here_cc}, but "
                "TensorRT tunes engines per GPU model): rebuild it on this GPU (evit-deploy build-engine)")
    return None


def gpu_facts(device: int = 0) -> dict[str, Any]:
    """Name and compute capability of CUDA device ``device`` (PyTorch, else nvidia-smi; None when unknown)."""
    facts: dict[str, Any] = {"gpu_name": None, "compute_capability": None}
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(device)
            return {"gpu_name": torch.cuda.get_device_name(device), "compute_capability": f"{major}.{minor}"}
    except Exception:  # noqa: BLE001 - a broken CUDA setup: fall through to nvidia-smi
        pass
    import shutil
    import subprocess

    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20, check=True).stdout.splitlines()
            name, cc = (v.strip() for v in out[device].split(",")[:2])
            facts = {"gpu_name": name, "compute_capability": cc}
        except (subprocess.SubprocessError, OSError, IndexError, ValueError):
            pass
    return facts
