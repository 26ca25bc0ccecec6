"""Benchmark: the fastest way to run EfficientViT on this x86 CPU, every contender in one alternation.

    .venv/bin/python latency/bench_cpu_fastest.py [--threads 2] [--models efficientvit-b1-r224 ...] [--rows ...]
        [--calib DIR] [--weights-dir DIR] [--block-s 0.5] [--min-blocks 5] [--ci 5] [--budget-s 240]
        [--warmup-s 1] [--no-native] [--stem cpu-fastest] [--out latency/reports]

Per model (B1 r224, seg-B1 Cityscapes 512x1024; batch 1): export cpu-ort (fp32), mobile-cpu-ort (fp32, static
batch), cpu-openvino fp32, bf16 and int8 (NNCF, calibrated on --calib, default the bundled sample photos) and
mobile-cpu-tflite fp32, each validated against PyTorch by the export. Then every row of the model is measured by
the worker protocol in one alternation (each backend in its own worker process, blocks alternating until every
median's 95% CI is within --ci % or --budget-s ends), with the same threads and input: PyTorch eager,
torch.compile (inductor; compiled in its worker before timing, the compile time reported apart), ONNX Runtime as
production runs it (spinning on), the same ONNX with spinning off (`ort-fp32-no-spin`, a variant that informs the
setting), the mobile-cpu-ort static-batch ONNX (`ort-fp32-static`), and each OpenVINO and LiteRT artifact, with
OpenVINO's benchmark_app and LiteRT's litert-benchmark beside their rows where installed. Every row states its
precision and what the runtime reported it ran. The fp32 arithmetic floor is the model's MACs over the fp32 (and
bf16) matrix-multiply rate measured in this process with the same threads (a rate, not a row). Writes
`cpu-fastest.{json,md,html}`.

Targets (issue 16): best fp32 artifact <= 1.5x the fp32 floor and <= 0.4x PyTorch eager; best artifact overall
(within its validated tolerance) <= 0.3x PyTorch eager and faster than torch.compile.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import torch

from evit_deploy.bench.schema import Machine
from evit_deploy.bench.scripts import (
    ScriptExport,
    export,
    fmt_ratio,
    matmul_rate,
    measure_exports,
    median,
    row_named,
    run_script,
    script_parser,
    script_report,
    settings_from,
    target_line,
    write_script_report,
)
from evit_deploy.bench.stats import ratio
from evit_deploy.runtime.cpu import precision_problem
from evit_deploy.zoo.stats import count_macs

CASES = {"efficientvit-b1-r224": (224, 224), "efficientvit-seg-b1-cityscapes": (512, 1024)}
# row -> (target, precision, formats measured, shared_cpu) of the export it runs
EXPORTS = {"ort-fp32": ("cpu-ort", "fp32", None, False),
           "ort-fp32-no-spin": ("cpu-ort", "fp32", None, True),
           "ort-fp32-static": ("mobile-cpu-ort", "fp32", ("onnx",), False),
           "openvino-fp32": ("cpu-openvino", "fp32", None, False),
           "openvino-bf16": ("cpu-openvino", "bf16", None, False),
           "openvino-int8": ("cpu-openvino", "int8", None, False),
           "litert-fp32": ("mobile-cpu-tflite", "fp32", None, False)}
VARIANTS = {"ort-fp32-no-spin": "the cpu-ort ONNX with ONNX Runtime's idle threads not spinning",
            "ort-fp32-static": "the mobile-cpu-ort ONNX: batch axis fixed to 1 at export"}
ROWS = ("pytorch-eager", "pytorch-compile", *EXPORTS)
ISSUE_FLOOR = {"efficientvit-b1-r224": 5.4}  # ms, the issue's fp32 floor for 2 cores of this machine class
FLOOR_TARGET, FP32_TARGET, BEST_TARGET = 1.5, 0.4, 0.3


def case_exports(name: str, rows: list[str], workdir: Path, weights: str | None, calib: str | None
                 ) -> list[ScriptExport]:
    """The exports the asked rows need; the first carries the PyTorch rows."""
    made: dict[tuple[str, str], ScriptExport] = {}
    exports = []
    for label in [r for r in rows if r in EXPORTS]:
        target, precision, formats, shared_cpu = EXPORTS[label]
        first = made.get((target, precision))
        folder = workdir / f"{name}-{target}-{precision}"
        if first is None:
            first = made[(target, precision)] = export(
                name, target, folder, label, precision, CASES[name], weights, calib if precision == "int8" else None)
        exports.append(replace(first, label=label, formats=formats, pytorch=not exports, shared_cpu=shared_cpu))
    return exports


def verdicts(name: str, rows: list, floor_ms: float) -> list[str]:
    """The issue's targets for one model, from its rows (variants are diagnostics, not contenders)."""
    eager, compiled = median(row_named(rows, "pytorch-eager", name)), median(row_named(rows, "pytorch-compile", name))
    contenders = [r for r in rows if r.model == name and r.artifact and r.extra["row"] not in VARIANTS
                  and r.extra.get("validated") and median(r) is not None]
    fp32 = [r for r in contenders if r.precision == "fp32"]
    out = []
    if fp32:
        best = min(fp32, key=median)
        floor, vs = ratio(median(best), floor_ms), ratio(median(best), eager)
        out += [target_line(f"{name}: best fp32 artifact ({best.extra['row']}) / fp32 floor", fmt_ratio(floor),
                            f"<= {FLOOR_TARGET:g}x", floor <= FLOOR_TARGET),
                target_line(f"{name}: best fp32 artifact ({best.extra['row']}) / PyTorch eager", fmt_ratio(vs),
                            f"<= {FP32_TARGET:g}x", None if vs is None else vs <= FP32_TARGET)]
    if contenders:
        best = min(contenders, key=median)
        vs, ahead = ratio(median(best), eager), ratio(median(best), compiled)
        out += [target_line(f"{name}: best artifact ({best.extra['row']}, {best.precision}) / PyTorch eager",
                            fmt_ratio(vs), f"<= {BEST_TARGET:g}x", None if vs is None else vs <= BEST_TARGET),
                target_line(f"{name}: best artifact ({best.extra['row']}) / torch.compile", fmt_ratio(ahead),
                            "< 1x (faster)", None if ahead is None else ahead < 1)]
    return out


