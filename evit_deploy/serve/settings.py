"""``ServeSettings``: how the HTTP service runs, with every default in one place.

The ``serve`` command's options take their defaults from here, and ``create_app`` and ``runner.serve`` take a
``ServeSettings`` (or keyword overrides of it). Size limits default to :data:`evit_deploy.limits.LIMITS`. This
module needs neither FastAPI nor uvicorn, so the CLI can read the defaults without the ``[serve]`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..limits import LIMITS

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass(frozen=True)
class ServeSettings:
    """Settings of one server. ``create_app`` uses the batching, size and thread settings; the runner all of them."""

    host: str = "127.0.0.1"  # address to bind (0.0.0.0 = all interfaces)
    port: int = 8000  # 0 = any free port
    max_batch: int = 8  # most requests batched into one model run (capped by the export's largest batch)
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for more
    max_bytes: int = LIMITS.max_request_bytes  # largest request body (413 above)
    max_pixels: int = LIMITS.max_image_pixels  # largest decoded image, width x height (413 above)
    max_queue: int = 1024  # prepared requests waiting for the model (503 above)
    threads: int | None = None  # runtime threads (None: the export profile's)
    graceful_timeout: int = 30  # seconds in-flight requests get to finish on SIGTERM/SIGINT
    log_level: str = "info"  # one of LOG_LEVELS
    access_log: bool = False  # log every request
    # a public key / CA certificate file the export's signature must verify with (None: EVIT_DEPLOY_REQUIRE_SIGNATURE)
    require_signature: str | None = None


def settings_with(settings: ServeSettings | None, **overrides: object) -> ServeSettings:
    """``settings`` (default: the defaults) with some fields changed; an unknown field name is a TypeError."""
    return replace(settings or ServeSettings(), **overrides)


SERVE_DEFAULTS = ServeSettings()
DEFAULT_MAX_BYTES = SERVE_DEFAULTS.max_bytes
DEFAULT_MAX_PIXELS = SERVE_DEFAULTS.max_pixels
