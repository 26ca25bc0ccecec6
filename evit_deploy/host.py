"""Facts about this machine, in one place: CPU model and instruction-set flags, cores, load, GPU, and the versions
of the libraries that decide what an artifact does (every report and export manifest records them)."""

from __future__ import annotations

import os
import platform
import sys
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
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
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


def gpu_name() -> str | None:
    """The first CUDA GPU's name, when torch sees one (torch is imported only when already loaded)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - a broken CUDA install is "no GPU" for a report
        return None


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
