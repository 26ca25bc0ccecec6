"""Benchmark: Triton Inference Server (the repository `evit-deploy triton` writes) beside the FastAPI server and
Ray Serve, same export, same load.

    .venv/bin/python latency/bench_triton.py [--export DIR | --model NAME] [--requests 200] [--concurrency 16]
        [--max-batch 8] [--max-wait-ms 5] [--threads 2] [--skip-ray] [--out latency/reports]

Each server gets --warmup untimed requests, then REQUESTS requests of the sample photos as JPEG (cycled) with
CONCURRENCY in flight, every answer checked against `Predictor` (same top-5 classes). FastAPI and Ray Serve rows
come from `bench_ray.py`'s `serve_rows` (`evit-deploy serve`, `serve --engine ray`); the Triton row from
`evit_deploy.triton.loadtest.bench_triton`: a `tritonserver` on the PATH, else the one bundled with nvidia-pytriton
(tritonserver 2.51, Python backend only: the graph runs with our runtime inside it, on the CPU), pipeline and
graph models with dynamic batching (max queue delay = --max-wait-ms), THREADS runtime threads, queried with
tritonclient's asyncio HTTP client. Client and servers share this machine's cores. Writes triton-cpu.md/.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench_ray import serve_rows
from bench_server import add_load_arguments, load_inputs

from evit_deploy.files import atomic_write, writing
from evit_deploy.host import library_versions, load_average, machine_facts
from evit_deploy.triton.loadtest import bench_triton

REPORTS = Path(__file__).resolve().parent / "reports"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    add_load_arguments(parser)
    parser.add_argument("--warmup", type=int, default=32, help="untimed requests to each server first")
    parser.add_argument("--threads", type=int, default=2, help="runtime threads of every server's model")
    parser.add_argument("--skip-ray", action="store_true", help="FastAPI and Triton only")
    parser.add_argument("--note", default="", help="a line added under the table (e.g. the machine was shared)")
    parser.add_argument("--out", type=Path, default=REPORTS, help="report folder")
    return parser.parse_args()


def new_report(machine: dict[str, Any], settings: dict[str, Any], rows: list[dict], **fields: Any) -> dict:
    """The report: when, the machine (``machine_facts`` taken at the start; the load average at the start and the
    end), the library versions, the settings and the rows (a plain dict; the typed report model of
    ``evit_deploy.bench.schema`` can take it over)."""
    machine = dict(machine)
    machine["load_start"] = machine.pop("load_average")
    machine["load_end"] = load_average()
    return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine,
            "versions": library_versions(), "settings": settings, **fields, "results": rows}


def markdown(report: dict, rows: list[dict], args: argparse.Namespace) -> str:
    m = report["machine"]
    load = f" (load average {m['load_start']} at the start, {m['load_end']} at the end)" if m["load_end"] else ""
    lines = [f"# Triton vs FastAPI vs Ray Serve: {report['model']} ({report['input_size'][0]}x"
             f"{report['input_size'][1]}, {report['target']})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores shared by the servers and the client{load}; "
             f"{report['created']}. "
             f"{args.requests} requests at concurrency {args.concurrency} after {args.warmup} warm-up requests, "
             f"sample photos as JPEG, every answer checked; max batch {args.max_batch}, max wait "
             f"{args.max_wait_ms:g} ms, {args.threads} runtime threads. Produced by `latency/bench_triton.py`.", "",
             "| server | ok | errors | wrong | p50 (ms) | p99 (ms) | throughput (req/s) | vs FastAPI | mean batch | "
             "ready after (s) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lat, mean = r["latency_ms"], r["mean_batch"]
        lines.append(f"| {r['config']} | {r['ok']} | {r['errors']} | {r['wrong_outputs']} | {lat['p50']:.1f} | "
                     f"{lat['p99']:.1f} | {r['throughput_rps']:.1f} | {r['vs_fastapi']:.2f} | "
                     f"{'n/a' if mean is None else f'{mean:.2f}'} | {r['ready_s']:.0f} |")
    lines += ["", "Latency = request sent → answer received at the client (decode, pre-processing, queueing, model "
                  "run, post-processing, JSON). Mean batch: images per graph run, from each server's metrics (Triton: "
                  "`nv_inference_count` / `nv_inference_exec_count` of the graph model; n/a with several Ray "
                  "replicas). Triton row: the pipeline model (Python backend) calls the graph model through BLS.", ""]
    if args.note:
        lines += [args.note, ""]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    warnings.simplefilter("ignore")
    machine = machine_facts(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder, manifest, photos, expected = load_inputs(args.export, args.model, Path(tmp))
        if args.skip_ray:
            from bench_server import bench_config

            rows = [bench_config(folder, f"FastAPI server, {args.threads} threads", args.max_batch, args.max_wait_ms,
                                 args, photos, expected)]
        else:
            rows = serve_rows(Path(folder), args, photos, expected)
        triton = bench_triton(folder, photos, expected, args.requests, args.concurrency, args.warmup,
                              int(args.max_wait_ms * 1000), args.threads)
        rows.append(triton)
    base = rows[0]["throughput_rps"]
    for r in rows:
        r["vs_fastapi"] = round(r["throughput_rps"] / base, 2) if base else None
    settings = {"requests": args.requests, "concurrency": args.concurrency, "warmup": args.warmup,
                "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "threads": args.threads,
                "weights": "random", "payload": "sample photos as JPEG (quality 90), cycled",
                "clients": "httpx.AsyncClient (FastAPI, Ray Serve), tritonclient.http.aio (Triton), same machine",
                "note": args.note}
    report = new_report(machine, settings, rows, model=manifest.model, input_size=list(manifest.input_size),
                        target=manifest.target)
    text = markdown(report, rows, args)
    with writing(f"write the report to {args.out}"):
        atomic_write(args.out / "triton-cpu.json", json.dumps(report, indent=2) + "\n")
        atomic_write(args.out / "triton-cpu.md", text)
    print(text)


if __name__ == "__main__":
    main()
