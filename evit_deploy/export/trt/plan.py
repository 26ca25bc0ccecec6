"""TensorRT engine build plans: everything about an engine build that can be computed (and tested) on any host
(optimisation-profile shapes from the export's batch settings, the layers kept fp32, the strongly typed choice),
and their record ``trt_build.json`` beside the prepared ONNX."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ... import __version__
from ...errors import EvitError
from ...files import atomic_write
from ...runtime.trt_common import version_tuple
from .onnx_layers import Fp32Layer, fp32_layers_for

BUILD_PLAN = "trt_build.json"
TIMING_CACHE = "timing.cache"
ENGINE_PRECISIONS = ("fp32", "fp16", "int8")
STRONGLY_TYPED_SETTINGS = ("auto", "always", "never")
INT8_SCHEME = "tensorrt"  # the quant.scheme of the Q/DQ graphs TensorRT builds (symmetric int8, zero point 0)
STRONGLY_TYPED_SINCE = (10, 12)  # weakly typed networks deprecated from here; TensorRT 11 drops them
# Ranges of the symbolic dimensions other than the batch (the SAM prompt decoder's prompts and points).
DIM_RANGES: dict[str, tuple[int, int, int]] = {"prompts": (1, 1, 16), "points": (1, 2, 16)}


@dataclass
class EnginePlan:
    """Everything needed to build one engine from one prepared ONNX (paths relative to the export folder)."""

    role: str
    onnx: str
    engine: str
    precision: str  # fp32 | fp16 | int8
    shapes: dict[str, dict[str, list[int]]]  # dynamic inputs only: {name: {min, opt, max}}
    static_shapes: dict[str, list[int]]  # every input at the opt shape (trtexec --shapes)
    fp32_layers: list[Fp32Layer] = field(default_factory=list)
    workspace_mb: int = 4096
    timing_cache: str | None = TIMING_CACHE
    builder_optimization_level: int = 3
    strongly_typed: str = "auto"
    dla_core: int | None = None
    cuda_graph: bool = False

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


def trt_settings_problem(trt: Any, precision: str, scheme: str | None = None) -> str | None:
    """What keeps the builders from honouring ``trt`` (the profile's TrtSettings) for ``precision``, and (``scheme``:
    the profile's ``quant.scheme``) an int8 graph they cannot build; None when nothing does."""
    if precision not in ENGINE_PRECISIONS:
        return f"TensorRT engines are built in {', '.join(ENGINE_PRECISIONS)}; not '{precision}'"
    if trt.strongly_typed not in STRONGLY_TYPED_SETTINGS:
        return f"trt.strongly_typed must be one of {', '.join(STRONGLY_TYPED_SETTINGS)}; got '{trt.strongly_typed}'"
    if trt.workspace_mb < 1:
        return f"trt.workspace_mb must be >= 1; got {trt.workspace_mb}"
    if not 0 <= trt.builder_optimization_level <= 5:
        return f"trt.builder_optimization_level must be 0..5; got {trt.builder_optimization_level}"
    if trt.dla_core is not None and precision == "fp32":
        return "DLA runs fp16 and int8 only: use --precision fp16 or int8 with trt.dla_core, or unset it"
    if precision == "int8" and scheme not in (None, INT8_SCHEME):
        return (f"TensorRT builds int8 from a symmetric Q/DQ graph: set quant.scheme to {INT8_SCHEME}, not "
                f"'{scheme}' (its uint8 activations have zero points TensorRT does not take)")
    return None


def check_trt_settings(trt: Any, precision: str) -> None:
    """Reject settings the builders cannot honour (one-line EvitError)."""
    problem = trt_settings_problem(trt, precision)
    if problem:
        raise EvitError(problem)


def make_plan(onnx_path: Path, role: str, precision: str, inputs: list[dict[str, Any]], trt: Any,
              batch: tuple[int, int, int], engine: str | None = None) -> EnginePlan:
    """The build plan of one prepared ONNX file (``trt``: the profile's TrtSettings; ``engine``: the engine's file
    name, default ``<onnx stem>.engine``)."""
    check_trt_settings(trt, precision)
    shapes, static = input_shapes(inputs, batch)
    return EnginePlan(
        role=role, onnx=Path(onnx_path).name, engine=engine or Path(onnx_path).stem + ".engine", precision=precision,
        shapes=shapes,
        static_shapes=static, fp32_layers=fp32_layers_for(onnx_path, precision), workspace_mb=trt.workspace_mb,
        timing_cache=TIMING_CACHE if trt.timing_cache else None,
        builder_optimization_level=trt.builder_optimization_level, strongly_typed=trt.strongly_typed,
        dla_core=trt.dla_core, cuda_graph=trt.cuda_graph,
    )


def use_strongly_typed(setting: str, precision: str, trt_version: str) -> bool:
    """Whether to build a strongly typed network: ``auto`` = from TensorRT 10.12 on (the mixed fp16 or Q/DQ int8
    ONNX carries the types); before that, builder flags with the fp32 islands constrained (TensorRT 10.3)."""
    major_minor = version_tuple(trt_version)[:2]
    if setting == "always":
        return True
    if setting == "never":
        if major_minor >= (11, 0):
            raise EvitError(f"TensorRT {trt_version} builds strongly typed networks only: set trt.strongly_typed to "
                            "auto or always")
        return False
    return major_minor >= STRONGLY_TYPED_SINCE


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
