"""Benchmark: Triton Inference Server (the repository `evit-deploy triton` writes) beside the FastAPI server and
Ray Serve, same export, same load.

    .venv/bin/python latency/bench_triton.py [--export DIR | --model NAME] [--requests 200] [--concurrency 16]
        [--max-batch 8] [--max-wait-ms 5] [--warmup 32] [--threads 2] [--skip-ray] [--note TEXT]
        [--out latency/reports]

Each server gets --warmup untimed requests, then REQUESTS requests of the sample photos as JPEG (cycled) with
CONCURRENCY in flight, every answer checked against `Predictor` (same top-5 classes). FastAPI and Ray Serve rows
come from `bench_ray.py`'s `serve_rows` (`evit-deploy serve`, `serve --engine ray`); the Triton row from
`evit_deploy.triton.loadtest.bench_triton`: a `tritonserver` on the PATH, else the one bundled with nvidia-pytriton
(tritonserver 2.51, Python backend only: the graph runs with our runtime inside it, on the CPU), pipeline and
graph models with dynamic batching (max queue delay = --max-wait-ms), THREADS runtime threads, queried with
tritonclient's asyncio HTTP client. Request latencies are summarised by the one statistics function
(`evit_deploy.bench.stats.summarize`, through `LoadResult.summary`). Client and servers share this machine's cores.
An HTTP load test, not protocol rows: the report has a table, no latency rows. Writes triton-cpu.{json,md,html}.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

from bench_ray import serve_rows
from bench_server import add_load_arguments, bench_config, load_inputs, load_settings, servers_table

from evit_deploy.bench.schema import Machine
from evit_deploy.bench.scripts import run_script, script_parser, script_report, write_script_report
from evit_deploy.triton.loadtest import bench_triton


def parse_args() -> argparse.Namespace:
    parser = script_parser(__doc__, threads=2, protocol=False)
    add_load_arguments(parser)
    parser.add_argument("--skip-ray", action="store_true", help="FastAPI and Triton only")
    parser.add_argument("--note", default="", help="a line added to the report (e.g. the machine was shared)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    machine = Machine.here(args.threads or None)  # its load average at the start
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        folder, manifest, photos, expected = load_inputs(args.export, args.model, Path(tmp))
        if args.skip_ray:
            rows = [bench_config(folder, f"FastAPI server, {args.threads} threads", args.max_batch, args.max_wait_ms,
                                 args, photos, expected)]
        else:
            rows = serve_rows(Path(folder), args, photos, expected)
        rows.append(bench_triton(folder, photos, expected, args.requests, args.concurrency, args.warmup,
                                 int(args.max_wait_ms * 1000), args.threads))
    base = rows[0]["throughput_rps"]
    for r in rows:
        r["vs_fastapi"] = round(r["throughput_rps"] / base, 2) if base else None
    size = f"{manifest.input_size[0]}x{manifest.input_size[1]}"
    settings = load_settings(args, clients="httpx.AsyncClient (FastAPI, Ray Serve), tritonclient.http.aio (Triton), "
                                           "same machine", note=args.note)
    report = script_report(f"Triton vs FastAPI vs Ray Serve: {manifest.model} ({size}, {manifest.target})", settings,
                           "bench_triton.py", model=manifest.model, input_size=list(manifest.input_size),
                           target=manifest.target, machine=machine)
    report.sections["tables"] = [servers_table(
        f"{args.requests} requests at concurrency {args.concurrency} (after {args.warmup} warm-up), max batch "
        f"{args.max_batch}, max wait {args.max_wait_ms:g} ms, {args.threads} runtime threads", rows,
        "Latency = request sent → answer received at the client (decode, pre-processing, queueing, model run, "
        "post-processing, JSON). Mean batch: images per graph run, from each server's metrics (Triton: "
        "`nv_inference_count` / `nv_inference_exec_count` of the graph model; n/a with several Ray replicas). "
        "Triton row: the pipeline model (Python backend) calls the graph model through BLS.")]
    report.sections["load_tests"] = rows
    wrong = sum(r["wrong_outputs"] for r in rows)
    report.notes.append(f"Every answer checked against `Predictor` (same top-5 classes): {wrong} wrong. Servers and "
                        "the client share this machine's cores.")
    if args.note:
        report.notes.append(args.note)
    write_script_report(args.out, "triton-cpu", report)


if __name__ == "__main__":
    run_script(main)
