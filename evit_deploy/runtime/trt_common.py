"""What building and running TensorRT engines share (as Polygraphy's ``backend/trt/util.py``): importing
TensorRT, its logger, version parsing, whether this host can use it, and the check that refuses an engine
built for another GPU or TensorRT version (from its sidecar, :mod:`evit_deploy.runtime.sidecar`)."""

from __future__ import annotations

import re
import warnings
from typing import Any

from ..errors import EvitError, one_line
from ..host import cuda_problem


def import_tensorrt(purpose: str) -> Any:
    """``import tensorrt``, or a one-line EvitError saying that ``purpose`` needs it."""
    try:
        import tensorrt
    except Exception as exc:  # ImportError, or a broken install (missing libnvinfer, CUDA)
        detail = one_line(exc, 200) or type(exc).__name__
        raise EvitError(f"{purpose} needs TensorRT (import tensorrt failed: {detail}); install it where an NVIDIA "
                        "GPU is (pip install tensorrt, or JetPack on Jetson)") from None
    return tensorrt


def tensorrt_problem() -> str | None:
    """Why this host cannot build and run TensorRT engines here (None = it can)."""
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or a broken install
        detail = one_line(exc, 160) or type(exc).__name__
        return f"TensorRT is not installed on this host (import tensorrt failed: {detail})"
    problem = cuda_problem()
    if problem is not None:
        return (f"TensorRT {trt.__version__} is installed but {problem} (the engine is validated through torch CUDA "
                "buffers)")
    return None


def make_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` that keeps TensorRT's ERROR messages in ``errors`` (for one-line messages) and turns its
    warnings into Python warnings."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(one_line(msg, 10_000))
            elif int(severity) == int(trt.ILogger.Severity.WARNING):
                warnings.warn(f"TensorRT: {msg}", stacklevel=2)

    return Logger()


def version_tuple(version: str) -> tuple[int, ...]:
    """``"10.3.0.30"`` → ``(10, 3, 0, 30)`` (non-numeric parts dropped)."""
    return tuple(int(p) for p in re.findall(r"\d+", str(version)))


def _norm(name: str | None) -> str:
    return " ".join(str(name or "").lower().split())


def check_compatibility(sidecar: dict[str, Any], facts: dict[str, Any]) -> str | None:
    """Why an engine described by ``sidecar`` cannot run here (None = it can).

    ``facts``: this host's ``tensorrt_version``, ``gpu_name`` and ``compute_capability``
    (:func:`evit_deploy.host.gpu_facts`; None = unknown, not compared). An engine only deserializes in the
    TensorRT version that built it, and its kernels are chosen for one GPU model.
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
