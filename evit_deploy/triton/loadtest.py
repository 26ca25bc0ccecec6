"""Concurrent load on a Triton pipeline model, for ``latency/bench_triton.py``: a plain function returning a dict.

:func:`bench_triton` writes the repository of an export (the platform the server has: python for the bundled
server), starts a :class:`~evit_deploy.triton.server.TritonServer` on free local ports, sends warm-up requests,
then REQUESTS inferences of encoded images with CONCURRENCY in flight through tritonclient's asyncio HTTP client
(aiohttp, as the FastAPI benchmarks use httpx's asyncio client), checks every answer against the expected top-k
classes, and reads the graph model's executions from Triton's metrics (how many requests each model run served).
The summary has the fields of ``latency/bench_server.py``'s rows (:meth:`evit_deploy.serve.client.LoadResult
.summary`), so the rows go in one table.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..serve.client import LoadResult, Response
from .repository import write_repository
from .server import ServerSettings, TritonServer, find_install


async def _load(url: str, model: str, payloads: Sequence[tuple[str, bytes]], concurrency: int,
                timeout: float) -> LoadResult:
    from ..optional import require

    aioclient = require("tritonclient.http.aio", "the Triton load test")
    sem = asyncio.Semaphore(concurrency)
    result = LoadResult()
    client = aioclient.InferenceServerClient(url.removeprefix("http://"), conn_limit=concurrency,
                                             conn_timeout=timeout)

    async def one(label: str, data: bytes) -> Response:
        async with sem:
            image = aioclient.InferInput("IMAGE", [1, 1], "BYTES")
            image.set_data_from_numpy(np.array([[data]], dtype=object))
            t0 = time.perf_counter()
            try:
                answer = await client.infer(model, [image])
                status, body = 200, json.loads(answer.as_numpy("RESULT")[0, 0])
            except Exception as exc:  # noqa: BLE001 - an answered error counts as one
                status, body = 500, f"{type(exc).__name__}: {exc}"
            t1 = time.perf_counter()
            return Response(label, status, body, (t1 - t0) * 1e3, t1)

    try:
        started = time.perf_counter()
        result.responses = list(await asyncio.gather(*(one(label, data) for label, data in payloads)))
        result.wall_s = time.perf_counter() - started
    finally:
        await client.close()
    return result


def run_load(url: str, model: str, payloads: Sequence[tuple[str, bytes]], concurrency: int = 16,
             timeout: float = 120.0) -> LoadResult:
    """Infer every ``(label, encoded image)`` on the pipeline ``model`` with at most ``concurrency`` in flight."""
    return asyncio.run(_load(url, model, payloads, concurrency, timeout))


def model_counts(metrics_url: str, model: str) -> dict[str, float]:
    """Triton's ``nv_inference_count`` (inferences) and ``nv_inference_exec_count`` (model runs) of ``model``."""
    text = urllib.request.urlopen(metrics_url, timeout=30).read().decode()
    found = {"nv_inference_count": 0.0, "nv_inference_exec_count": 0.0}
    for line in text.splitlines():
        name = line.split("{", 1)[0]
        if name in found and f'model="{model}"' in line:
            found[name] += float(line.rsplit(" ", 1)[1])
    return found


def bench_triton(folder: str | Path, photos: dict[str, bytes], expected: dict[str, list[int]], requests: int = 200,
                 concurrency: int = 16, warmup: int = 32, max_queue_delay_us: int = 5000, threads: int | None = None,
                 instances: int = 1) -> dict[str, Any]:
    """Triton serving the export ``folder`` under load; every answer's top-k classes checked against ``expected``
    (by photo name). Returns the row: the load summary, wrong answers, graph runs, mean batch, start-up time."""
    names = list(photos)
    warm = [(names[i % len(names)], photos[names[i % len(names)]]) for i in range(warmup)]
    timed = [(names[i % len(names)], photos[names[i % len(names)]]) for i in range(requests)]
    install = find_install()
    with tempfile.TemporaryDirectory(prefix="evit-bench-triton-") as tmp:
        models = write_repository(folder, Path(tmp) / "repo", backends=install.backends, threads=threads,
                                  instances=instances, max_queue_delay_us=max_queue_delay_us)
        pipeline, graph = models[0], models[1]
        started = time.perf_counter()
        with TritonServer(install, Path(tmp) / "repo", [m.name for m in models],
                          ServerSettings(http_port=0, grpc_port=0, metrics_port=0, exit_timeout=10)) as server:
            ready_s = time.perf_counter() - started
            if warm:
                run_load(server.http_url, pipeline.name, warm, concurrency)
            before = model_counts(server.metrics_url, graph.name)
            result = run_load(server.http_url, pipeline.name, timed, concurrency)
            after = model_counts(server.metrics_url, graph.name)
    wrong = sum(1 for r in result.responses
                if r.status == 200 and [t["index"] for t in r.body["top_k"]] != expected[r.label])
    runs = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
    images = after["nv_inference_count"] - before["nv_inference_count"]
    label = "the bundled tritonserver 2.51" if install.bundled else f"tritonserver ({install.binary})"
    return {"config": f"Triton, {pipeline.name} + {graph.name} ({graph.platform} platform), {label}",
            "max_batch": graph.config["max_batch_size"], "max_wait_ms": max_queue_delay_us / 1000,
            **result.summary(), "wrong_outputs": wrong, "model_runs": int(runs),
            "mean_batch": round(images / runs, 2) if runs else 0.0, "ready_s": round(ready_s, 1),
            "platform": graph.platform, "errors_sample": next((r.body for r in result.responses if r.status != 200),
                                                              None)}
