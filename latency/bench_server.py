"""Benchmark: `evit-deploy serve` on an ONNX export under concurrent load, without and with dynamic batching.

    .venv/bin/python latency/bench_server.py [--export DIR | --model NAME] [--requests 200] [--concurrency 16]
        [--max-batch 8] [--max-wait-ms 5] [--warmup 32] [--threads 0] [--out latency/reports]

Without --export, MODEL (default efficientvit-b1-r224, random weights: latency does not depend on weight values)
is exported to `cpu-ort` in a temporary folder. Each configuration starts its own server process on 127.0.0.1,
gets `--warmup` untimed requests, then REQUESTS timed POST /v1/predict requests (the sample photos as JPEG bytes,
cycled) with CONCURRENCY in flight. A request's latency is measured at the client (sent → answered); their median,
p10–p90, p99 and the median's 95% CI come from the one statistics function (`evit_deploy.bench.stats.summarize`,
the requests as one block, through `LoadResult.summary`). Every answer is checked against `Predictor` (same top-5
classes); the batch sizes come from the server's /metrics. Client and server share this machine's cores. This is
an HTTP load test, not a protocol row: the report has no latency rows, only its table. Writes
server-cpu.{json,md,html}.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from evit_deploy.artifacts import read_manifest
from evit_deploy.bench.schema import Machine
from evit_deploy.bench.scripts import progress, run_script, script_parser, script_report, write_script_report
from evit_deploy.bench.stats import Stats
from evit_deploy.export.pipeline import ExportRequest, run_export
from evit_deploy.predict import Predictor
from evit_deploy.samples import sample_photos
from evit_deploy.serve.client import ServerProcess, raw_payload, run_load

COLUMNS = ["ok", "errors", "wrong", "p50 (ms)", "p10–p90 (ms)", "p99 (ms)", "median 95% CI", "throughput (req/s)"]


def batch_stats(url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text):
        for s in family.samples:
            if s.name in ("evit_batch_size_count", "evit_batch_size_sum"):
                found[s.name] = s.value
    return found


def bench_config(folder: Path, label: str, max_batch: int, max_wait_ms: float, args: argparse.Namespace,
                 photos: dict[str, bytes], expected: dict[str, list[int]], extra: Sequence[str] = (),
                 threads: int | None = None, batch_metrics: bool = True) -> dict[str, Any]:
    """One server (``evit-deploy serve FOLDER ... *extra``) under the load of ``args``: its load summary (the
    requests' latencies by the one statistics function, ``LoadResult.summary``), the answers that differ from
    ``expected`` and, with ``batch_metrics`` (one registry: not so with several Ray replicas), the model runs and
    mean batch from /metrics. ``threads``: runtime threads (default ``args.threads``; 0: the export's setting)."""
    names = list(photos)
    warmup = [raw_payload(names[i % len(names)], photos[names[i % len(names)]], "image/jpeg")
              for i in range(args.warmup)]
    timed = [raw_payload(names[i % len(names)], photos[names[i % len(names)]], "image/jpeg")
             for i in range(args.requests)]
    progress(f"{label}: starting the server, {args.warmup} warm-up and {args.requests} timed requests ...")
    started = time.perf_counter()
    runtime_threads = (args.threads if threads is None else threads) or None  # 0: the export profile's setting
    with ServerProcess(folder, max_batch=max_batch, max_wait_ms=max_wait_ms, threads=runtime_threads,
                       extra=extra) as server:
        ready_s = time.perf_counter() - started
        if warmup:
            run_load(server.url, warmup, args.concurrency)
        before = batch_stats(server.url) if batch_metrics else {}
        result = run_load(server.url, timed, args.concurrency)
        after = batch_stats(server.url) if batch_metrics else {}
    wrong = sum(1 for r in result.responses
                if r.status == 200 and [t["index"] for t in r.body["top_k"]] != expected[r.label])
    batches = after.get("evit_batch_size_count", 0) - before.get("evit_batch_size_count", 0)
    images = after.get("evit_batch_size_sum", 0) - before.get("evit_batch_size_sum", 0)
    mean_batch = (round(images / batches, 2) if batches else 0.0) if batch_metrics else None
    return {"config": label, "max_batch": max_batch, "max_wait_ms": max_wait_ms, **result.summary(),
            "wrong_outputs": wrong, "model_runs": int(batches) if batch_metrics else None, "mean_batch": mean_batch,
            "ready_s": round(ready_s, 1)}


def latency_cells(r: dict[str, Any]) -> list[Any]:
    """The table cells of :data:`COLUMNS` of one load-test result (a server's, Ray Serve's or Triton's)."""
    lat = Stats.from_dict(r["latency_ms"])
    spread = "-" if lat.p10 is None else f"{lat.p10:.1f}–{lat.p90:.1f}"
    ci = "-" if lat.ci_pct is None else f"±{lat.ci_pct:.1f}%"
    return [r["ok"], r["errors"], r["wrong_outputs"], lat.median, spread, lat.p99, ci, r["throughput_rps"]]


def servers_table(title: str, rows: list[dict[str, Any]], note: str) -> dict[str, Any]:
    """A report table of several servers under the same load, each against the first (bench_ray.py,
    bench_triton.py)."""
    return {"title": title, "columns": ["server", *COLUMNS, "vs FastAPI", "mean batch", "ready after (s)"],
            "rows": [[r["config"], *latency_cells(r), r["vs_fastapi"],
                      "n/a" if r["mean_batch"] is None else r["mean_batch"], r["ready_s"]] for r in rows],
            "note": note}


def load_inputs(export: str | None, model: str, tmp: Path) -> tuple[Path, Any, dict[str, bytes], dict[str, Any]]:
    """(export folder, its manifest, the sample photos as JPEG bytes, each photo's answer from `Predictor`): EXPORT,
    or MODEL exported to cpu-ort under ``tmp``."""
    photos = {}
    for name, array in sample_photos().items():
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="JPEG", quality=90)
        photos[name] = buf.getvalue()
    if export is None:
        progress(f"exporting {model} for cpu-ort ...")
    folder = Path(export or run_export(ExportRequest(model, "cpu-ort", output=str(tmp / "export"))).folder)
    predictor = Predictor.from_export(folder)
    expected = {n: predictor(Image.open(io.BytesIO(d))).indices for n, d in photos.items()}
    return folder, read_manifest(folder), photos, expected


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    """The export and the HTTP load, shared with bench_ray.py."""
    parser.add_argument("--export", type=Path, help="An export folder (default: export --model to a temp folder).")
    parser.add_argument("--model", default="efficientvit-b1-r224")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--warmup", type=int, default=32, help="untimed requests before the timed ones")


def load_settings(args: argparse.Namespace, **more: Any) -> dict[str, Any]:
    """What a load-test report says it ran with."""
    return {"requests": args.requests, "concurrency": args.concurrency, "warmup": args.warmup,
            "threads": args.threads, "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
            "payload": "sample photos as JPEG (quality 90), raw image/jpeg bodies, cycled",
            "client": "httpx.AsyncClient on the same machine", "weights": "random",
            "latency": "client side, sent → answered; statistics by evit_deploy.bench.stats.summarize", **more}


def main() -> None:
    parser = script_parser(__doc__, threads=0, protocol=False)
    add_load_arguments(parser)
    args = parser.parse_args()
    machine = Machine.here(args.threads or None)  # its load average at the start
    warnings.simplefilter("ignore")

    with tempfile.TemporaryDirectory() as tmp:
        folder, manifest, photos, expected = load_inputs(args.export, args.model, Path(tmp))
        results = [bench_config(folder, "no dynamic batching", 1, 0.0, args, photos, expected),
                   bench_config(folder, "dynamic batching", args.max_batch, args.max_wait_ms, args, photos, expected)]

    size = f"{manifest.input_size[0]}x{manifest.input_size[1]}"
    report = script_report(f"`evit-deploy serve` on CPU: {manifest.model} ({size}, {manifest.target})",
                           load_settings(args, server_threads=args.threads or "the export's (ONNX Runtime default)"),
                           "bench_server.py", model=manifest.model, input_size=list(manifest.input_size),
                           target=manifest.target, machine=machine)
    report.sections["tables"] = [{
        "title": f"{args.requests} requests at concurrency {args.concurrency} (after {args.warmup} warm-up)",
        "columns": ["config", "max batch", "max wait (ms)", *COLUMNS, "mean batch"],
        "rows": [[r["config"], r["max_batch"], r["max_wait_ms"], *latency_cells(r), r["mean_batch"]]
                 for r in results],
        "note": "Latency = request sent → response received at the client (decode, pre-processing, queueing, model "
                "run, post-processing, JSON); server and client share this machine's cores."}]
    report.sections["load_tests"] = results
    wrong = sum(r["wrong_outputs"] for r in results)
    report.notes.append(f"Every answer checked against `Predictor` (same top-5 classes): {wrong} wrong.")
    write_script_report(args.out, "server-cpu", report)


if __name__ == "__main__":
    run_script(main)
