"""Facts about this machine, in one place: CPU model and instruction-set flags, cores, load, CUDA GPU, and the
versions of the libraries that decide what an artifact does (every report and export manifest records them).

Every CUDA check (:func:`cuda_problem`, :func:`cuda_available`), GPU fact (:func:`gpu_facts`, :func:`gpu_name`) and
installed-library version (:func:`library_version`) of the package is read here.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__

# The libraries whose versions go into export manifests and reports.
LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxsim", "onnxscript", "numpy", "litert-torch", "ai-edge-litert",
             "ai-edge-quantizer", "tensorrt", "openvino", "nncf")
# The CPU flags that decide which kernels a runtime picks (shown in reports; the full list is recorded).
KEY_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile",
             "asimd", "asimddp", "sve", "i8mm", "bf16")


def library_version(dist: str) -> str | None:
    """The installed version of the distribution ``dist`` (its pip name), None when it is not installed."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str]:
    """evit-deploy, Python and each installed library of :data:`LIBRARIES`."""
    found = {"evit-deploy": __version__, "python": platform.python_version()}
    for dist in LIBRARIES:
        if (version := library_version(dist)) is not None:
            found[dist] = version
    return found


@cache
def _cpuinfo() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key and key not in fields:  # the first processor's entry
                fields[key] = value.strip()
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The CPU's instruction-set flags (``flags`` on x86, ``Features`` on Arm), sorted."""
    info = _cpuinfo()
    return sorted((info.get("flags") or info.get("Features") or "").split())


def cores() -> int:
    """CPUs this process may run on (its affinity), else all of the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def rss_mb() -> float | None:
    """This process's resident memory now, MiB (Linux /proc; None elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def peak_rss_mb() -> float | None:
    """This process's largest resident memory so far, MiB (None where the OS does not say)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 1024), 1)  # bytes on macOS, KiB on Linux


def cuda_problem() -> str | None:
    """Why PyTorch cannot run on a CUDA GPU here (None = it can). Imports torch."""
    try:
        import torch

        if torch.cuda.is_available():
            return None
        return f"PyTorch (torch {torch.__version__}) sees no CUDA GPU"
    except Exception as exc:  # noqa: BLE001 - a broken CUDA setup is "no GPU", with its reason
        return f"no usable CUDA GPU ({type(exc).__name__}: {exc})"


def cuda_available() -> bool:
    """Whether PyTorch sees a usable CUDA GPU (imports torch)."""
    return cuda_problem() is None


def _torch_gpu(torch: Any, device: int | None) -> dict[str, Any] | None:
    """Name and compute capability of CUDA device ``device`` (None = the current one) as PyTorch sees it."""
    try:
        if torch.cuda.is_available():
            index = torch.cuda.current_device() if device is None else device
            major, minor = torch.cuda.get_device_capability(index)
            return {"gpu_name": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}"}
    except Exception:  # noqa: BLE001 - a broken CUDA setup: unknown
        pass
    return None


def _nvidia_smi_gpu(device: int) -> dict[str, Any]:
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
    """What a GPU engine is built for, with one set of keys for every sidecar: ``gpu_name`` and
    ``compute_capability`` of CUDA device ``device`` (None = PyTorch's current device) from PyTorch, else
    nvidia-smi (None when unknown); with ``trt`` (the tensorrt module) ``tensorrt_version`` first;
    ``torch_versions`` adds ``torch`` and ``cuda``. Imports torch."""
    import torch

    facts: dict[str, Any] = {"tensorrt_version": trt.__version__} if trt is not None else {}
    facts.update(_torch_gpu(torch, device) or _nvidia_smi_gpu(device or 0))
    if torch_versions:
        facts.update(torch=torch.__version__, cuda=str(torch.version.cuda))
    return facts


def gpu_name() -> str | None:
    """The current CUDA GPU's name, when torch sees one (for reports: torch is consulted only when already
    imported, so asking never loads it)."""
    torch = sys.modules.get("torch")
    facts = _torch_gpu(torch, None) if torch is not None else None
    return facts["gpu_name"] if facts else None


def machine_facts(threads: int | None = None) -> dict[str, Any]:
    """What a report says of the machine it ran on (``threads``: the threads each backend was given)."""
    flags = cpu_flags()
    gpu = gpu_name()
    facts = {
        "cpu": cpu_model(),
        "cpu_flags": [f for f in KEY_FLAGS if f in flags],
        "cores": cores(),
        "threads": threads,
        "platform": platform.platform(),
        "load_average": load_average(),
    }
    if gpu:
        facts["gpu"] = gpu
    facts["label"] = gpu or f"{facts['cpu']}, {threads or facts['cores']} threads"
    return facts


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` inside the block (None or 0, "the default": untouched), restored
    after: a library call never leaves the process's torch thread count changed."""
    if not count:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
