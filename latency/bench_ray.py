"""Benchmark: Ray Serve vs the one-machine FastAPI server, and `predict --engine ray` vs `predict`, same export.

    .venv/bin/python latency/bench_ray.py [--export DIR | --model NAME] [--requests 200] [--concurrency 16]
        [--max-batch 8] [--max-wait-ms 5] [--warmup 32] [--threads 2] [--images 200] [--batch 8] [--skip-serve]
        [--skip-batch] [--out latency/reports]

Serving: the same load as `bench_server.py` (REQUESTS POST /v1/predict of the sample photos as JPEG, CONCURRENCY
in flight, after --warmup requests, every answer checked against `Predictor`) on `evit-deploy serve` (THREADS
runtime threads), on `serve --engine ray` with 1 replica x THREADS threads and with THREADS replicas x 1 thread,
each Ray Serve run on its own local cluster started by the command. Throughput ratio = Ray Serve / FastAPI;
request latencies are summarised by the one statistics function (`evit_deploy.bench.stats.summarize`). Target
(issue 17): Ray Serve >= 0.7x the FastAPI server's throughput.

Batch: `evit-deploy predict` and `predict --engine ray` (its own local cluster, THREADS actors x 1 thread) on
IMAGES different crops of the sample photos, as the user runs them (a process each, wall clock). Each is also run
on one image; (IMAGES - 1) / (wall - wall of one image) is the steady rate without the fixed start-up cost
(imports, model load, Ray's cluster and actors). The outputs of both are compared file by file.

Without --export, MODEL (default efficientvit-b1-r224, random weights) is exported to `cpu-ort` in a temporary
folder. Client, servers and Ray share this machine's cores. An HTTP load test and whole commands, not protocol
rows: the report has tables, no latency rows. Writes ray-cpu.{json,md,html}.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from bench_server import add_load_arguments, bench_config, load_inputs, load_settings, servers_table
from PIL import Image

from evit_deploy.bench.schema import Machine
from evit_deploy.bench.scripts import (
    fmt_ratio,
    progress,
    run_script,
    script_parser,
    script_report,
    target_line,
    write_script_report,
)
from evit_deploy.samples import sample_photos

RAY_TARGET = 0.7


def serve_rows(folder: Path, args: argparse.Namespace, photos: dict[str, bytes],
               expected: dict[str, list[int]]) -> list[dict]:
    n = args.threads
    ray = ["--engine", "ray"]
    rows = [bench_config(folder, f"FastAPI server, {n} threads", args.max_batch, args.max_wait_ms, args, photos,
                         expected)]
    rows.append(bench_config(folder, f"Ray Serve, 1 replica x {n} threads", args.max_batch, args.max_wait_ms, args,
                             photos, expected, extra=[*ray, "--replicas", "1"]))
    if n > 1:
        rows.append(bench_config(folder, f"Ray Serve, {n} replicas x 1 thread", args.max_batch, args.max_wait_ms,
                                 args, photos, expected, extra=[*ray, "--replicas", str(n)], threads=1,
                                 batch_metrics=False))
    base = rows[0]["throughput_rps"]
    for r in rows:
        r["vs_fastapi"] = round(r["throughput_rps"] / base, 2) if base else None
    return rows


def make_images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = list(sample_photos().values())
    for i in range(count):
        a = arrays[i % len(arrays)]
        h, w = (int(v) for v in rng.integers(a.shape[0] // 3, a.shape[0] // 2 + 1, size=2))
        y, x = int(rng.integers(0, a.shape[0] - h)), int(rng.integers(0, a.shape[1] - w))
        Image.fromarray(a[y : y + h, x : x + w]).save(folder / f"img{i:04d}.jpg", quality=90)


def run_predict(folder: Path, inputs: Path, out: Path, extra: list[str]) -> float:
    """Wall seconds of one `evit-deploy predict` process (its output is kept in OUT/../log)."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "evit_deploy", "predict", str(folder), str(inputs), "-o", str(out),
                           *extra], capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"predict {' '.join(extra)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall


def same_outputs(a: Path, b: Path) -> bool:
    """Every file of ``a`` is in ``b`` with the same bytes (``b`` may also hold predictions.jsonl)."""
    return all((b / p.name).is_file() and (b / p.name).read_bytes() == p.read_bytes() for p in a.iterdir())


