"""``evit-deploy serve --engine ray``: the FastAPI app of :mod:`evit_deploy.serve.app` as a Ray Serve application.

Each replica loads the export and builds the very app the one-machine server runs (same routes, payload parsing,
errors, metrics), with Ray Serve's ``@serve.batch`` as its batcher in place of :class:`DynamicBatcher`. Ray Serve
routes requests to the replicas, restarts a replica that dies and, with ``replicas=None``, scales their number
with the ongoing requests. Needs the ``[ray]`` and ``[serve]`` extras.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from ..optional import require

require("ray.serve", "serve --engine ray")  # before the imports below: a one-line error naming [ray]

from ray import serve

from ..artifacts import read_manifest
from ..errors import EvitError
from ..ports import bind, free_port
from ..predict import Prepared
from ..serve.app import create_app
from ..serve.batcher import run_isolated
from ..serve.metrics import Metrics
from ..serve.settings import ServeSettings, settings_with
from ..signing import resolve_trust
from .session import check_fits, connected, failure_reason
from .settings import RaySettings, WorkerResources, ray_settings_with, worker_resources


class ServeBatcher:
    """The app's batcher on a replica: Ray Serve's ``@serve.batch`` groups concurrent requests (up to
    ``max_batch``, waiting ``max_wait_ms``); one model run at a time, in a worker thread; a failing batch is
    retried item by item like :class:`DynamicBatcher` does."""

    def __init__(self, run_batch: Callable[[list[Prepared]], list[Any]], max_batch: int, max_wait_ms: float,
                 metrics: Metrics) -> None:
        async def run(items: list[Prepared]) -> list[Any]:
            return await asyncio.to_thread(run_isolated, run_batch, items, metrics.observe_batch)

        self._batched = serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=max_wait_ms / 1000.0)(run)

    async def start(self) -> None:
        """Nothing to start: the batch queue is made on the replica's event loop at the first request."""

    async def submit(self, item: Prepared) -> Any:
        outcome = await self._batched(item)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def close(self) -> None:
        """Nothing to drain: Ray Serve lets a stopping replica finish its requests first."""


@serve.ingress()
class PredictorReplica:
    """One replica: the export's Predictor inside the server's FastAPI app (built by ``__serve_build_asgi_app__``)."""

    def __init__(self, export_dir: str, settings: ServeSettings) -> None:
        import torch

        torch.set_num_threads(1)  # as in the one-machine server: pre/post-processing runs in many request threads
        self._app = create_app(export_dir, settings, make_batcher=ServeBatcher)

    def __serve_build_asgi_app__(self) -> Any:
        return self._app


@dataclass(frozen=True)
class ServeApp:
    """A Serve application ready for ``serve.run``, and what it will run."""

    application: Any
    model: str
    task: str
    replicas: str  # "2 replicas, 1 CPU each" / "1 to 4 replicas (autoscaling, ...), ..."
    resources: WorkerResources  # of one replica
    fewest: int  # replicas at the start


