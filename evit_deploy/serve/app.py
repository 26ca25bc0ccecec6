"""The HTTP service: ``create_app(export_dir, ...)`` → a FastAPI app around one :class:`Predictor`.

``POST /v1/predict`` takes an image as raw bytes (``image/*``, ``application/octet-stream``), as base64 in JSON
(``{"image": "...", "points": [[x, y]], ...}``) or as a multipart upload (``image`` file + optional ``options``
JSON). Every payload is checked: the size limit before anything is decoded, then the JSON schema (pydantic),
the image decode and pixel count, and the task's options (SAM prompt shapes). Bad payloads get a 4xx JSON error
``{"error": "...", "status": N}``; the server keeps serving. Concurrent requests are batched (see ``batcher``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .. import __version__
from ..errors import EvitError
from ..predict import ImageError, ImageTooLarge, OptionError, Predictor, Prepared, decode_image
from ..predict.predictor import DEFAULT_MAX_PIXELS, MAX_POINTS
from .batcher import DynamicBatcher, Overloaded
from .metrics import Metrics

log = logging.getLogger("evit_deploy.serve")

DEFAULT_MAX_BYTES = 16 * 2**20
ENDPOINTS = ("/v1/predict", "/v1/model", "/health", "/ready", "/metrics", "/docs", "/openapi.json")

Finite = Annotated[float, Field(allow_inf_nan=False)]


class PredictOptions(BaseModel):
    """Task options. Classification: ``top_k``. SAM: ``points`` and/or ``box`` (pixels of the image),
    ``point_labels`` (1 foreground, 0 background; default all 1), ``multimask``."""

    model_config = ConfigDict(extra="forbid")

    top_k: int | None = Field(None, ge=1, le=1000, description="classification: number of classes returned")
    points: list[tuple[Finite, Finite]] | None = Field(None, max_length=MAX_POINTS, description="SAM: [[x, y], ...]")
    point_labels: list[Literal[0, 1]] | None = Field(None, max_length=MAX_POINTS, description="SAM: one per point")
    box: tuple[Finite, Finite, Finite, Finite] | None = Field(None, description="SAM: [x0, y0, x1, y1]")
    multimask: bool | None = Field(None, description="SAM: three masks (true, default) or the single-mask output")

    @model_validator(mode="after")
    def _labels_match_points(self) -> PredictOptions:
        if self.point_labels is not None and len(self.point_labels) != len(self.points or []):
            raise ValueError(f"point_labels has {len(self.point_labels)} entries for {len(self.points or [])} points")
        if self.box is not None and (self.box[0] > self.box[2] or self.box[1] > self.box[3]):
            raise ValueError("box must be [x0, y0, x1, y1] with x0 <= x1 and y0 <= y1")
        return self

    def given(self) -> dict[str, Any]:
        """The options that were set (the image excluded)."""
        return self.model_dump(exclude_none=True, exclude={"image"})


class PredictRequest(PredictOptions):
    """``application/json`` body: the image as base64 (a ``data:`` URL prefix is allowed) plus task options."""

    image: str = Field(..., min_length=1, description="the encoded image file (PNG, JPEG, ...) as base64")


class ErrorBody(BaseModel):
    error: str
    status: int


class ApiError(Exception):
    """An error answered with ``status`` and a one-line JSON message; ``reason`` labels the error metric."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason


@dataclass
class ServiceState:
    predictor: Predictor
    batcher: DynamicBatcher
    metrics: Metrics
    max_bytes: int
    max_pixels: int
    ready: bool = False
    draining: bool = False
    started: float = field(default_factory=time.time)


def _validation_message(exc: ValidationError, what: str = "body") -> tuple[int, str, str]:
    errors = exc.errors(include_url=False)
    if any(e["type"] in ("json_invalid", "json_type") for e in errors):
        return 400, f"{what} is not valid JSON", "bad_json"
    parts = []
    for e in errors[:3]:
        loc = ".".join(str(p) for p in e["loc"]) or "body"
        parts.append(f"{loc}: {e['msg']}")
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return 422, "invalid request: " + "; ".join(parts) + more, "bad_options"


def _b64decode(text: str) -> bytes:
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "image is not valid base64", "bad_base64") from None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes before it is all read or decoded."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "invalid Content-Length header", "bad_request")
        if int(declared) > limit:
            raise ApiError(413, f"payload is {int(declared)} bytes; the limit is {limit} bytes", "too_large")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"payload exceeds the limit of {limit} bytes", "too_large")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "client disconnected while sending the body", "disconnect") from None
    body = b"".join(chunks)
    request._body = body  # lets request.form() parse the body read here
    return body