def main() -> None:
    parser = script_parser(__doc__, budget_s=240.0)
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS,
                        help="rows to measure (pytorch-eager, the reference of every ratio, always is)")
    parser.add_argument("--calib", help="int8 calibration images (default: the bundled sample photos)")
    parser.add_argument("--weights-dir", type=Path, help="official checkpoints named <model with _>.pt")
    parser.add_argument("--stem", default="cpu-fastest", help="report file name stem")
    args = parser.parse_args()
    machine = Machine.here(args.threads or None)  # its load average at the start
    settings = settings_from(args, baselines=["eager", "compile"] if "pytorch-compile" in args.rows else ["eager"])
    warnings.simplefilter("ignore")
    rates = {"fp32": matmul_rate(torch.float32, args.threads), "bf16": matmul_rate(torch.bfloat16, args.threads)}
    rows, skipped, floors = [], [], []
    bf16_problem = precision_problem("bf16")  # a CPU without bf16 cannot export or run the bf16 rows: named, skipped
    if bf16_problem:
        skipped += [f"{r}: {bf16_problem}" for r in args.rows if EXPORTS.get(r, ("", ""))[1] == "bf16"]
        args.rows = [r for r in args.rows if EXPORTS.get(r, ("", ""))[1] != "bf16"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            weights = str(args.weights_dir / f"{name.replace('-', '_')}.pt") if args.weights_dir else None
            exports = case_exports(name, args.rows, Path(tmp), weights, args.calib)
            if not exports:
                parser.error("--rows names no artifact row: nothing beside PyTorch to measure")
            measured, missed = measure_exports(exports, settings)  # one alternation per model
            macs = count_macs(name, CASES[name])
            floor = {p: 2 * macs / (rate * 1e9) * 1e3 for p, rate in rates.items()}
            compiled = median(row_named(measured, "pytorch-compile", name))
            for row in measured:
                row.extra["vs_compile"] = ratio(median(row), compiled)
                row.extra["vs_floor"] = ratio(median(row), floor["fp32"])
            floors.append([name, "x".join(map(str, CASES[name])), macs / 1e9, floor["fp32"], floor["bf16"],
                           ISSUE_FLOOR.get(name)])
            rows += measured
            skipped += missed
    report = script_report("Fastest on this x86 CPU: PyTorch, ONNX Runtime, OpenVINO, LiteRT side by side", settings,
                           "bench_cpu_fastest.py", rows=rows, skipped=skipped, machine=machine)
    report.settings |= {"rows": args.rows, "rates_gflops": rates, "int8_calibration": args.calib or "bundled sample "
                        "photos", "weights": "official checkpoints" if args.weights_dir else "random (latency does "
                        "not depend on weights)"}
    report.columns = {"row": "row", "vs_compile": "/ compile", "vs_floor": "/ fp32 floor", "validated": "validated",
                      "max_rel": "max rel err", "size_mib": "size MiB"}
    report.sections["tables"] = [{
        "title": "The arithmetic floor",
        "columns": ["model", "input", "GMAC", "fp32 floor ms", "bf16 floor ms", "the issue's fp32 floor ms"],
        "rows": floors,
        "note": f"Floor = MACs x 2 / the matrix-multiply rate measured here with {args.threads} threads (1024x1024 "
                f"products, best of 1 s): fp32 {rates['fp32']:.0f} GFLOP/s, bf16 {rates['bf16']:.0f} GFLOP/s. The "
                "issue's 5.4 ms for B1 r224 assumes 193 GFLOP/s on 2 cores."}]
    report.notes += [target for name, *_ in floors for target in verdicts(
        name, rows, next(f[3] for f in floors if f[0] == name))]
    report.notes += [
        "Rows: `ort-fp32` is the cpu-ort ONNX as ONNX Runtime runs it in production (idle threads spin); "
        + "; ".join(f"`{k}` {v}" for k, v in VARIANTS.items()) + " (variants: diagnostics, not contenders for the "
        "targets). `openvino-*` are cpu-openvino artifacts, the inference precision pinned and read back from the "
        "compiled model (int8: its float parts); `litert-fp32` the mobile-cpu-tflite file on XNNPACK.",
        "Errors are against PyTorch fp32 on the validation photos (random weights unless --weights-dir). Every "
        "export of a model is measured in the same alternation; the two models in separate ones."]
    write_script_report(args.out, args.stem, report)


if __name__ == "__main__":
    run_script(main)
