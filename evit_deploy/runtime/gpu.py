"""What a GPU engine is built for: this host's GPU (name, compute capability) and, on request, the library
versions an engine is tied to. One set of keys for every sidecar: ``gpu_name``, ``compute_capability``,
``tensorrt_version``, ``torch``, ``cuda``."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any


def _from_torch(device: int | None) -> dict[str, Any] | None:
    try:
        import torch

        if torch.cuda.is_available():
            index = torch.cuda.current_device() if device is None else device
            major, minor = torch.cuda.get_device_capability(index)
            return {"gpu_name": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}"}
    except Exception:  # noqa: BLE001 - a broken CUDA setup: fall through to nvidia-smi
        pass
    return None


def _from_nvidia_smi(device: int) -> dict[str, Any]:
    facts: dict[str, Any] = {"gpu_name": None, "compute_capability": None}
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20, check=True).stdout.splitlines()
            name, cc = (v.strip() for v in out[device].split(",")[:2])
            facts = {"gpu_name": name, "compute_capability": cc}
        except (subprocess.SubprocessError, OSError, IndexError, ValueError):
            pass
    return facts


def gpu_facts(device: int | None = None, *, trt: Any = None, torch_versions: bool = False) -> dict[str, Any]:
    """This host's facts for CUDA device ``device`` (None = PyTorch's current device).

    ``gpu_name`` and ``compute_capability`` come from PyTorch, else nvidia-smi (None when unknown); with ``trt``
    (the tensorrt module) ``tensorrt_version`` comes first; ``torch_versions`` adds ``torch`` and ``cuda``.
    """
    facts: dict[str, Any] = {"tensorrt_version": trt.__version__} if trt is not None else {}
    facts.update(_from_torch(device) or _from_nvidia_smi(device or 0))
    if torch_versions:
        import torch

        facts.update(torch=torch.__version__, cuda=str(torch.version.cuda))
    return facts
