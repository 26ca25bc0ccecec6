"""Benchmark: the fastest way to run EfficientViT on this x86 CPU, every contender in one interleaved run.

    .venv/bin/python latency/bench_cpu_fastest.py [--runs 50] [--warmup 10] [--threads 2] [--out latency/reports]
        [--models efficientvit-b1-r224 efficientvit-seg-b1-cityscapes] [--rows ...] [--calib DIR] [--weights-dir DIR]

Per model (B1 r224, seg-B1 Cityscapes 512x1024; batch 1): export cpu-ort (fp32), cpu-openvino fp32, bf16 and int8
(NNCF, calibrated on --calib, default the bundled sample photos) and mobile-cpu-tflite fp32 (each validated against
PyTorch by the export), then time PyTorch eager, torch.compile (inductor; timed after compiling, the compile time
reported apart), ONNX Runtime (as the runtime runs it, plus variants that inform its settings: a static batch, and
spinning worker threads with a short spin) and each artifact, interleaved round-robin with the same threads and
input. Every row states its precision and what the runtime reported it ran. The fp32 arithmetic floor is the
model's MACs over the fp32 (and bf16) matrix-multiply rate measured here with the same threads. Writes
`cpu-fastest.md` and `cpu-fastest.json`.

Targets (issue 16): best fp32 artifact <= 1.5x the fp32 floor and <= 0.4x PyTorch eager; best artifact overall
(within its validated tolerance) <= 0.3x PyTorch eager and faster than torch.compile.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evit_deploy import create_model, runtime
from evit_deploy.bench.harness import compiled_baseline
from evit_deploy.bench.scripts import new_report, script_parser, time_calls, write_report
from evit_deploy.export.pipeline import ExportRequest, run_export
from evit_deploy.optional import require
from evit_deploy.zoo.stats import count_macs

CASES = {"efficientvit-b1-r224": (224, 224), "efficientvit-seg-b1-cityscapes": (512, 1024)}
# row → (target, precision) of the export it runs; None: PyTorch or an ONNX Runtime variant of the cpu-ort export
EXPORTS = {"ort-fp32": ("cpu-ort", "fp32"), "openvino-fp32": ("cpu-openvino", "fp32"),
           "openvino-bf16": ("cpu-openvino", "bf16"), "openvino-int8": ("cpu-openvino", "int8"),
           "litert-fp32": ("mobile-cpu-tflite", "fp32")}
VARIANTS = {"ort-fp32-static": "batch axis fixed to 1 at load",
            "ort-fp32-spin": "worker threads spin between operators, stopped when each run ends"}
ORT_VARIANTS = tuple(VARIANTS)
ROWS = ("pytorch-eager", "pytorch-compile", *EXPORTS, *ORT_VARIANTS)
ISSUE_FLOOR = {"efficientvit-b1-r224": 5.4}  # ms, the issue's fp32 floor for 2 cores of this machine class


def matmul_rate(dtype: torch.dtype, threads: int, n: int = 1024, seconds: float = 1.0) -> float:
    """Achieved GFLOP/s of an n x n matrix product in ``dtype`` with ``threads`` threads (best of repeated runs)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b)
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def export(name: str, size: tuple[int, int], target: str, precision: str, workdir: Path, weights: str | None,
           calib: str | None) -> dict[str, Any]:
    started = time.perf_counter()
    out = workdir / f"{name}-{target}-{precision}"
    result = run_export(ExportRequest(name, target, weights, imgsz=size, precision=precision, output=str(out),
                                      calib=calib if precision == "int8" else None))
    entry = next(a for a in reversed(result.manifest.artifacts) if a.role == "model")
    report = next(r for r in result.reports if r.artifact == entry.path)
    return {"folder": out, "path": entry.path, "precision": entry.precision, "export_s": time.perf_counter() - started,
            "size_bytes": sum((out / p).stat().st_size for p in entry.paths), "validated": report.passed,
            "max_rel_vs_pytorch": max(m["max_rel"] for m in report.outputs.values()),
            "min_cosine_vs_pytorch": min(m["min_cosine"] for m in report.outputs.values()),
            "agreement": report.agreement}


def ort_variant(path: Path, threads: int, variant: str) -> Callable[[np.ndarray], object]:
    """A raw ONNX Runtime session: ``static`` fixes the batch axis to 1 at load; ``spin`` lets the worker threads
    spin between operators instead of sleeping, and stops them when a run ends (``session.force_spinning_stop``),
    so the next contender is not slowed (the runtime's shared_cpu setting: no spinning)."""
    ort = require("onnxruntime", "the ONNX Runtime variants")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if variant == "spin" else "0")
    if variant == "spin":
        options.add_session_config_entry("session.force_spinning_stop", "1")
    if variant == "static":
        options.add_free_dimension_override_by_name("batch", 1)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x})


