"""Runtime backends: ``load(path)`` opens an artifact (or an export folder) for inference.

Backends register by artifact suffix (``.onnx``/``.ort`` → ONNX Runtime); later targets add TFLite, TensorRT
and PyTorch backends the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import EvitError
from .base import BACKENDS, Backend, TensorSpec, register_backend

_BACKEND_MODULES = ("evit_deploy.runtime.onnxruntime_backend", "evit_deploy.runtime.litert_backend",
                    "evit_deploy.runtime.compiled_backend", "evit_deploy.runtime.tensorrt_backend")


def _ensure_registered() -> None:
    import importlib

    for module in _BACKEND_MODULES:
        importlib.import_module(module)


def _artifact_from_export(folder: Path, role: str | None) -> tuple[Path, dict]:
    manifest_path = folder / "export.json"
    if not manifest_path.is_file():
        raise EvitError(f"{folder} is not an export folder (no export.json)")
    try:
        manifest = json.loads(manifest_path.read_text())
        artifacts = manifest["artifacts"]
    except (ValueError, KeyError, TypeError) as exc:
        raise EvitError(f"{manifest_path} is not a valid export manifest ({exc})") from None
    roles = [a["role"] for a in artifacts]
    wanted = role or ("model" if "model" in roles else roles[0])
    matches = [a for a in artifacts if a["role"] == wanted and Path(a["path"]).suffix in BACKENDS]
    if not matches:
        raise EvitError(f"{folder} has no runnable artifact with role '{wanted}' (roles: {', '.join(roles)})")
    artifact = matches[-1]  # the last format of the chain is the deployable one (e.g. .ort after .onnx)
    return folder / artifact["path"], manifest.get("profile", {}).get("runtime", {})


def load(path: str | Path, role: str | None = None, threads: int | None = None, shared_cpu: bool = False) -> Backend:
    """Open an artifact file or an export folder (``role`` picks ``model``/``encoder``/``decoder``).

    ``shared_cpu``: other work shares the cores, so idle worker threads must not spin (see :class:`Backend`).
    """
    _ensure_registered()
    path = Path(path)
    settings: dict = {}
    if path.is_dir():
        path, settings = _artifact_from_export(path, role)
    if not path.exists():
        raise EvitError(f"not found: {path}")
    backend = BACKENDS.get(path.suffix)
    if backend is None:
        raise EvitError(f"no runtime backend for '{path.suffix}' files (known: {', '.join(sorted(BACKENDS))})")
    kwargs = {"threads": threads if threads is not None else settings.get("threads", 0), "shared_cpu": shared_cpu}
    if settings.get("providers"):
        kwargs["providers"] = settings["providers"]
    return backend(path, **kwargs)


__all__ = ["BACKENDS", "Backend", "TensorSpec", "load", "register_backend"]
