"""Benchmark: LiteRT (TFLite) exports per precision vs PyTorch eager and ONNX Runtime on this machine.

    .venv/bin/python latency/bench_tflite.py [--runs 30] [--warmup 5] [--threads 2] [--out latency/reports]

For each model: export `mobile-cpu-tflite` in every precision (fp32, fp16, int8-dynamic, int8; int8 calibrated
on the bundled sample photos) and `cpu-ort` (ONNX Runtime), recording export time and file size; then time
PyTorch eager, ONNX Runtime and each .tflite on LiteRT + XNNPACK at batch 1 with the same thread count,
interleaved round-robin (one call of each per round) so machine noise hits all alike. Writes
`tflite-cpu.md` and `tflite-cpu.json`. Targets (issue #4): fp32 TFLite median <= 0.5x PyTorch eager for
EfficientViT-B1; int8 artifact <= 30% of the fp32 artifact.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from evit_deploy import create_model, runtime
from evit_deploy.bench.scripts import new_report, script_parser, time_calls, write_report
from evit_deploy.export.pipeline import ExportRequest, run_export

CASES = [("efficientvit-b1-r224", (224, 224)), ("efficientvit-seg-b1-cityscapes", (512, 1024))]
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8")
TARGET = "mobile-cpu-tflite"


def timed_export(name: str, target: str, size: tuple[int, int], workdir: Path, precision: str | None = None) -> dict:
    started = time.perf_counter()
    out = workdir / f"{name}-{target}-{precision or 'default'}"
    result = run_export(ExportRequest(name, target, imgsz=size, precision=precision, output=str(out)))
    seconds = time.perf_counter() - started
    artifact = next(a for a in result.manifest.artifacts if a.role in ("model", "encoder"))
    report = next(r for r in result.reports if r.artifact == artifact.path)
    worst = max(m["max_rel"] for m in report.outputs.values())
    return {"folder": result.folder, "path": artifact.path, "export_s": seconds,
            "size_bytes": (result.folder / artifact.path).stat().st_size, "max_rel_vs_pytorch": worst,
            "agreement": report.agreement}


def bench_case(name: str, size: tuple[int, int], args: argparse.Namespace, workdir: Path) -> dict:
    exports = {"onnxruntime": timed_export(name, "cpu-ort", size, workdir)}
    for precision in args.precisions:
        print(f"[{name}] exporting TFLite {precision} ...", file=sys.stderr, flush=True)
        exports[f"tflite-{precision}"] = timed_export(name, TARGET, size, workdir, precision)

    model = create_model(name)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    x_np = x.numpy()
    calls: dict[str, Callable[[], object]] = {"pytorch": lambda: model(x)}
    backends = {}
    for key, info in exports.items():
        backends[key] = runtime.load(info["folder"] / info["path"], threads=args.threads, shared_cpu=True)
        calls[key] = (lambda b: lambda: b(x_np))(backends[key])
    latency = time_calls(calls, args.runs, args.warmup)
    eager = latency["pytorch"]["median"]
    fp32_size = exports.get("tflite-fp32", {}).get("size_bytes")
    rows = {}
    for key, info in exports.items():
        rows[key] = {k: v for k, v in info.items() if k != "folder"} | {
            "latency_ms": latency[key], "ratio_vs_pytorch": latency[key]["median"] / eager,
            "size_vs_tflite_fp32": info["size_bytes"] / fp32_size if fp32_size else None,
        }
        backend = backends[key]
        if hasattr(backend, "xnnpack_partitions"):
            rows[key]["xnnpack_partitions"] = backend.xnnpack_partitions
    return {"model": name, "input_size": list(size), "pytorch": {"latency_ms": latency["pytorch"]}, "artifacts": rows}


def markdown(report: dict) -> str:
    machine, settings = report["machine"], report["settings"]
    lines = [
        "# LiteRT (TFLite) exports on this machine class",
        "",
        f"Machine: {machine['cpu']}, {machine['threads']} threads; batch 1; median of {settings['runs']} interleaved "
        f"runs after {settings['warmup']} warm-up rounds; {report['created']}. Produced by "
        "`latency/bench_tflite.py`. TFLite runs on ai-edge-litert with the XNNPACK delegate; int8 is calibrated "
        "on the bundled sample photos; random weights (latency does not depend on weight values, the errors below "
        "are for random weights).",
        "",
    ]
    for r in report["results"]:
        size = "x".join(map(str, r["input_size"]))
        lines += [
            f"## {r['model']} ({size})",
            "",
            f"PyTorch eager median: {r['pytorch']['latency_ms']['median']:.1f} ms",
            "",
            "| artifact | export (s) | size (MiB) | size / fp32 .tflite | median (ms) | p90 (ms) | / PyTorch eager "
            "| max rel err vs PyTorch | agreement |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key, a in r["artifacts"].items():
            ratio_size = f"{a['size_vs_tflite_fp32']:.2f}" if a["size_vs_tflite_fp32"] else "-"
            agreement = f"{a['agreement']:.4f}" if a["agreement"] is not None else "-"
            lines.append(
                f"| {key} | {a['export_s']:.1f} | {a['size_bytes'] / 2**20:.2f} | {ratio_size} | "
                f"{a['latency_ms']['median']:.1f} | {a['latency_ms']['p90']:.1f} | {a['ratio_vs_pytorch']:.2f} | "
                f"{a['max_rel_vs_pytorch']:.2e} | {agreement} |"
            )
        lines.append("")
    lines += ["Targets (issue #4): fp32 TFLite <= 0.5x PyTorch eager for EfficientViT-B1 (224); int8 artifact "
              "<= 30% of the fp32 artifact.", ""]
    for r in report["results"]:
        arts = r["artifacts"]
        if "tflite-fp32" in arts and r["model"] == "efficientvit-b1-r224":
            ratio = arts["tflite-fp32"]["ratio_vs_pytorch"]
            lines.append(f"- {r['model']}: fp32 TFLite / PyTorch eager = {ratio:.2f} "
                         f"({'met' if ratio <= 0.5 else 'NOT met'})")
        if "tflite-int8" in arts and arts["tflite-int8"]["size_vs_tflite_fp32"]:
            share = arts["tflite-int8"]["size_vs_tflite_fp32"]
            lines.append(f"- {r['model']}: int8 size = {share:.0%} of fp32 ({'met' if share <= 0.30 else 'NOT met'})")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--models", nargs="+", default=[n for n, _ in CASES], choices=[n for n, _ in CASES])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench_case(n, s, args, Path(tmp)) for n, s in CASES if n in args.models]
    report = new_report(args.threads, {
        "batch": 1, "runs": args.runs, "warmup": args.warmup, "order": "interleaved rounds",
        "precisions": args.precisions, "tflite_runtime": "ai-edge-litert Interpreter + XNNPACK",
        "int8_calibration": "bundled sample photos", "weights": "random (latency does not depend on weight values)",
    }, rows)
    write_report(args.out, "tflite-cpu", report, markdown(report))


if __name__ == "__main__":
    main()