async def parse_payload(request: Request, body: bytes) -> tuple[bytes, dict[str, Any]]:
    """(image bytes, task options) from any of the accepted content types."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            req = PredictRequest.model_validate_json(body)
        except ValidationError as exc:
            raise ApiError(*_validation_message(exc)) from None
        return _b64decode(req.image), req.given()
    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=2)
        except (StarletteHTTPException, ValueError) as exc:
            raise ApiError(400, f"malformed multipart body: {getattr(exc, 'detail', exc)}", "bad_multipart") from None
        unknown = sorted(set(form.keys()) - {"image", "options"})
        if unknown:
            raise ApiError(422, f"unknown form fields {unknown}; send 'image' (file) and 'options' (JSON)",
                           "bad_options")
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise ApiError(422, "multipart body needs an 'image' file part", "bad_options")
        data = await upload.read()
        options = form.get("options")
        try:
            parsed = PredictOptions.model_validate_json(options) if isinstance(options, str) else PredictOptions()
        except ValidationError as exc:
            raise ApiError(*_validation_message(exc, "the 'options' form field")) from None
        return data, parsed.given()
    if content_type.startswith("image/") or content_type == "application/octet-stream":
        try:
            parsed = PredictOptions.model_validate(dict(request.query_params))
        except ValidationError as exc:
            raise ApiError(*_validation_message(exc)) from None
        return body, parsed.given()
    raise ApiError(415, f"unsupported content type '{content_type or 'none'}': send image/*, "
                        "application/octet-stream, application/json or multipart/form-data", "bad_content_type")


OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": PredictRequest.model_json_schema()},
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["image"],
                "properties": {"image": {"type": "string", "format": "binary"},
                               "options": {"type": "string", "description": "PredictOptions as JSON text"}},
            }},
        },
    },
    "parameters": [
        {"name": "top_k", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1},
         "description": "raw-bytes requests: classification top-k"},
        {"name": "multimask", "in": "query", "required": False, "schema": {"type": "boolean"},
         "description": "raw-bytes requests: SAM multimask output"},
    ],
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in {
        400: "not an image, bad base64 or malformed JSON/multipart", 413: "payload or image too large",
        415: "unsupported content type", 422: "options of the wrong shape or not for this model's task",
        503: "queue full or shutting down",
    }.items()
}


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


def create_app(export_dir: str | Path | None = None, max_batch: int = 8, max_wait_ms: float = 5.0,
               max_bytes: int = DEFAULT_MAX_BYTES, *, predictor: Predictor | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS, max_queue: int = 1024, threads: int | None = None) -> FastAPI:
    """A FastAPI app serving an export folder (or a ready ``predictor``); the model loads here, at once."""
    if predictor is None:
        if export_dir is None:
            raise EvitError("create_app needs an export folder or a predictor")
        predictor = Predictor.from_export(export_dir, threads=threads)
    if max_bytes < 1 or max_pixels < 1:
        raise EvitError("max_bytes and max_pixels must be positive")
    metrics = Metrics(predictor.model, predictor.task)
    effective_batch = max(1, min(max_batch, predictor.max_batch))

    def run_batch(items: list[Prepared]) -> list[Any]:
        return predictor.infer(items)

    batcher = DynamicBatcher(run_batch, effective_batch, max_wait_ms, max_queue,
                             on_batch=metrics.observe_batch, on_queue=metrics.queue_depth.set)
    state = ServiceState(predictor, batcher, metrics, max_bytes, max_pixels)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        await run_in_threadpool(_warm_up, predictor)
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
                "num_classes": len(predictor.class_names), "options": sorted(predictor.handler.options),
                "max_batch": effective_batch, "max_wait_ms": max_wait_ms, "max_bytes": max_bytes,
                "max_pixels": max_pixels, "source": predictor.source}

    @app.post("/v1/predict", summary="Predict on one image", openapi_extra=OPENAPI_BODY, responses=ERROR_RESPONSES)
    async def predict(request: Request) -> JSONResponse:
        """Classification → top-k labels; segmentation → classes and the label map (base64 PNG, original
        size); SAM → masks (row-major RLE) for the prompt, with scores."""
        metrics.in_flight.inc()
        try:
            body = await read_body(request, state.max_bytes)
            data, options = await parse_payload(request, body)
            if len(data) > state.max_bytes:
                raise ApiError(413, f"image is {len(data)} bytes; the limit is {state.max_bytes}", "too_large")
            prepared = await run_in_threadpool(_prepare, predictor, data, options, state.max_pixels)
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
        return predictor.prepare(decode_image(data, max_pixels), **options)
    except ImageTooLarge as exc:
        raise ApiError(413, str(exc), "too_many_pixels") from None
    except OptionError as exc:
        raise ApiError(422, str(exc), "bad_options") from None
    except ImageError as exc:
        raise ApiError(400, str(exc), "bad_image") from None


def _finish(predictor: Predictor, prepared: Prepared, raw: Any) -> dict[str, Any]:
    return {"model": predictor.model, **predictor.finish(prepared, raw).to_dict()}


def _warm_up(predictor: Predictor) -> None:
    """One model run on a blank image so the first request does not pay for lazy initialisation."""
    image = Image.new("RGB", (64, 64), (128, 128, 128))
    item = predictor.prepare(image, **predictor.handler.example_options)
    predictor.finish(item, predictor.infer([item])[0])
