"""The HTTP service: ``create_app(export_dir, settings)`` → a FastAPI app around one :class:`Predictor`.

Routes: ``POST /v1/predict`` (payloads: see ``payloads``), ``GET /v1/model``, ``/health``, ``/ready``, ``/metrics``,
``/docs``. Every payload is checked: the size limit before anything is decoded, then the JSON schema, the image
decode and pixel count, and the task's options (SAM prompt shapes). Bad payloads get a 4xx JSON error
``{"error": "...", "status": N}``; the server keeps serving. Concurrent requests are batched: by
:class:`DynamicBatcher` here, or by whatever ``make_batcher`` returns (Ray Serve's ``@serve.batch`` in
``evit_deploy.cluster.serving``), so every server engine answers with these same routes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..optional import require

require("fastapi", "the HTTP server")  # before the imports below: a one-line error naming [serve]

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import EvitError
from ..images import open_image
from ..predict import ImageError, ImageTooLarge, NonFiniteOutput, OptionError, Predictor, Prepared
from .batcher import DynamicBatcher, Overloaded
from .metrics import Metrics
from .payloads import ERROR_RESPONSES, OPENAPI_BODY, ApiError, ErrorBody, parse_payload, read_body
from .settings import ServeSettings, settings_with

log = logging.getLogger("evit_deploy.serve")

ENDPOINTS = ("/v1/predict", "/v1/model", "/health", "/ready", "/metrics", "/docs", "/openapi.json")


class Batcher(Protocol):
    """Groups concurrent requests into model runs: ``await submit(item)`` → that item's raw output."""

    async def start(self) -> None: ...

    async def submit(self, item: Prepared) -> Any: ...

    async def close(self) -> None: ...


# (run_batch, max_batch, max_wait_ms, metrics) → a Batcher; run_batch runs the model on a list of prepared items
BatcherFactory = Callable[[Callable[[list[Prepared]], list[Any]], int, float, Metrics], Batcher]


@dataclass
class ServiceState:
    predictor: Predictor
    batcher: Batcher
    metrics: Metrics
    settings: ServeSettings
    ready: bool = False
    draining: bool = False
    started: float = field(default_factory=time.time)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


