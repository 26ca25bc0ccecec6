"""Run the app with uvicorn: bind first (so a busy port is a one-line error), drain gracefully on SIGTERM/SIGINT.

On a stop signal uvicorn stops accepting connections, lets in-flight requests finish (up to
``ServeSettings.graceful_timeout`` seconds), then the app's shutdown drains the batcher and the process exits with
status 0. ``/ready`` answers 503 from the moment the signal arrives. A second SIGINT forces an immediate exit.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from ..host import torch_threads
from ..optional import require
from ..ports import bind
from .app import ServiceState, create_app
from .settings import ServeSettings, settings_with


def serve(export_dir: str | Path, settings: ServeSettings | None = None, **overrides: Any) -> None:
    """Serve an export folder until SIGTERM/SIGINT; prints ``serving MODEL (TASK) on http://HOST:PORT``.

    ``settings`` (default :class:`ServeSettings`'s defaults) and keyword ``overrides`` of its fields say how.
    """
    settings = settings_with(settings, **overrides)

    uvicorn = require("uvicorn", "serving")
    # Pre/post-processing tensors are small and run in many request threads at once: intra-op threads would only
    # contend with each other and with the runtime backend's own threads, which run the graph.
    with torch_threads(1):
        _serve(export_dir, settings, uvicorn)


def _serve(export_dir: str | Path, settings: ServeSettings, uvicorn: Any) -> None:
    sock = bind(settings.host, settings.port)  # fail fast on a busy port, before loading the model
    try:
        app = create_app(export_dir, settings)
    except BaseException:
        sock.close()
        raise
    state: ServiceState = app.state.service
    actual_host, actual_port = sock.getsockname()[:2]

    class GracefulServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            state.draining = True  # /ready → 503 at once, while in-flight requests finish
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                # Drained cleanly: exit with status 0 instead of re-raising the stop signal afterwards.
                getattr(self, "_captured_signals", []).clear()

    config = uvicorn.Config(app, log_level=settings.log_level, access_log=settings.access_log,
                            timeout_graceful_shutdown=settings.graceful_timeout, lifespan="on", timeout_keep_alive=30)
    server = GracefulServer(config)
    shown = f"[{actual_host}]" if ":" in actual_host else actual_host
    print(f"serving {state.predictor.model} ({state.predictor.task}) on http://{shown}:{actual_port}", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        sys.exit(1)
