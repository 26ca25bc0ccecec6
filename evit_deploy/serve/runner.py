"""Run the app with uvicorn: bind first (so a busy port is a one-line error), drain gracefully on SIGTERM/SIGINT.

On a stop signal uvicorn stops accepting connections, lets in-flight requests finish (up to ``graceful_s``
seconds), then the app's shutdown drains the batcher and the process exits with status 0. ``/ready`` answers 503
from the moment the signal arrives. A second SIGINT forces an immediate exit.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from ..errors import EvitError
from ..predict.predictor import DEFAULT_MAX_PIXELS
from .app import DEFAULT_MAX_BYTES, ServiceState, create_app


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError:
        raise EvitError("serving needs the [serve] extra: pip install 'evit-deploy[serve]'") from None
    return uvicorn


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0 = any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise EvitError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(export_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 8,
          max_wait_ms: float = 5.0, max_bytes: int = DEFAULT_MAX_BYTES, threads: int | None = None,
          graceful_s: int = 30, log_level: str = "info", access_log: bool = False,
          max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Serve an export folder until SIGTERM/SIGINT; prints ``serving MODEL (TASK) on http://HOST:PORT``."""
    import torch

    uvicorn = _uvicorn()
    # Pre/post-processing tensors are small and run in many request threads at once: intra-op threads would only
    # contend with each other and with the runtime's own threads (the graph runs in ONNX Runtime).
    torch.set_num_threads(1)
    sock = bind(host, port)  # fail fast on a busy port, before loading the model
    try:
        app = create_app(export_dir, max_batch, max_wait_ms, max_bytes, threads=threads, max_pixels=max_pixels)
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

    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=graceful_s,
                            lifespan="on", timeout_keep_alive=30)
    server = GracefulServer(config)
    shown = f"[{actual_host}]" if ":" in actual_host else actual_host
    print(f"serving {state.predictor.model} ({state.predictor.task}) on http://{shown}:{actual_port}", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        sys.exit(1)