class _MetricsMiddleware:
    """Counts every HTTP request (endpoint, method, status), errors by reason, and the latency."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
            m = self.metrics
            m.requests.labels(endpoint, scope.get("method", ""), str(status)).inc()
            m.latency.labels(endpoint).observe(time.perf_counter() - started)
            if status >= 400:
                reason = scope.get("state", {}).get("error_reason", "http")
                m.errors.labels(endpoint, str(status), reason).inc()


def create_app(export_dir: str | Path | None = None, settings: ServeSettings | None = None, *,
               predictor: Predictor | None = None, make_batcher: BatcherFactory | None = None,
               **overrides: Any) -> FastAPI:
    """A FastAPI app serving an export folder (or a ready ``predictor``); the model loads here, at once.

    ``settings`` (default :class:`ServeSettings`'s defaults) and keyword ``overrides`` of its fields
    (``max_batch=4``, ``max_pixels=...``) set the batching, the size limits and the runtime threads.
    ``make_batcher`` (default: a :class:`DynamicBatcher` with ``settings.max_queue``) groups the requests.
    """
    settings = settings_with(settings, **overrides)
    max_batch, max_wait_ms = settings.max_batch, settings.max_wait_ms
    if predictor is None:
        if export_dir is None:
            raise EvitError("create_app needs an export folder or a predictor")
        predictor = Predictor.from_export(export_dir, threads=settings.threads,
                                          require_signature=settings.require_signature)
    if settings.max_bytes < 1 or settings.max_pixels < 1:
        raise EvitError("max_bytes and max_pixels must be positive")
    metrics = Metrics(predictor.model, predictor.task)
    effective_batch = max(1, min(max_batch, predictor.max_batch))

    def run_batch(items: list[Prepared]) -> list[Any]:
        return predictor.infer(items)

    def dynamic_batcher(run: Callable[[list[Prepared]], list[Any]], size: int, wait_ms: float,
                        m: Metrics) -> DynamicBatcher:
        return DynamicBatcher(run, size, wait_ms, settings.max_queue, on_batch=m.observe_batch,
                              on_queue=m.queue_depth.set)

    batcher = (make_batcher or dynamic_batcher)(run_batch, effective_batch, max_wait_ms, metrics)
    state = ServiceState(predictor, batcher, metrics, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        await run_in_threadpool(predictor.warm_up)
        state.ready = True
        log.info("serving %s (%s), max batch %d, max wait %.1f ms", predictor.model, predictor.task,
                 effective_batch, max_wait_ms)
        try:
            yield
        finally:
            state.ready, state.draining = False, True
            await batcher.close()  # in-flight requests were drained by the server; finish anything queued

    app = FastAPI(title="evit-deploy inference", version=__version__, lifespan=lifespan,
                  description=f"EfficientViT inference: {predictor.model} ({predictor.task}), "
                              f"input {predictor.input_size[0]}x{predictor.input_size[1]}.")
    app.state.service = state
    app.add_middleware(_MetricsMiddleware, metrics=metrics)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        request.state.error_reason = exc.reason
        return _error(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        request.state.error_reason = "bad_options"
        return _error(422, f"invalid request: {exc.errors()[0].get('msg', '')}" if exc.errors() else "invalid")

    @app.get("/health", summary="Liveness: the process is up")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": predictor.model, "uptime_s": round(time.time() - state.started, 1)}

    @app.get("/ready", summary="Readiness: the model is loaded and the server takes requests",
             responses={503: {"model": ErrorBody}})
    async def ready() -> Response:
        if state.ready and not state.draining:
            return JSONResponse({"status": "ready", "model": predictor.model, "task": predictor.task})
        return _error(503, "draining" if state.draining else "loading")

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/v1/model", summary="The served model and the server's limits")
    async def model_info() -> dict[str, Any]:
        return {"model": predictor.model, "task": predictor.task, "input_size": list(predictor.input_size),
                "num_classes": len(predictor.class_names), "options": sorted(predictor.options),
                "max_batch": effective_batch, "max_wait_ms": max_wait_ms, "max_bytes": settings.max_bytes,
                "max_pixels": settings.max_pixels, "source": predictor.source}

    @app.post("/v1/predict", summary="Predict on one image", openapi_extra=OPENAPI_BODY, responses=ERROR_RESPONSES)
    async def predict(request: Request) -> JSONResponse:
        """Classification → top-k labels; segmentation → classes and the label map (base64 PNG, original
        size); SAM → masks (row-major RLE) for the prompt, with scores."""
        metrics.in_flight.inc()
        try:
            body = await read_body(request, settings.max_bytes)
            data, options = await parse_payload(request, body)
            if len(data) > settings.max_bytes:
                raise ApiError(413, f"image is {len(data)} bytes; the limit is {settings.max_bytes}", "too_large")
            prepared = await run_in_threadpool(_prepare, predictor, data, options, settings.max_pixels)
            try:
                raw = await batcher.submit(prepared)
            except Overloaded as exc:
                raise ApiError(503, str(exc), "overloaded") from None
            except Exception as exc:  # noqa: BLE001 - a model failure: 500, and keep serving
                log.exception("inference failed")
                raise ApiError(500, f"inference failed ({type(exc).__name__})", "inference") from None
            result = await run_in_threadpool(_finish, predictor, prepared, raw)
            return JSONResponse(result)
        finally:
            metrics.in_flight.dec()

    return app


def _prepare(predictor: Predictor, data: bytes, options: dict[str, Any], max_pixels: int) -> Prepared:
    try:
        return predictor.prepare(open_image(data, max_pixels), **options)
    except ImageTooLarge as exc:
        raise ApiError(413, str(exc), "too_many_pixels") from None
    except OptionError as exc:
        raise ApiError(422, str(exc), "bad_options") from None
    except ImageError as exc:
        raise ApiError(400, str(exc), "bad_image") from None


def _finish(predictor: Predictor, prepared: Prepared, raw: Any) -> dict[str, Any]:
    try:
        return {"model": predictor.model, **predictor.finish(prepared, raw).to_dict()}
    except NonFiniteOutput as exc:  # the model failed on this image: 500 for it, and keep serving
        log.error("non-finite output: %s", exc)
        raise ApiError(500, str(exc), "non_finite") from None
