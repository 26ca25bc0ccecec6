"""Prometheus metrics of one server, in a private registry (two apps in one process never share counters)."""

from __future__ import annotations

from ..optional import require

require("prometheus_client", "the server's metrics")  # before the import below: a one-line error naming [serve]

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """Requests, errors, latencies, batch sizes, queue depth and in-flight requests of one app."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, model: str, task: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("evit_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "method", "status"], registry=r)
        self.errors = Counter("evit_request_errors", "Requests answered with a 4xx/5xx status, by reason",
                              ["endpoint", "status", "reason"], registry=r)
        self.latency = Histogram("evit_request_latency_seconds", "Time from request received to response sent",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.inference = Histogram("evit_inference_seconds", "Model run time of one batch",
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("evit_batch_size", "Images per model run (dynamic batching)",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("evit_queue_depth", "Prepared requests waiting for the model", registry=r)
        self.in_flight = Gauge("evit_requests_in_flight", "Prediction requests being handled", registry=r)
        info = Gauge("evit_model_info", "The served model", ["model", "task"], registry=r)
        info.labels(model=model, task=task).set(1)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
