"""What ``POST /v1/predict`` accepts, and how a payload becomes (image bytes, task options) or a 4xx ``ApiError``.

An image comes as raw bytes (``image/*``, ``application/octet-stream``; options in the query string), as base64 in
JSON (``{"image": "...", "points": [[x, y]], ...}``, :class:`PredictRequest`) or as a multipart upload (``image``
file + optional ``options`` JSON, :class:`PredictOptions`). The size limit is checked before anything is decoded,
then the JSON schema (pydantic); validation errors become one-line messages. ``OPENAPI_BODY`` and
``ERROR_RESPONSES`` describe all this in the OpenAPI schema.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from ..optional import require

require("fastapi", "the HTTP server")  # before the imports below: a one-line error naming [serve]

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..predict.prompts import MAX_POINTS

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
