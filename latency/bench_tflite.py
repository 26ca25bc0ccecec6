"""Benchmark: LiteRT (TFLite) exports per precision vs PyTorch eager and ONNX Runtime on this machine.

    .venv/bin/python latency/bench_tflite.py [--threads 2] [--models ...] [--precisions fp32 fp16 int8-dynamic int8]
        [--block-s 0.5] [--min-blocks 5] [--ci 5] [--budget-s 180] [--warmup-s 1] [--no-native]
        [--out latency/reports]

For each model: export `mobile-cpu-tflite` in every precision (fp32, fp16, int8-dynamic, int8; int8 calibrated
on the bundled sample photos) and `cpu-ort` (ONNX Runtime), recording export time and file size; then measure
PyTorch eager, ONNX Runtime and each .tflite on LiteRT + XNNPACK at batch 1 with the same threads by the worker
protocol, all of one model in one alternation (each backend in its own worker process, blocks alternating until
every median's 95% CI is within --ci % or --budget-s ends), with LiteRT's own `litert-benchmark` on the same file
beside each .tflite row where installed. Writes `tflite-cpu.{json,md,html}`. Targets (issue #4): fp32 TFLite
median <= 0.5x PyTorch eager for EfficientViT-B1; int8 artifact <= 30% of the fp32 artifact.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from evit_deploy.bench.schema import Machine
from evit_deploy.bench.scripts import (
    export,
    fmt_ratio,
    measure_exports,
    row_named,
    run_script,
    script_parser,
    script_report,
    settings_from,
    target_line,
    write_script_report,
)
from evit_deploy.bench.stats import ratio

CASES = {"efficientvit-b1-r224": (224, 224), "efficientvit-seg-b1-cityscapes": (512, 1024)}
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8")
TARGET = "mobile-cpu-tflite"
SPEED_MODEL, SPEED_TARGET, SIZE_TARGET = "efficientvit-b1-r224", 0.5, 0.30


def main() -> None:
    parser = script_parser(__doc__, budget_s=180.0)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    machine = Machine.here(args.threads or None)  # its load average at the start
    settings = settings_from(args)
    warnings.simplefilter("ignore")
    rows, skipped, notes = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            size, work = CASES[name], Path(tmp)
            exports = [export(name, "cpu-ort", work / f"{name}-cpu-ort", "onnxruntime", imgsz=size, pytorch=True)]
            exports += [export(name, TARGET, work / f"{name}-{TARGET}-{p}", f"tflite-{p}", p, size)
                        for p in args.precisions]
            measured, missed = measure_exports(exports, settings)  # one alternation per model
            fp32 = row_named(measured, "tflite-fp32", name)
            for row in measured:
                if row.artifact:
                    row.extra["size_vs_fp32"] = ratio(row.extra["size_mib"], fp32.extra["size_mib"] if fp32 else None)
            if fp32 is not None and name == SPEED_MODEL:
                notes.append(target_line(f"{name} fp32 TFLite / PyTorch eager", fmt_ratio(fp32.ratio_to_eager),
                                         f"<= {SPEED_TARGET:g}x", None if fp32.ratio_to_eager is None
                                         else fp32.ratio_to_eager <= SPEED_TARGET))
            int8 = row_named(measured, "tflite-int8", name)
            share = int8.extra.get("size_vs_fp32") if int8 else None
            if share is not None:
                notes.append(target_line(f"{name} int8 size / fp32 .tflite", f"{share:.0%}", f"<= {SIZE_TARGET:.0%}",
                                         share <= SIZE_TARGET))
            rows += measured
            skipped += missed
    report = script_report("LiteRT (TFLite) exports on this machine class", settings, "bench_tflite.py", rows=rows,
                           skipped=skipped, machine=machine)
    report.settings |= {"precisions": args.precisions, "tflite_runtime": "ai-edge-litert Interpreter + XNNPACK",
                        "int8_calibration": "bundled sample photos",
                        "weights": "random (latency does not depend on weight values)"}
    report.columns = {"row": "artifact", "export_s": "export s", "size_mib": "size MiB",
                      "size_vs_fp32": "size / fp32 .tflite", "max_rel": "max rel err vs PyTorch",
                      "agreement": "agreement"}
    report.notes += notes + [
        "TFLite runs on ai-edge-litert with the XNNPACK delegate (its partitions in each row's settings); int8 is "
        "calibrated on the bundled sample photos; random weights (latency does not depend on weight values; the "
        "errors are for random weights). Each model's rows are one alternation."]
    write_script_report(args.out, "tflite-cpu", report)


if __name__ == "__main__":
    run_script(main)
