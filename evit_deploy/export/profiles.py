"""Export profiles: one YAML per hardware target, loaded into typed settings with defaults in one place.

The dataclasses below hold every default; a profile states only what differs from them (:func:`restated_keys`
finds keys that do not, and the shipped profiles are tested to have none). A profile may ``extends:`` another (a
shipped name or a path relative to the file); the defaults, the extended profile and the file merge in that order,
mappings recursively (a tolerance table or ``openvino.inference_precision`` entry changes only what it names) and
lists replace. Unknown keys are errors that name the file and line.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

from .._paths import data_dir
from ..artifacts import PRECISIONS, Layout, Precision  # defined once, with the manifest
from ..errors import EvitError
from ..tasks import task_names

AUTO = "auto"  # --precision auto: the profile's ``auto`` list, first precision this machine can run
PrecisionChoice = Literal[Precision, "auto"]  # what a profile offers and a request may ask for


class ProfileError(EvitError):
    """A profile that cannot be found, parsed or understood."""


@dataclass
class Tolerance:
    """Validation gate for one precision. ``max_rel`` = max |ours − PyTorch| / max |PyTorch| per output."""

    max_rel: float = 1e-4
    min_cosine: float = 0.9999
    min_agreement: float = 0.999  # cls top-1, seg per-pixel argmax, SAM mask sign agreement


@dataclass
class ValidationSettings:
    photos: list[str] = field(default_factory=lambda: ["astronaut", "chelsea", "coffee"])
    noise: int = 1  # random normalised inputs in addition to the photos
    tolerances: dict[str, Tolerance] = field(
        default_factory=lambda: {
            "fp32": Tolerance(),
            "fp16": Tolerance(max_rel=1e-2, min_cosine=0.999, min_agreement=0.98),
            # bf16 keeps fp32's range but 8 significant bits (unit roundoff 2^-9, 4x fp16's): fp16's cosine and
            # agreement, a max relative error scaled like the roundoff (B1 r224: 2.4e-2 here, cosine 0.9995)
            "bf16": Tolerance(max_rel=5e-2, min_cosine=0.999, min_agreement=0.98),
            "int8-dynamic": Tolerance(max_rel=0.25, min_cosine=0.95, min_agreement=0.5),
            "int8": Tolerance(max_rel=0.35, min_cosine=0.9, min_agreement=0.5),
        }
    )


OnnxExporter = Literal["torchscript", "dynamo"]
ONNX_EXPORTERS: tuple[str, ...] = typing.get_args(OnnxExporter)


@dataclass
class OnnxSettings:
    opset: int = 17
    exporter: OnnxExporter = "torchscript"  # torch.onnx.export(dynamo=False), or dynamo
    simplify: bool = True  # onnxsim


@dataclass
class BatchSettings:
    """``size`` is the batch of the example input; ``dynamic`` makes the batch axis symbolic.

    ``min``/``opt``/``max`` describe the range for engines that need an optimisation profile (TensorRT).
    """

    size: int = 1
    dynamic: bool = False
    min: int = 1
    opt: int = 1
    max: int = 1


@dataclass
class RuntimeSettings:
    threads: int = 0  # 0 = the runtime's default
    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])


@dataclass
class QuantSettings:
    """Full-integer int8 (``--precision int8``): the Q/DQ scheme of the ONNX and the calibration.

    ``scheme``: ``cpu`` (uint8 activations, ONNX Runtime's fast CPU form) or ``tensorrt`` (symmetric int8, what
    TensorRT builds as written); ``calibration``: ``minmax`` (best here), ``entropy`` or ``percentile``.
    """

    scheme: Literal["cpu", "tensorrt"] = "cpu"
    calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    min_images: int = 4  # a --calib folder with fewer images is refused


@dataclass
class OpenVinoSettings:
    """OpenVINO IR (cpu-openvino): how the runtime compiles it. The exporter writes these into the IR (its
    ``rt_info``) and ``export.json``; the runtime pins them and records what the compiled model really runs.

    ``inference_precision``: OpenVINO's ``INFERENCE_PRECISION_HINT`` per export precision. Pinned always: left
    unset, the CPU plugin runs bf16 on CPUs with AVX512_BF16/AMX whatever the IR holds. ``performance_hint``:
    ``LATENCY`` (one stream, all threads on one request) or ``THROUGHPUT`` (several streams for parallel
    requests); ``streams``: 0 = what the hint chooses. Threads and the device come from ``runtime`` (``threads``,
    ``providers: [CPU]``).
    """

    inference_precision: dict[str, Literal["f32", "bf16", "f16"]] = field(
        default_factory=lambda: {"fp32": "f32", "bf16": "bf16", "int8": "f32"})
    performance_hint: Literal["LATENCY", "THROUGHPUT"] = "LATENCY"
    streams: int = 0


@dataclass
class TrtSettings:
    """TensorRT engine building (cloud-gpu-trt, jetson-orin-trt)."""

    workspace_mb: int = 4096
    timing_cache: bool = True  # reuse/save tactic timings beside the engine
    builder_optimization_level: int = 3
    strongly_typed: Literal["auto", "always", "never"] = "auto"  # auto: strongly typed on TensorRT >= 10.12
    dla_core: int | None = None  # Jetson: build for this DLA core (GPU fallback allowed)
    cuda_graph: bool = False  # runtime: capture the enqueue in a CUDA graph


@dataclass
class CompiledSettings:
    """The packaged PyTorch GPU engine (cloud-gpu-compiled): torch.export program + torch.compile cache."""

    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "reduce-overhead"
    warmup: int = 3  # calls that compile and record before the cache is saved


@dataclass
class ExportProfile:
    """Everything an export to one hardware target needs (see export_profiles/README.md)."""

    name: str
    description: str = ""
    devices: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=lambda: ["onnx"])
    precisions: list[PrecisionChoice] = field(default_factory=lambda: ["fp32"])  # the first is the default
    auto: list[Precision] = field(default_factory=list)  # --precision auto: the first of these this machine runs
    layout: Layout = "NCHW"
    batch: BatchSettings = field(default_factory=BatchSettings)
    dynamic_hw: bool = False  # segmentation: symbolic input height/width (ADE20K's protocol sizes every image)
    input_size: dict[str, list[int] | None] = field(default_factory=lambda: dict.fromkeys(task_names()))  # by task
    transforms: list[str] = field(default_factory=lambda: ["attention-deploy", "bicubic-as-conv"])
    onnx: OnnxSettings = field(default_factory=OnnxSettings)
    trt: TrtSettings = field(default_factory=TrtSettings)
    quant: QuantSettings = field(default_factory=QuantSettings)
    compiled: CompiledSettings = field(default_factory=CompiledSettings)
    openvino: OpenVinoSettings = field(default_factory=OpenVinoSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def tolerance(self, precision: str) -> Tolerance:
        return self.validation.tolerances.get(precision) or Tolerance()


# ------------------------------------------------------------------------------------------------ loading


def shipped_profiles_dir() -> Path:
    return data_dir("export_profiles")


def list_profiles() -> list[str]:
    """Names of the shipped profiles."""
    return sorted(p.stem for p in shipped_profiles_dir().glob("*.yaml"))


def _line_of(text: str, key: str) -> int | None:
    match = re.search(rf"(^|[{{,\s]){re.escape(key)}\s*:", text, flags=re.MULTILINE)
    return text[: match.end()].count("\n") + 1 if match else None


def _read_yaml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ProfileError(f"profile {where}: invalid YAML ({exc.problem or exc.context})") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"profile {path}: invalid YAML ({exc})") from None
    if not isinstance(doc, dict):
        raise ProfileError(f"profile {path}: expected a mapping at the top level")
    return doc, text


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _locate(target: str, relative_to: Path | None = None) -> Path:
    """A shipped profile name, or a path to a YAML file (relative paths: to the extending file, then cwd)."""
    if target.endswith((".yaml", ".yml")) or "/" in target:
        candidates = [relative_to.parent / target] if relative_to else []
        candidates.append(Path(target))
        for path in candidates:
            if path.is_file():
                return path
        raise ProfileError(f"profile file not found: {target}")
    path = shipped_profiles_dir() / f"{target}.yaml"
    if not path.is_file():
        raise ProfileError(f"unknown target '{target}'; valid targets: {', '.join(list_profiles())}")
    return path


def _raw_profile(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], dict[Path, str]]:
    """The merged mapping of a profile and its ``extends`` chain, plus the text of each file (for errors)."""
    path = path.resolve()
    if path in seen:
        raise ProfileError(f"profile {path}: 'extends' loops back to itself")
    doc, text = _read_yaml(path)
    texts = {path: text}
    parent = doc.pop("extends", None)
    if parent is not None:
        base, parent_texts = _raw_profile(_locate(str(parent), path), (*seen, path))
        texts.update(parent_texts)
        doc = _merge(base, doc)
    return doc, texts


def _convert(tp: Any, value: Any, where: str, texts: dict[Path, str]) -> Any:
    """Build ``tp`` (a dataclass, list, dict or scalar annotation) from YAML data, rejecting unknown keys."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ProfileError(f"{where}: expected a mapping, got {value!r}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - names)
        if unknown:
            lines = [f"{p}:{n}" for p, t in texts.items() if (n := _line_of(t, unknown[0]))]
            at = f" ({lines[0]})" if lines else ""
            raise ProfileError(
                f"{where}: unknown key '{unknown[0]}'{at}; valid keys here: {', '.join(sorted(names - {'source'}))}"
            )
        return tp(**{k: _convert(hints[k], v, f"{where}.{k}", texts) for k, v in value.items()})
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ProfileError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _convert(args[0], value, where, texts)
    if origin is list:
        if not isinstance(value, list):
            raise ProfileError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(item, v, f"{where}[{i}]", texts) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ProfileError(f"{where}: expected a mapping, got {value!r}")
        _, item = typing.get_args(tp)
        return {k: _convert(item, v, f"{where}.{k}", texts) for k, v in value.items()}
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and not isinstance(value, tp):
        raise ProfileError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _check(profile: ExportProfile) -> ExportProfile:
    where = f"profile {profile.name}"
    if not profile.precisions:
        raise ProfileError(f"{where}: precisions is empty; known: {', '.join(PRECISIONS)}")
    if AUTO in profile.precisions and not profile.auto:
        raise ProfileError(f"{where}: precisions offers auto but 'auto' (the precisions it picks from) is empty")
    stray = [p for p in profile.auto if p not in profile.precisions]
    if stray:
        raise ProfileError(f"{where}: auto picks {stray[0]}, which precisions does not offer")
    b = profile.batch
    if not (1 <= b.min <= b.opt <= b.max) or b.size < 1:
        raise ProfileError(f"{where}: batch needs 1 <= min <= opt <= max and size >= 1")
    return profile


