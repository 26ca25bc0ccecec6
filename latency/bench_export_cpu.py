"""Benchmark: export time to `cpu-ort` and ONNX Runtime vs PyTorch eager latency on this machine.

    .venv/bin/python latency/bench_export_cpu.py [--threads 2] [--models ...] [--block-s 0.5] [--min-blocks 5]
        [--ci 5] [--budget-s 120] [--warmup-s 1] [--out latency/reports]

For each model: time `evit-deploy export` (build → export → simplify → check → validate → write), then measure
PyTorch eager and the exported ONNX model at batch 1 with the same threads by the worker protocol (each backend in
its own worker process, blocks alternating until every median's 95% CI is within --ci % or --budget-s ends; ONNX
Runtime with its production settings, spinning on). Both models' rows are one alternation. Writes
export-cpu-ort.{json,md,html}. Targets (issue: export spine): export < 30 s; ONNX Runtime median <= 0.5x PyTorch
eager.
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

CASES = {"efficientvit-b1-r224": (224, 224), "efficientvit-seg-b1-cityscapes": (512, 1024)}
EXPORT_TARGET_S = 30.0
RATIO_TARGET = 0.5


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    machine = Machine.here(args.threads or None)  # its load average at the start
    settings = settings_from(args)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        exports = [export(name, "cpu-ort", Path(tmp) / name, "cpu-ort", imgsz=CASES[name], pytorch=True)
                   for name in args.models]
        rows, skipped = measure_exports(exports, settings)
    report = script_report("Export to `cpu-ort` on this machine class", settings, "bench_export_cpu.py", rows=rows,
                           skipped=skipped, target="cpu-ort", machine=machine)
    report.settings["weights"] = "random (latency does not depend on weight values)"
    report.columns = {"export_s": "export s", "size_mib": "size MiB", "max_rel": "max rel err vs PyTorch"}
    for name in args.models:
        ort = row_named(rows, "cpu-ort", name)
        export_s = ort.extra["export_s"] if ort else None
        ratio = ort.ratio_to_eager if ort else None
        report.notes += [
            target_line(f"{name} export time", f"{export_s:.1f} s" if export_s else "-", f"< {EXPORT_TARGET_S:g} s",
                        None if export_s is None else export_s < EXPORT_TARGET_S),
            target_line(f"{name} ONNX Runtime / PyTorch eager", fmt_ratio(ratio), f"<= {RATIO_TARGET:g}x",
                        None if ratio is None else ratio <= RATIO_TARGET)]
    write_script_report(args.out, "export-cpu-ort", report)


if __name__ == "__main__":
    run_script(main)
