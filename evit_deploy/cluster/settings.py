"""``RaySettings``: how evit-deploy uses a Ray cluster (Serve replicas, Ray Data actors), every default in one place.

The ``serve --engine ray`` and ``predict --engine ray`` options take their defaults from here. This module does
not import Ray, so the CLI can read the defaults without the ``[ray]`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..artifacts import FORMATS, Manifest

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


@dataclass(frozen=True)
class RaySettings:
    """Settings of a Serve application or a Ray Data job. ``None`` means "work it out" (see each field)."""

    address: str | None = None  # join this cluster (e.g. ray://head:10001, head:6379); None: start a local one
    num_cpus: int | None = None  # CPUs of the local cluster we start (None: all of this machine's)
    app_name: str = "evit-deploy"  # the Serve application's name (deleted again when the command stops)
    replicas: int | None = 1  # Serve replicas; None = autoscaling between min_replicas and max_replicas
    min_replicas: int = 1
    max_replicas: int = 4
    target_ongoing_requests: float | None = None  # autoscaling target per replica (None: the batch size)
    cpus_per_worker: float | None = None  # CPUs reserved per replica/actor (None: its runtime threads)
    gpus_per_worker: float | None = None  # GPUs per replica/actor (None: 1 when the export runs on a GPU, else 0)
    concurrency: int | None = None  # Ray Data predictor actors (None: 1 up to as many as the cluster's CPUs hold)


def ray_settings_with(settings: RaySettings | None, **overrides: object) -> RaySettings:
    """``settings`` (default: the defaults) with some fields changed; an unknown field name is a TypeError."""
    return replace(settings or RaySettings(), **overrides)


RAY_DEFAULTS = RaySettings()


@dataclass(frozen=True)
class WorkerResources:
    """What one replica or actor reserves from Ray and how many threads its runtime uses."""

    num_cpus: float
    num_gpus: float
    threads: int

    def actor_options(self) -> dict[str, float]:
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}


def needs_gpu(manifest: Manifest) -> bool:
    """True when the export's artifacts run on a GPU (TensorRT engines, compiled programs, GPU providers)."""
    runnable = [a for a in manifest.artifacts if a.runnable]
    return any(FORMATS[a.format].gpu for a in runnable) or any(p in GPU_PROVIDERS for p in manifest.runtime.providers)


def worker_resources(manifest: Manifest | None, threads: int | None, settings: RaySettings) -> WorkerResources:
    """Threads: ``threads`` when given (> 0), else the export profile's, else 1 (a profile that leaves it to the
    runtime would take every core in each worker). CPUs: ``cpus_per_worker``, else the threads. GPUs:
    ``gpus_per_worker``, else 1 for an export that runs on a GPU. ``manifest`` None: a PyTorch zoo model (CPU)."""
    n = threads or (manifest.runtime.threads if manifest is not None else 0) or 1
    gpu = manifest is not None and needs_gpu(manifest)
    cpus = settings.cpus_per_worker if settings.cpus_per_worker is not None else float(n)
    gpus = settings.gpus_per_worker if settings.gpus_per_worker is not None else float(gpu)
    return WorkerResources(cpus, gpus, n)
