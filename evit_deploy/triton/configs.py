"""The configs (``config.pbtxt`` contents, as dicts) of the models :mod:`evit_deploy.triton` lays out: a graph
model per artifact (platform, batching, tensors, instances) and the Python-backend pipeline model, whose settings
file (``PIPELINE_SETTINGS``) tells :mod:`evit_deploy.triton.backend` which graph models to call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..artifacts import FORMATS, ArtifactEntry, Manifest, TensorSpec, choose_artifact
from ..errors import EvitError
from .pbtxt import Sym

TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16", "float64": "TYPE_FP64",
                "int64": "TYPE_INT64", "int32": "TYPE_INT32", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8",
                "bool": "TYPE_BOOL"}


@dataclass(frozen=True)
class Platform:
    """How Triton runs a graph model: the ``platform``/``backend`` written in its config, the backend folder the
    server needs (``backends/<backend>``), the artifact formats it loads (preferred first), the model file's name
    (``None``: the artifact keeps its own), and whether ``--platform auto`` may pick it."""

    name: str
    backend: str
    formats: tuple[str, ...]
    filename: str | None
    config_key: str = "platform"
    auto: bool = True
    gpu: bool = False


# The python platform runs the artifact with this package's runtime inside Triton's Python backend (any format
# that runs on the CPU here); it is what a server with the Python backend only (the bundled one) can load.
PYTHON_FORMATS = tuple(f for f, info in FORMATS.items() if info.runnable and not info.gpu)
PLATFORMS = {p.name: p for p in (
    Platform("tensorrt_plan", "tensorrt", ("trt-engine",), "model.plan", gpu=True),
    Platform("onnxruntime_onnx", "onnxruntime", ("onnx",), "model.onnx"),
    # Triton's OpenVINO backend (model.xml + model.bin); its parameters carry the IR's load settings (it has no
    # setting for f32 inference precision, so an f32 IR is refused there: see openvino_parameters)
    Platform("openvino", "openvino", ("openvino",), "model.xml", config_key="backend", auto=False),
    Platform("python", "python", PYTHON_FORMATS, None, config_key="backend", auto=False),
)}
GPU_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
PIPELINE_MAX_BATCH = 16
PIPELINE_SETTINGS = "pipeline.json"  # in the pipeline model's version folder, read by the backend
GRAPH_SETTINGS = "graph.json"  # in a python-platform graph model's version folder, read by graph_backend
MODEL_PY = '''"""Triton Python-backend {what} for {model}, written by `evit-deploy triton`.

Needs `pip install evit-deploy` in Triton's Python environment.
"""

from evit_deploy.triton.{module} import TritonPythonModel  # noqa: F401
'''


def model_py(what: str, model: str, module: str) -> str:
    """The ``model.py`` of a Python-backend model: it imports ``evit_deploy.triton.<module>``'s model class."""
    return MODEL_PY.format(what=what, model=model, module=module)


def _triton_type(dtype: str) -> Sym:
    if dtype not in TRITON_TYPES:
        raise EvitError(f"tensor type {dtype} has no Triton data type (known: {', '.join(TRITON_TYPES)})")
    return Sym(TRITON_TYPES[dtype])


def _dims(shape: list[int | str]) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in shape]


def _batch_axis(entry: ArtifactEntry, dynamic: bool) -> bool:
    """True when every input and output starts with the same symbolic batch axis."""
    tensors = entry.inputs + entry.outputs
    firsts = {str(t.shape[0]) if t.shape else "" for t in tensors}
    return dynamic and len(firsts) == 1 and all(t.shape and isinstance(t.shape[0], str) for t in tensors)


def pick_artifact(manifest: Manifest, role: str, platform: str, backends: set[str] | None = None
                  ) -> tuple[Platform, ArtifactEntry]:
    """The platform and the artifact of ``role`` Triton runs.

    ``backends``: the backends the server has (``None``: unknown). ``auto`` takes the first platform of
    :data:`PLATFORMS` the export has an artifact for (TensorRT plans, then ONNX; with known ``backends``, only
    those the server has, the python platform included).
    """
    if platform == "auto":
        candidates = [p for p in PLATFORMS.values() if (p.auto if backends is None else p.backend in backends)]
    else:
        candidates = [PLATFORMS[platform]]
        if backends is not None and PLATFORMS[platform].backend not in backends:
            raise EvitError(f"this Triton server has no {PLATFORMS[platform].backend} backend for --platform "
                            f"{platform} (its backends: {', '.join(sorted(backends)) or 'none'}); choose "
                            f"--platform auto or python")
    for candidate in candidates:
        try:
            return candidate, choose_artifact(manifest, role, candidate.formats)
        except EvitError:
            continue
    shown = ", ".join(f"{p.name}: {'/'.join(p.formats)}" for p in candidates or PLATFORMS.values())
    raise EvitError(f"the export has no {role} artifact for Triton platform '{platform}' (formats each platform "
                    f"loads: {shown})")


def model_filename(platform: Platform, entry: ArtifactEntry) -> str:
    """The graph's file name in the model's version folder."""
    return platform.filename or entry.path.rsplit("/", 1)[-1]