def batch_rows(folder: Path, args: argparse.Namespace, tmp: Path) -> list[dict]:
    images, one = tmp / "images", tmp / "one"
    make_images(images, args.images)
    one.mkdir()
    (one / "img0000.jpg").write_bytes((images / "img0000.jpg").read_bytes())
    engines = {"predict": ["--batch", str(args.batch), "--threads", str(args.threads)],
               "predict --engine ray": ["--batch", str(args.batch), "--engine", "ray", "--threads", "1",
                                        "--concurrency", str(args.threads)]}
    rows = []
    for label, extra in engines.items():
        key = label.replace(" ", "_").replace("-", "")
        progress(f"{label}: one image, then {args.images} images ...")
        wall_one = run_predict(folder, one, tmp / f"{key}-one", extra)
        wall = run_predict(folder, images, tmp / key, extra)
        steady = (args.images - 1) / (wall - wall_one) if wall > wall_one else None
        rows.append({"engine": label, "images": args.images, "wall_s": round(wall, 2),
                     "images_per_s": round(args.images / wall, 2), "wall_one_image_s": round(wall_one, 2),
                     "steady_images_per_s": round(steady, 2) if steady else None, "options": " ".join(extra)})
    rows[1]["same_outputs_as_predict"] = same_outputs(tmp / "predict", tmp / "predict_engine_ray")
    return rows


def serve_table(serve: list[dict], args: argparse.Namespace) -> dict:
    return servers_table(
        f"Serving: {args.requests} requests at concurrency {args.concurrency} (after {args.warmup} warm-up), max batch "
        f"{args.max_batch}, max wait {args.max_wait_ms:g} ms", serve,
        "Latency = request sent → response received at the client. Ray Serve rows include its HTTP proxy hop; mean "
        "batch from /metrics (one replica's registry: n/a with several replicas).")


def batch_table(batch: list[dict]) -> dict:
    same = batch[1]["same_outputs_as_predict"]
    return {
        "title": f"Batch prediction: {batch[0]['images']} images (JPEG crops of the sample photos)",
        "columns": ["engine", "wall (s)", "images/s", "wall, 1 image (s)", "steady images/s", "options"],
        "rows": [[r["engine"], r["wall_s"], r["images_per_s"], r["wall_one_image_s"],
                  "n/a" if r["steady_images_per_s"] is None else r["steady_images_per_s"], f"`{r['options']}`"]
                 for r in batch],
        "note": f"Same files as `predict`: {'yes' if same else '**no**'}. Wall = the whole command as a user runs it "
                "(imports, model load; for Ray also starting the local cluster and the actors). Steady = (images - 1) "
                "/ (wall - wall of 1 image)."}


def main() -> None:
    parser = script_parser(__doc__, threads=2, protocol=False)
    add_load_arguments(parser)
    parser.add_argument("--images", type=int, default=200, help="images of the batch job")
    parser.add_argument("--batch", type=int, default=8, help="images per model run of the batch job")
    parser.add_argument("--skip-serve", action="store_true")
    parser.add_argument("--skip-batch", action="store_true")
    args = parser.parse_args()
    machine = Machine.here(args.threads or None)  # its load average at the start
    warnings.simplefilter("ignore")
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        folder, manifest, photos, expected = load_inputs(args.export, args.model, Path(tmp))
        serve = [] if args.skip_serve else serve_rows(Path(folder), args, photos, expected)
        batch = [] if args.skip_batch else batch_rows(Path(folder), args, Path(tmp))

    size = f"{manifest.input_size[0]}x{manifest.input_size[1]}"
    report = script_report(f"Ray vs one machine: {manifest.model} ({size}, {manifest.target}), Ray {ray.__version__}",
                           load_settings(args, images=args.images, batch=args.batch), "bench_ray.py",
                           model=manifest.model, input_size=list(manifest.input_size), target=manifest.target,
                           machine=machine)
    report.versions.setdefault("ray", ray.__version__)
    report.sections["tables"] = ([serve_table(serve, args)] if serve else []) + ([batch_table(batch)] if batch else [])
    report.sections["load_tests"] = serve
    report.sections["batch_jobs"] = batch
    for r in serve[1:]:
        report.notes.append(target_line(f"(issue 17) {r['config']} throughput / the FastAPI server's",
                                        fmt_ratio(r["vs_fastapi"]), f">= {RAY_TARGET:g}x",
                                        None if r["vs_fastapi"] is None else r["vs_fastapi"] >= RAY_TARGET))
    report.notes.append("Servers, Ray and the client share this machine's cores.")
    write_script_report(args.out, "ray-cpu", report)


if __name__ == "__main__":
    run_script(main)
