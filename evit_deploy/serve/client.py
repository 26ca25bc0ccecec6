"""Client-side helpers for tests and benchmarks: start a server process (either engine), send a bounded
concurrent load (optionally retrying requests that failed on the server's side, e.g. while a replica restarts)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..bench.stats import Stats, summarize

_URL = re.compile(r"serving \S+ \(\w+\) on (http://[^\s,]+)")
RETRY_STATUSES = frozenset({0, 500, 502, 503, 504})  # 0 = no HTTP answer (connection reset, timeout)


class ServerProcess:
    """``evit-deploy serve EXPORT --port 0 ...`` in a child process; ``start()`` returns its URL once ready."""

    def __init__(self, export_dir: str | Path, max_batch: int = 8, max_wait_ms: float = 5.0,
                 max_bytes: int | None = None, threads: int | None = None, extra: Sequence[str] = ()) -> None:
        self.args = [sys.executable, "-m", "evit_deploy", "serve", str(export_dir), "--host", "127.0.0.1",
                     "--port", "0", "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), *extra]
        if max_bytes is not None:
            self.args += ["--max-bytes", str(max_bytes)]
        if threads is not None:
            self.args += ["--threads", str(threads)]
        self.proc: subprocess.Popen | None = None
        self.url = ""
        fd, name = tempfile.mkstemp(prefix="evit-serve-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self, timeout: float = 180.0) -> str:
        import httpx

        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()[-2000:]}")
            if not self.url and (match := _URL.search(self.log())):
                self.url = match.group(1)
            if self.url:
                try:
                    if httpx.get(f"{self.url}/ready", timeout=5).status_code == 200:
                        return self.url
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"server not ready after {timeout:.0f}s: {self.log()[-2000:]}")

    def terminate(self) -> None:
        """Send SIGTERM (graceful shutdown) without waiting."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait for the exit code (killed after ``timeout``)."""
        if self.proc is None:
            return 0
        self.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        """Stop the server if it still runs (SIGTERM, then SIGKILL) and delete its log."""
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        self.kill()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> ServerProcess:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Payload:
    """One request: keyword arguments for ``httpx.AsyncClient.post`` and a label (e.g. the photo's name)."""

    label: str
    kwargs: dict[str, Any]


def raw_payload(label: str, data: bytes, content_type: str = "image/png", **params: Any) -> Payload:
    return Payload(label, {"content": data, "headers": {"content-type": content_type}, "params": params})


def json_payload(label: str, data: bytes, **options: Any) -> Payload:
    import base64

    return Payload(label, {"json": {"image": base64.b64encode(data).decode(), **options}})


def multipart_payload(label: str, data: bytes, options: dict[str, Any] | None = None,
                      filename: str = "image.png") -> Payload:
    import json

    form = {"options": json.dumps(options)} if options else {}
    return Payload(label, {"files": {"image": (filename, data, "application/octet-stream")}, "data": form})


@dataclass
class Response:
    label: str
    status: int
    body: Any
    latency_ms: float
    finished: float  # time.perf_counter() when the response arrived
    attempts: int = 1  # > 1: retried after RETRY_STATUSES answers (latency covers every attempt)


@dataclass
class LoadResult:
    responses: list[Response] = field(default_factory=list)
    wall_s: float = 0.0

    def latency(self) -> Stats:
        """The answered requests' latencies (ms) by the one statistics function of every report (the requests as
        one block: its confidence interval resamples them)."""
        return summarize([[r.latency_ms for r in self.responses if r.status == 200]])

    def summary(self) -> dict[str, Any]:
        ok = sum(1 for r in self.responses if r.status == 200)
        lat = self.latency()
        figures = {k: round(v, 2) if isinstance(v, float) else v for k, v in lat.to_dict().items()}
        return {
            "requests": len(self.responses), "ok": ok, "errors": len(self.responses) - ok,
            "retried": sum(1 for r in self.responses if r.attempts > 1), "wall_s": round(self.wall_s, 3),
            "throughput_rps": round(ok / self.wall_s, 2) if self.wall_s else 0.0,
            "latency_ms": {"p50": figures.get("median"), **figures},  # p50: the median, named as load tests name it
        }


async def _load(url: str, payloads: Sequence[Payload], concurrency: int, timeout: float, retries: int,
                on_response: Callable[[Response], None] | None) -> LoadResult:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    sem = asyncio.Semaphore(concurrency)
    result = LoadResult()

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:

        async def one(p: Payload) -> Response:
            async with sem:
                t0 = time.perf_counter()
                for attempt in range(1, retries + 2):
                    if attempt > 1:
                        await asyncio.sleep(0.2 * (attempt - 1))
                    try:
                        r = await client.post("/v1/predict", **p.kwargs)
                        status = r.status_code
                        json_body = r.headers.get("content-type", "").startswith("application/json")
                        body = r.json() if json_body else r.text
                    except httpx.HTTPError as exc:
                        status, body = 0, f"{type(exc).__name__}: {exc}"
                    if status not in RETRY_STATUSES:
                        break
                t1 = time.perf_counter()
                response = Response(p.label, status, body, (t1 - t0) * 1e3, t1, attempt)
                if on_response is not None:
                    on_response(response)
                return response

        started = time.perf_counter()
        result.responses = list(await asyncio.gather(*(one(p) for p in payloads)))
        result.wall_s = time.perf_counter() - started
    return result


def run_load(url: str, payloads: Sequence[Payload], concurrency: int = 16, timeout: float = 120.0,
             retries: int = 0, on_response: Callable[[Response], None] | None = None) -> LoadResult:
    """POST every payload to ``url/v1/predict`` with at most ``concurrency`` in flight; responses in order.

    ``retries``: send a request again (up to that many times) after an answer in :data:`RETRY_STATUSES`;
    ``on_response`` is called with each final response as it arrives (e.g. to act mid-load)."""
    return asyncio.run(_load(url, payloads, concurrency, timeout, retries, on_response))