def bench_case(name: str, args: argparse.Namespace, rates: dict[str, float], workdir: Path) -> dict[str, Any]:
    size = CASES[name]
    weights = str(args.weights_dir / f"{name.replace('-', '_')}.pt") if args.weights_dir else None
    exports = {}
    for row in [r for r in args.rows if r in EXPORTS or (r in ORT_VARIANTS and "ort-fp32" not in args.rows)]:
        target, precision = EXPORTS.get(row, EXPORTS["ort-fp32"])
        key = row if row in EXPORTS else "ort-fp32"
        if key not in exports:
            print(f"[{name}] exporting {target} {precision} ...", file=sys.stderr, flush=True)
            exports[key] = export(name, size, target, precision, workdir, weights, args.calib)

    model = create_model(name, weights)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    x_np = x.numpy()
    calls: dict[str, Callable[[], object]] = {}
    rows: dict[str, dict[str, Any]] = {}
    calls["pytorch-eager"] = lambda: model(x)  # always: the reference of every ratio
    rows["pytorch-eager"] = {"precision": "fp32", "runtime": {"backend": "pytorch eager"}}
    if "pytorch-compile" in args.rows:
        print(f"[{name}] torch.compile (inductor) ...", file=sys.stderr, flush=True)
        calls["pytorch-compile"], compile_s = compiled_baseline(model, lambda m: m(x))
        rows["pytorch-compile"] = {"precision": "fp32", "compile_s": compile_s,
                                   "runtime": {"backend": "torch.compile(backend='inductor', dynamic=False)"}}
    for row in args.rows:
        if row in EXPORTS:
            info = exports[row]
            backend = runtime.load(info["folder"] / info["path"], threads=args.threads, shared_cpu=True)
            calls[row] = (lambda b: lambda: b(x_np))(backend)
            rows[row] = {k: v for k, v in info.items() if k != "folder"} | {"runtime": {"backend": backend.name,
                                                                                        **backend.facts}}
        elif row in ORT_VARIANTS:
            run = ort_variant(exports["ort-fp32"]["folder"] / "model.onnx", args.threads, row.rsplit("-", 1)[1])
            calls[row] = (lambda r: lambda: r(x_np))(run)
            rows[row] = {"precision": "fp32", "runtime": {"backend": "onnxruntime", "variant": VARIANTS[row]}}
    latency = time_calls(calls, args.runs, args.warmup)
    eager = latency["pytorch-eager"]["median"]
    compiled = latency.get("pytorch-compile", {}).get("median")
    macs = count_macs(name, size)
    floors = {p: 2 * macs / (rate * 1e9) * 1e3 for p, rate in rates.items()}
    for key, row in rows.items():
        median = latency[key]["median"]
        row |= {"latency_ms": latency[key], "vs_eager": median / eager,
                "vs_compile": median / compiled if compiled else None, "vs_fp32_floor": median / floors["fp32"]}
    return {"model": name, "input_size": list(size), "macs": macs, "floor_ms": floors,
            "issue_floor_ms": ISSUE_FLOOR.get(name), "rows": rows}


def verdicts(case: dict[str, Any]) -> list[str]:
    rows = case["rows"]
    artifacts = {k: r for k, r in rows.items() if k in EXPORTS and r["validated"]}  # ORT variants: diagnostics
    fp32 = {k: r for k, r in artifacts.items() if r["precision"] == "fp32"}
    out = []
    if fp32:
        key = min(fp32, key=lambda k: fp32[k]["latency_ms"]["median"])
        r = fp32[key]
        out.append(f"best fp32 artifact {key}: {r['vs_fp32_floor']:.2f}x the fp32 floor (target <= 1.5: "
                   f"{'met' if r['vs_fp32_floor'] <= 1.5 else 'NOT met'}), {r['vs_eager']:.2f}x PyTorch eager "
                   f"(target <= 0.4: {'met' if r['vs_eager'] <= 0.4 else 'NOT met'})")
    if artifacts:
        key = min(artifacts, key=lambda k: artifacts[k]["latency_ms"]["median"])
        r = artifacts[key]
        ahead = r["vs_compile"] is None or r["vs_compile"] < 1
        versus = f", {r['vs_compile']:.2f}x torch.compile" if r["vs_compile"] else " (torch.compile not measured)"
        out.append(f"best artifact {key} ({r['precision']}): {r['vs_eager']:.2f}x PyTorch eager (target <= 0.3: "
                   f"{'met' if r['vs_eager'] <= 0.3 else 'NOT met'}){versus} (ahead: {'yes' if ahead else 'NO'})")
    return out


