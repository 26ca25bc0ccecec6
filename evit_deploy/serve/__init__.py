"""HTTP serving (FastAPI + uvicorn): ``create_app`` for an export, dynamic batching, Prometheus metrics.

Needs the ``[serve]`` extra. ``evit-deploy serve EXPORT_DIR`` runs it; see ``app`` for the API.
"""

from .app import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, PredictOptions, PredictRequest, create_app
from .batcher import DynamicBatcher, Overloaded
from .metrics import Metrics
from .runner import serve

__all__ = [
    "DEFAULT_MAX_BYTES", "DEFAULT_MAX_PIXELS", "DynamicBatcher", "Metrics", "Overloaded", "PredictOptions",
    "PredictRequest", "create_app", "serve",
]
