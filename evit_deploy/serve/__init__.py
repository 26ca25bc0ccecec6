"""HTTP serving (FastAPI + uvicorn): ``create_app`` for an export, dynamic batching, Prometheus metrics.

Needs the ``[serve]`` extra. ``evit-deploy serve EXPORT_DIR`` runs it. Modules: ``settings`` (``ServeSettings``,
every default; no FastAPI needed), ``payloads`` (what ``POST /v1/predict`` accepts), ``app`` (the routes),
``batcher``, ``metrics``, ``runner`` (uvicorn, graceful shutdown), ``client`` (test and benchmark helpers).

The names below are imported on first use, so reading ``ServeSettings`` does not import FastAPI.
"""

from __future__ import annotations

from .._lazy import lazy_names

_LAZY = {
    "DEFAULT_MAX_BYTES": "evit_deploy.serve.settings",
    "DEFAULT_MAX_PIXELS": "evit_deploy.serve.settings",
    "ServeSettings": "evit_deploy.serve.settings",
    "PredictOptions": "evit_deploy.serve.payloads",
    "PredictRequest": "evit_deploy.serve.payloads",
    "create_app": "evit_deploy.serve.app",
    "DynamicBatcher": "evit_deploy.serve.batcher",
    "Overloaded": "evit_deploy.serve.batcher",
    "Metrics": "evit_deploy.serve.metrics",
    "serve": "evit_deploy.serve.runner",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_names("evit_deploy.serve", _LAZY, globals())