def graph_config(name: str, platform: Platform, entry: ArtifactEntry, manifest: Manifest, instances: int,
                 kind: str, max_queue_delay_us: int, threads: int | None = None) -> dict[str, Any]:
    """The config of one graph model (an artifact of the export run on ``platform``; ``threads``: the runtime's
    intra-op threads, default the export profile's)."""
    batched = _batch_axis(entry, manifest.batch.dynamic)
    max_batch = manifest.batch.max if batched else 0

    def tensor(spec: TensorSpec) -> dict[str, Any]:
        shape = list(spec.shape[1:] if batched else spec.shape)
        return {"name": spec.name, "data_type": _triton_type(spec.dtype), "dims": _dims(shape)}

    config: dict[str, Any] = {
        "name": name, platform.config_key: platform.name, "max_batch_size": max_batch,
        **({"default_model_filename": platform.filename} if platform.filename else {}),  # python: model.py
        "input": [tensor(s) for s in entry.inputs], "output": [tensor(s) for s in entry.outputs],
    }
    if batched:
        preferred = [b for b in (4, 8, 16) if b <= max_batch]
        config["dynamic_batching"] = {**({"preferred_batch_size": preferred} if preferred else {}),
                                      "max_queue_delay_microseconds": max_queue_delay_us}
    config["instance_group"] = [{"count": instances, "kind": Sym(kind)}]
    threads = manifest.runtime.threads if threads is None else threads
    if platform.name == "onnxruntime_onnx" and threads:
        config["parameters"] = [{"key": "intra_op_thread_count", "value": {"string_value": str(threads)}}]
    if platform.name == "openvino":
        config["parameters"] = [{"key": key, "value": {"string_value": value}}
                                for key, value in openvino_parameters(entry, threads).items()]
    return config


def openvino_parameters(entry: ArtifactEntry, threads: int | None) -> dict[str, str]:
    """The Triton OpenVINO backend's parameters for an IR: its ``load_settings`` (OpenVINO does not apply the
    precision an IR carries), in the backend's own names. The backend can ask for bf16 (``HINT_BF16``) but has no
    setting for f32, and OpenVINO runs bf16 unasked on CPUs with AVX512_BF16/AMX: an f32 IR is refused here."""
    load = entry.load_settings
    precision = load.get("INFERENCE_PRECISION_HINT", "f32")
    if precision != "bf16":
        raise EvitError(f"{entry.path} was validated at {precision} inference precision, and Triton's OpenVINO "
                        "backend cannot be told to run f32 (it only has HINT_BF16; OpenVINO runs bf16 unasked on "
                        "CPUs with AVX512_BF16/AMX): use --platform python (our runtime pins the precision) or a "
                        "bf16 export (--precision bf16)")
    out = {"HINT_BF16": "YES", "PERFORMANCE_HINT": load.get("PERFORMANCE_HINT", "LATENCY")}
    if load.get("NUM_STREAMS"):
        out["NUM_STREAMS"] = load["NUM_STREAMS"]
    if threads:
        out["INFERENCE_NUM_THREADS"] = str(threads)
    return out


def pipeline_config(name: str, instances: int, max_queue_delay_us: int) -> dict[str, Any]:
    """The Python-backend pipeline model: IMAGE (encoded bytes) + OPTIONS (JSON) → RESULT (JSON)."""
    return {
        "name": name, "backend": "python", "max_batch_size": PIPELINE_MAX_BATCH,
        "input": [
            {"name": "IMAGE", "data_type": Sym("TYPE_STRING"), "dims": [1]},
            {"name": "OPTIONS", "data_type": Sym("TYPE_STRING"), "dims": [1], "optional": True},
        ],
        "output": [{"name": "RESULT", "data_type": Sym("TYPE_STRING"), "dims": [1]}],
        "dynamic_batching": {"max_queue_delay_microseconds": max_queue_delay_us},
        "instance_group": [{"count": instances, "kind": Sym("KIND_CPU")}],
    }


def instance_kind(manifest: Manifest, platforms: set[Platform], kind: str) -> str:
    """``KIND_CPU``/``KIND_GPU`` for ``kind`` (``auto``: GPU for TensorRT plans or CUDA/TensorRT providers; the
    python platform runs our runtime on the CPU)."""
    if kind != "auto":
        return {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}[kind]
    if any(p.gpu for p in platforms):
        return "KIND_GPU"
    native = any(p.name != "python" for p in platforms)
    return "KIND_GPU" if native and set(manifest.runtime.providers) & GPU_PROVIDERS else "KIND_CPU"


def graph_runner_files(platform: Platform, entry: ArtifactEntry, manifest: Manifest, config: dict[str, Any],
                       threads: int | None) -> dict[str, str]:
    """What a graph model's version folder holds beside the graph (file name → text): for the python platform its
    ``model.py`` and the settings :mod:`evit_deploy.triton.graph_backend` reads (the file, its sha256 and its
    companions', batching, threads, providers); nothing for the other platforms."""
    if platform.name != "python":
        return {}
    filename = model_filename(platform, entry)
    digests = {filename: entry.sha256, **{c.rsplit("/", 1)[-1]: h for c, h in entry.companions.items()}}
    settings = {"file": filename, "format": entry.format, "sha256": digests, "batched": config["max_batch_size"] > 0,
                "outputs": [o.name for o in entry.outputs],
                "threads": manifest.runtime.threads if threads is None else threads,
                "providers": list(manifest.runtime.providers)}
    return {"model.py": model_py(f"graph ({entry.role})", manifest.model, "graph_backend"),
            GRAPH_SETTINGS: json.dumps(settings, indent=2) + "\n"}


def platform_of(entry: ArtifactEntry, name: str | None) -> Platform:
    """The platform a repository's settings name for a graph (``None``, from older repositories: the native
    platform that loads the artifact's format)."""
    if name is not None:
        return PLATFORMS[name]
    return next(p for p in PLATFORMS.values() if p.auto and entry.format in p.formats)
