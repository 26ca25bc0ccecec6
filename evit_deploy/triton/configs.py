"""The configs (``config.pbtxt`` contents, as dicts) of the models :mod:`evit_deploy.triton` lays out: a graph
model per artifact (platform, batching, tensors, instances) and the Python-backend pipeline model, whose settings
file (``PIPELINE_SETTINGS``) tells :mod:`evit_deploy.triton.backend` which graph models to call.
"""

from __future__ import annotations

from typing import Any

from ..artifacts import ArtifactEntry, Manifest, TensorSpec, choose_artifact
from ..errors import EvitError
from .pbtxt import Sym

TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16", "float64": "TYPE_FP64",
                "int64": "TYPE_INT64", "int32": "TYPE_INT32", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8",
                "bool": "TYPE_BOOL"}
# artifact format → (Triton platform, default model file name); preferred formats first
PLATFORMS = {"trt-engine": ("tensorrt_plan", "model.plan"), "onnx": ("onnxruntime_onnx", "model.onnx")}
GPU_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
PIPELINE_MAX_BATCH = 16
PIPELINE_SETTINGS = "pipeline.json"  # in the pipeline model's version folder, read by the backend


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


def pick_artifact(manifest: Manifest, role: str, platform: str) -> ArtifactEntry:
    """The artifact of ``role`` that Triton runs on ``platform`` (``auto``: TensorRT plans first, then ONNX)."""
    formats = tuple(f for f, (p, _) in PLATFORMS.items() if platform in ("auto", p))
    try:
        return choose_artifact(manifest, role, formats)
    except EvitError:
        raise EvitError(f"the export has no {role} artifact for Triton platform '{platform}' "
                        f"(formats Triton can load: {', '.join(PLATFORMS)})") from None


def graph_config(name: str, entry: ArtifactEntry, manifest: Manifest, instances: int, kind: str,
                 max_queue_delay_us: int) -> dict[str, Any]:
    """The config of one graph model (an artifact of the export)."""
    platform, filename = PLATFORMS[entry.format]
    batched = _batch_axis(entry, manifest.batch.dynamic)
    max_batch = manifest.batch.max if batched else 0

    def tensor(spec: TensorSpec) -> dict[str, Any]:
        shape = list(spec.shape[1:] if batched else spec.shape)
        return {"name": spec.name, "data_type": _triton_type(spec.dtype), "dims": _dims(shape)}

    config: dict[str, Any] = {
        "name": name, "platform": platform, "max_batch_size": max_batch, "default_model_filename": filename,
        "input": [tensor(s) for s in entry.inputs], "output": [tensor(s) for s in entry.outputs],
    }
    if batched:
        preferred = [b for b in (4, 8, 16) if b <= max_batch]
        config["dynamic_batching"] = {**({"preferred_batch_size": preferred} if preferred else {}),
                                      "max_queue_delay_microseconds": max_queue_delay_us}
    config["instance_group"] = [{"count": instances, "kind": Sym(kind)}]
    threads = manifest.runtime.threads
    if platform == "onnxruntime_onnx" and threads:
        config["parameters"] = [{"key": "intra_op_thread_count", "value": {"string_value": str(threads)}}]
    return config


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


def instance_kind(manifest: Manifest, platforms: set[str], kind: str) -> str:
    """``KIND_CPU``/``KIND_GPU`` for ``kind`` (``auto``: GPU for TensorRT plans or CUDA/TensorRT providers)."""
    if kind != "auto":
        return {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}[kind]
    providers = set(manifest.runtime.providers)
    return "KIND_GPU" if "tensorrt_plan" in platforms or providers & GPU_PROVIDERS else "KIND_CPU"