def build_application(export_dir: str | Path, settings: ServeSettings | None = None,
                      ray_settings: RaySettings | None = None) -> ServeApp:
    """The Serve application for an export folder: replicas, resources per replica from the export's target
    (``worker_resources``), batching and graceful shutdown from ``settings``."""
    settings = settings_with(settings)
    rs = ray_settings_with(ray_settings)
    folder = Path(export_dir).resolve()  # replicas do not run in this process's folder
    # A required signature is checked here, and again by every replica (the trust file travels in its settings,
    # so replicas on nodes without the environment variable check it too).
    trust = resolve_trust(settings.require_signature)
    manifest = read_manifest(folder.parent if folder.is_file() else folder, verify=False,
                             require_signature=trust or False)
    res = worker_resources(manifest, settings.threads, rs)
    batch = max(1, min(settings.max_batch, manifest.batch.largest))
    options: dict[str, Any] = {
        "ray_actor_options": res.actor_options(),
        "max_ongoing_requests": 2 * batch,  # one batch running, the next one filling
        "max_queued_requests": settings.max_queue,  # beyond: 503 from Ray Serve
        "graceful_shutdown_timeout_s": float(settings.graceful_timeout),
        "graceful_shutdown_wait_loop_s": 0.5,
    }
    if rs.replicas is None:
        if not 1 <= rs.min_replicas <= rs.max_replicas:
            raise EvitError(f"autoscaling needs 1 <= min replicas ({rs.min_replicas}) <= max replicas "
                            f"({rs.max_replicas})")
        target = rs.target_ongoing_requests or float(batch)
        options["autoscaling_config"] = {"min_replicas": rs.min_replicas, "max_replicas": rs.max_replicas,
                                         "initial_replicas": rs.min_replicas, "target_ongoing_requests": target}
        shown = f"{rs.min_replicas} to {rs.max_replicas} replicas (autoscaling, target {target:g} ongoing)"
    else:
        if rs.replicas < 1:
            raise EvitError(f"replicas must be >= 1 or auto, got {rs.replicas}")
        options["num_replicas"] = rs.replicas
        shown = f"{rs.replicas} replica{'s' if rs.replicas > 1 else ''}"
    shown += f", {res.num_cpus:g} CPU{'s' if res.num_cpus != 1 else ''}"
    shown += f" + {res.num_gpus:g} GPU each" if res.num_gpus else " each"
    replica_settings = settings_with(settings, threads=res.threads,
                                     require_signature=str(trust.path) if trust else None)
    deployment = serve.deployment(PredictorReplica, name="predictor", **options)
    return ServeApp(deployment.bind(str(folder), replica_settings), manifest.model, manifest.task, shown, res,
                    rs.min_replicas if rs.replicas is None else rs.replicas)


def _deploy(app: ServeApp, name: str) -> None:
    """``serve.run``, with a replica's own error (e.g. a corrupt artifact) as a one-line EvitError."""
    try:
        serve.run(app.application, name=name, route_prefix="/", blocking=False)
    except RuntimeError as exc:
        detail = str(exc)
        with contextlib.suppress(Exception):
            detail = "\n".join(d.message for d in serve.status().applications[name].deployments.values()) or detail
        raise EvitError(f"the Serve application did not start: {failure_reason(detail)}") from None


def _wait_for_stop() -> None:
    """Block until SIGTERM or SIGINT (a second one exits at once)."""
    stop = threading.Event()

    def handle(sig: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def serve_on_ray(export_dir: str | Path, settings: ServeSettings | None = None,
                 ray_settings: RaySettings | None = None) -> None:
    """Run the Serve application until SIGTERM/SIGINT; prints ``serving MODEL (TASK) on http://HOST:PORT``.

    Without ``ray_settings.address`` a one-node cluster is started here and stopped at the end; with it the
    application is deployed to that cluster and deleted again at the end (in-flight requests finish first, up
    to ``settings.graceful_timeout`` seconds).
    """
    settings = settings_with(settings)
    rs = ray_settings_with(ray_settings)
    app = build_application(export_dir, settings, rs)  # a bad export folder fails before any cluster starts
    port = free_port(settings.host) if settings.port == 0 else settings.port  # 0: a free port here
    if not rs.address:  # a busy port is a one-line error before the local cluster starts
        bind(settings.host, port).close()
    with connected(rs, "serving on Ray") as owned:
        if owned:
            check_fits("replica", app.fewest, app.resources, "--replicas/--min-replicas")
        serve.start(http_options={"host": settings.host, "port": port})
        try:
            _deploy(app, rs.app_name)
            shown = f"[{settings.host}]" if ":" in settings.host else settings.host
            print(f"serving {app.model} ({app.task}) on http://{shown}:{port} with Ray Serve, {app.replicas}",
                  flush=True)
            _wait_for_stop()
            print("stopping: in-flight requests finish first", flush=True)
        finally:
            serve.delete(rs.app_name)
            if owned:
                serve.shutdown()
