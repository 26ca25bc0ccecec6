"""Benchmark: export time to `cpu-ort` and ONNX Runtime vs PyTorch eager latency on this machine.

    .venv/bin/python latency/bench_export_cpu.py [--runs 30] [--threads 2] [--out latency/reports]

For each model: time `evit-deploy export` (build → export → simplify → check → validate → write), then time
PyTorch eager and the exported ONNX model at batch 1 with the same thread count, interleaved round-robin
(one call of each per round) so machine noise hits both alike. Writes a Markdown table and the raw JSON.
Targets (issue: export spine): export < 30 s; ONNX Runtime median <= 0.5x PyTorch eager.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from evit_deploy import create_model, runtime
from evit_deploy.bench.harness import cpu_model
from evit_deploy.bench.measure import Contender, interleaved
from evit_deploy.export.pipeline import ExportRequest, run_export, versions

CASES = [("efficientvit-b1-r224", (224, 224)), ("efficientvit-seg-b1-cityscapes", (512, 1024))]


def bench_case(name: str, size: tuple[int, int], runs: int, warmup: int, threads: int, workdir: Path) -> dict:
    started = time.perf_counter()
    result = run_export(ExportRequest(name, "cpu-ort", imgsz=size, output=str(workdir / name)))
    export_s = time.perf_counter() - started

    model = create_model(name)
    backend = runtime.load(result.folder, threads=threads, shared_cpu=True)
    x = torch.randn(1, 3, *size)
    x_np = x.numpy()
    contenders = [Contender("pytorch", lambda: model(x)), Contender("onnxruntime", lambda: backend(x_np))]
    with torch.inference_mode():
        interleaved(contenders, runs, warmup)
    timings = {c.key: c.times_ms for c in contenders}
    stats = {k: {"median_ms": statistics.median(v), "p90_ms": float(np.percentile(v, 90)),
                 "min_ms": min(v), "std_ms": statistics.pstdev(v)} for k, v in timings.items()}
    return {"model": name, "input_size": list(size), "export_s": export_s, "latency": stats,
            "ratio_ort_over_pytorch": stats["onnxruntime"]["median_ms"] / stats["pytorch"]["median_ms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "reports")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench_case(n, s, args.runs, args.warmup, args.threads, Path(tmp)) for n, s in CASES]
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": args.threads,
               "platform": platform.platform()}
    report = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine,
              "settings": {"batch": 1, "runs": args.runs, "warmup": args.warmup, "order": "interleaved rounds",
                           "weights": "random (latency does not depend on weight values)"},
              "versions": versions(), "results": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "export-cpu-ort.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Export to `cpu-ort` on this machine class",
        "",
        f"Machine: {machine['cpu']}, {args.threads} threads; batch 1; median of {args.runs} interleaved runs "
        f"after {args.warmup} warm-up rounds; {report['created']}. Produced by `latency/bench_export_cpu.py`.",
        "",
        "| model | input | export (s) | PyTorch eager median (ms) | ONNX Runtime median (ms) | ORT / PyTorch |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lat = r["latency"]
        lines.append(
            f"| {r['model']} | {r['input_size'][0]}x{r['input_size'][1]} | {r['export_s']:.1f} | "
            f"{lat['pytorch']['median_ms']:.1f} | {lat['onnxruntime']['median_ms']:.1f} | "
            f"{r['ratio_ort_over_pytorch']:.2f} |"
        )
    lines += ["", "Targets: export < 30 s; ONNX Runtime <= 0.5x PyTorch eager (ratio measured in one run).", ""]
    (args.out / "export-cpu-ort.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
