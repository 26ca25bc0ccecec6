"""The Triton Python-backend pipeline model written by ``evit-deploy triton``: encoded image (+ JSON options) in,
JSON result out, with the :class:`Predictor`'s own pre/post-processing; the graphs run as Triton models via BLS.

Inside Triton this module is imported by the repository's ``<model>/1/model.py`` (the Python backend environment
needs ``pip install evit-deploy``); repositories written by older versions import it through the shim
``evit_deploy.predict.triton_backend``. ``triton_python_backend_utils`` exists only inside Triton, so it is
imported lazily.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EvitError
from ..images import open_image
from ..limits import LIMITS
from ..predict import Engine, Predictor, Prepared
from ..signing import resolve_trust
from .configs import PIPELINE_SETTINGS
from .signature import check_repository
from .stub_check import check_stub


def _pb_utils() -> Any:
    import triton_python_backend_utils as pb_utils

    return pb_utils


class TritonBlsEngine(Engine):
    """Runs each role's graph as a Triton model with a BLS request (Triton batches concurrent calls)."""

    def __init__(self, models: dict[str, dict[str, Any]], max_batch: int, static_batch: int | None) -> None:
        self.models = models  # role → {"name": triton model name, "outputs": [names]}
        self.max_batch = max_batch
        self.static_batch = static_batch

    def run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pb_utils = _pb_utils()
        model = self.models[role]
        inputs = [pb_utils.Tensor(name, np.ascontiguousarray(array)) for name, array in feeds.items()
                  if array is not None]
        request = pb_utils.InferenceRequest(model_name=model["name"], requested_output_names=model["outputs"],
                                            inputs=inputs)
        response = request.exec()
        if response.has_error():
            raise EvitError(f"Triton model {model['name']} failed: {response.error().message()}")
        return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in model["outputs"]}


class TritonPythonModel:
    """Triton's Python-backend entry points: ``initialize``, ``execute`` (a list of requests), ``finalize``."""

    def initialize(self, args: dict[str, str]) -> None:
        check_stub()
        folder = Path(args["model_repository"]) / str(args["model_version"])
        settings = json.loads((folder / PIPELINE_SETTINGS).read_text())
        trust = resolve_trust(None)  # EVIT_DEPLOY_REQUIRE_SIGNATURE in Triton's environment
        if trust is not None:
            check_repository(folder, settings, trust)  # before any request reaches a graph model
        engine = TritonBlsEngine(settings["graphs"], settings["max_batch"], settings["static_batch"])
        self.predictor = Predictor(engine, settings["model"], settings["input_size"], source="triton")
        self.max_pixels = int(settings.get("max_pixels", LIMITS.max_image_pixels))

    def _prepare(self, data: Any, options: Any) -> Prepared:
        raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
        opts: Any = {}
        if options is not None and len(options):
            try:
                opts = json.loads(options.decode() if isinstance(options, bytes) else str(options))
            except (ValueError, UnicodeDecodeError):
                raise EvitError("OPTIONS is not valid JSON") from None
        if not isinstance(opts, dict):
            raise EvitError("OPTIONS must be a JSON object")
        return self.predictor.prepare(open_image(raw, self.max_pixels), **opts)

    def execute(self, requests: list[Any]) -> list[Any]:
        """All images of all requests are pre-processed, run as one batch, and answered per request."""
        pb_utils = _pb_utils()
        entries: list[tuple[int, Prepared | Exception]] = []
        for index, request in enumerate(requests):
            images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
            opt_tensor = pb_utils.get_input_tensor_by_name(request, "OPTIONS")
            options = opt_tensor.as_numpy().reshape(-1) if opt_tensor is not None else [None] * len(images)
            for data, opt in zip(images, options):
                try:
                    entries.append((index, self._prepare(data, opt)))
                except EvitError as exc:
                    entries.append((index, exc))
        ready = [item for _, item in entries if isinstance(item, Prepared)]
        try:
            raws: list[Any] | Exception = self.predictor.infer(ready)
        except Exception as exc:  # noqa: BLE001 - every request of the batch gets the error
            raws = exc
        per_request: list[list[str] | Exception] = [[] for _ in requests]
        position = 0
        for index, item in entries:
            if isinstance(item, Prepared):
                raw, position = (raws if isinstance(raws, Exception) else raws[position]), position + 1
                try:
                    item = raw if isinstance(raw, Exception) else self._finish(item, raw)
                except EvitError as exc:  # e.g. a NaN/Inf output: an error for this request only
                    item = exc
            outcome = per_request[index]
            if isinstance(outcome, list):
                per_request[index] = item if isinstance(item, Exception) else [*outcome, item]
        responses = []
        for outcome in per_request:
            if isinstance(outcome, Exception):
                error = pb_utils.TritonError(str(outcome))
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
            else:
                out = np.array([s.encode() for s in outcome], dtype=np.object_).reshape(-1, 1)
                responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("RESULT", out)]))
        return responses

    def _finish(self, item: Prepared, raw: Any) -> str:
        return json.dumps({"model": self.predictor.model, **self.predictor.finish(item, raw).to_dict()})

    def finalize(self) -> None:
        self.predictor = None
