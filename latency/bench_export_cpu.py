"""Benchmark: export time to `cpu-ort` and ONNX Runtime vs PyTorch eager latency on this machine.

    .venv/bin/python latency/bench_export_cpu.py [--runs 30] [--threads 2] [--out latency/reports]

For each model: time `evit-deploy export` (build → export → simplify → check → validate → write), then time
PyTorch eager and the exported ONNX model at batch 1 with the same thread count, interleaved round-robin
(one call of each per round) so machine noise hits both alike. Writes a Markdown table and the raw JSON.
Targets (issue: export spine): export < 30 s; ONNX Runtime median <= 0.5x PyTorch eager.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path

import torch

from evit_deploy import create_model, runtime
from evit_deploy.bench.scripts import new_report, script_parser, time_calls, write_report
from evit_deploy.export.pipeline import ExportRequest, run_export

CASES = [("efficientvit-b1-r224", (224, 224)), ("efficientvit-seg-b1-cityscapes", (512, 1024))]


def bench_case(name: str, size: tuple[int, int], runs: int, warmup: int, threads: int, workdir: Path) -> dict:
    started = time.perf_counter()
    result = run_export(ExportRequest(name, "cpu-ort", imgsz=size, output=str(workdir / name)))
    export_s = time.perf_counter() - started
    model = create_model(name)
    backend = runtime.load(result.folder, threads=threads, shared_cpu=True)
    x = torch.randn(1, 3, *size)
    x_np = x.numpy()
    latency = time_calls({"pytorch": lambda: model(x), "onnxruntime": lambda: backend(x_np)}, runs, warmup)
    return {"model": name, "input_size": list(size), "export_s": export_s, "latency_ms": latency,
            "ratio_ort_over_pytorch": latency["onnxruntime"]["median"] / latency["pytorch"]["median"]}


def markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    lines = [
        "# Export to `cpu-ort` on this machine class",
        "",
        f"Machine: {m['cpu']}, {m['threads']} threads; batch 1; median of {s['runs']} interleaved runs after "
        f"{s['warmup']} warm-up rounds; {report['created']}. Produced by `latency/bench_export_cpu.py`.",
        "",
        "| model | input | export (s) | PyTorch eager median (ms) | ONNX Runtime median (ms) | ORT / PyTorch |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lat = r["latency_ms"]
        lines.append(f"| {r['model']} | {r['input_size'][0]}x{r['input_size'][1]} | {r['export_s']:.1f} | "
                     f"{lat['pytorch']['median']:.1f} | {lat['onnxruntime']['median']:.1f} | "
                     f"{r['ratio_ort_over_pytorch']:.2f} |")
    lines += ["", "Targets: export < 30 s; ONNX Runtime <= 0.5x PyTorch eager (ratio measured in one run).", ""]
    return "\n".join(lines)


def main() -> None:
    args = script_parser(__doc__).parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench_case(n, s, args.runs, args.warmup, args.threads, Path(tmp)) for n, s in CASES]
    report = new_report(args.threads, {"batch": 1, "runs": args.runs, "warmup": args.warmup,
                                       "order": "interleaved rounds",
                                       "weights": "random (latency does not depend on weight values)"}, rows)
    write_report(args.out, "export-cpu-ort", report, markdown(report))


if __name__ == "__main__":
    main()