def defaults() -> dict[str, Any]:
    """Every setting's default as a profile mapping: what a profile that states nothing gets."""
    data = dataclasses.asdict(ExportProfile(name=""))
    for key in ("name", "source"):
        data.pop(key)
    return data


def restated_keys(target: str) -> list[str]:
    """Keys of the profile file ``target`` (dotted paths) whose value equals what the profile gets without them:
    the default, or the value of the profile it extends. A profile states only what differs."""
    path = _locate(target).resolve()
    own, _ = _read_yaml(path)
    parent = own.pop("extends", None)
    base = defaults()
    if parent is not None:
        base = _merge(base, _raw_profile(_locate(str(parent), path), (path,))[0])
    return _restated(own, base, "")


def _restated(own: dict[str, Any], base: dict[str, Any], prefix: str) -> list[str]:
    found = []
    for key, value in own.items():
        if key not in base:
            continue
        if isinstance(value, dict) and isinstance(base[key], dict):
            found += _restated(value, base[key], f"{prefix}{key}.")
        elif value == base[key]:
            found.append(f"{prefix}{key}")
    return found


def load_profile(target: str) -> ExportProfile:
    """Resolve a target name (``cpu-ort``) or a YAML path into a checked :class:`ExportProfile`."""
    path = _locate(target)
    raw, texts = _raw_profile(path)
    raw.setdefault("name", path.stem)
    profile = _convert(ExportProfile, _merge(defaults(), raw), f"profile {path.name}", texts)
    profile.source = str(path)
    return _check(profile)


@cache
def shipped_profile(name: str) -> ExportProfile:
    return load_profile(name)


def profile_from_dict(data: dict[str, Any]) -> ExportProfile:
    """Rebuild a resolved profile (as stored in export.json; settings added since it was written get defaults)."""
    return _check(_convert(ExportProfile, _merge(defaults(), data), "export.json profile", {}))