def markdown(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["settings"]
    lines = ["# Fastest on this x86 CPU: PyTorch, ONNX Runtime, OpenVINO, LiteRT side by side", "",
             f"Machine: {m['cpu']}, {m['threads']} threads; batch 1; median of {s['runs']} interleaved runs after "
             f"{s['warmup']} warm-up calls each; {report['created']}. Produced by `latency/bench_cpu_fastest.py`; "
             f"weights: {s['weights']}. Matrix-multiply rate measured here: fp32 {s['rates_gflops']['fp32']:.0f} "
             f"GFLOP/s, bf16 {s['rates_gflops']['bf16']:.0f} GFLOP/s.", ""]
    for case in report["results"]:
        floor = case["floor_ms"]
        issue = f"; the issue's fp32 floor {case['issue_floor_ms']} ms" if case["issue_floor_ms"] else ""
        lines += [f"## {case['model']} ({'x'.join(map(str, case['input_size']))})", "",
                  f"{case['macs'] / 1e9:.2f} GMAC: fp32 floor {floor['fp32']:.2f} ms, bf16 floor {floor['bf16']:.2f} ms"
                  f" (MACs x 2 / the rate above){issue}.", "",
                  "| row | precision | runs as | median ms | min ms | p90 ms | / eager | / compile | / fp32 floor "
                  "| validated | max rel err | size MiB |", "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
        for key, r in case["rows"].items():
            lat, rt = r["latency_ms"], r.get("runtime", {})
            ran = rt.get("inference_precision", "")
            compile_ratio = f"{r['vs_compile']:.2f}" if r["vs_compile"] else "-"
            size = f"{r['size_bytes'] / 2**20:.1f}" if "size_bytes" in r else "-"
            err = f"{r['max_rel_vs_pytorch']:.1e}" if "max_rel_vs_pytorch" in r else "-"
            valid = {True: "yes", False: "NO"}.get(r.get("validated"), "-")
            lines.append(f"| {key} | {r['precision']} | {ran or '-'} | {lat['median']:.2f} | {lat['min']:.2f} | "
                         f"{lat['p90']:.2f} | "
                         f"{r['vs_eager']:.2f} | {compile_ratio} | {r['vs_fp32_floor']:.2f} | {valid} | {err} "
                         f"| {size} |")
        if "pytorch-compile" in case["rows"]:
            lines += ["", f"torch.compile compile time (not in the latency): "
                          f"{case['rows']['pytorch-compile']['compile_s']:.1f} s."]
        lines += [""] + [f"- {v}" for v in verdicts(case)] + [""]
    lines += ["Rows: `ort-fp32` is the cpu-ort artifact as the runtime runs it in benchmarks (no spinning threads); "
              "`ort-fp32-static` the same model with its batch axis fixed at load, `ort-fp32-spin` with worker "
              "threads spinning between operators and stopped after each run. `openvino-*` are cpu-openvino "
              "artifacts, the inference precision pinned and read back from the compiled model (`runs as`; int8: its "
              "float parts). Errors are against PyTorch fp32 on the validation photos (random weights unless "
              "--weights-dir)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = script_parser(__doc__, runs=50, warmup=10)
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--calib", help="int8 calibration images (default: the bundled sample photos)")
    parser.add_argument("--weights-dir", type=Path, help="official checkpoints named <model with _>.pt")
    parser.add_argument("--stem", default="cpu-fastest", help="report file name stem")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rates = {"fp32": matmul_rate(torch.float32, args.threads), "bf16": matmul_rate(torch.bfloat16, args.threads)}
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        results = [bench_case(name, args, rates, Path(tmp)) for name in args.models]
    report = new_report(args.threads, {
        "batch": 1, "runs": args.runs, "warmup": args.warmup, "order": "interleaved rounds", "rows": args.rows,
        "rates_gflops": rates, "int8_calibration": args.calib or "bundled sample photos",
        "weights": "official checkpoints" if args.weights_dir else "random (latency does not depend on weights)",
    }, results)
    write_report(args.out, args.stem, report, markdown(report))


if __name__ == "__main__":
    main()
