"""Benchmark: EfficientViT beside the paper's competitors on this machine's CPU (cpu-ort: ONNX Runtime fp32).

    .venv/bin/python latency/bench_compare.py [--runs 10] [--warmup 2] [--threads 2] [--out latency/reports]
        [--cases cityscapes,sam] [--seg-size 512 1024] [--sam-size 512] [--keep-exports DIR]

Each case is one `evit-deploy bench MODEL --target cpu-ort --compare ...` run (evit_deploy.compare): every model
exported for cpu-ort, validated against its own PyTorch module by the same gate, and timed by the harness in the
same interleaved rounds (same input, batch 1, threads); the report puts the paper's ratios (Jetson AGX Orin /
A100, TensorRT fp16) beside the ratios measured here, and counted params/MACs beside the paper's.

- ``cityscapes``: efficientvit-seg-b1-cityscapes vs segformer-b1 at 512x1024 (the paper's B1/B1 pair: 146 / 24.3 ms
  on Orin = 6.0x). Full resolution (1024x2048) quadruples every call; 512x1024 is what the issue's check uses.
- ``sam``: efficientvit-sam-l0 vs the sam-vit-b and sam-vit-h image encoders, all at 512x512. The paper runs SAM at
  1024 (2980 GMACs for ViT-H, a minute a call on 2 CPU threads); at 512 ViT-H is 820 GMACs and the case takes
  minutes. Its export is 2.5 GB of weights (ONNX external data), so the exports go to a temporary folder.

Writes ``<out>/cpu-<threads>threads-compare-<case>-<size>/report.{json,md,html}``. Smoke test (tiny sizes, one run):
``latency/bench_compare.py --runs 1 --warmup 0 --seg-size 128 256 --sam-size 128 --out /tmp/compare-smoke``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from evit_deploy.bench.harness import BenchSettings
from evit_deploy.bench.report import write_reports
from evit_deploy.bench.scripts import script_parser
from evit_deploy.cli.output import RichSteps
from evit_deploy.compare.plan import plan_compare
from evit_deploy.compare.report import render
from evit_deploy.compare.run import CompareSettings, run_comparison

TARGET = "cpu-ort"
CASES = {  # case: (EfficientViT model, competitors, report folder stem)
    "cityscapes": ("efficientvit-seg-b1-cityscapes", ["segformer-b1"], "seg-b1-vs-segformer-b1"),
    "sam": ("efficientvit-sam-l0", ["sam-vit-b", "sam-vit-h"], "sam-l0-vs-sam-vit-b-h"),
}


def run_case(case: str, size: tuple[int, int], args, exports: Path) -> Path:  # noqa: ANN001 - argparse.Namespace
    model, rivals, stem = CASES[case]
    plan = plan_compare(model, rivals, size)
    settings = BenchSettings([1], args.runs, args.warmup, args.threads)
    print(f"[{case}] {model} vs {', '.join(rivals)} at {size[0]}x{size[1]}, {args.threads} threads ...",
          file=sys.stderr, flush=True)
    report = run_comparison(plan, CompareSettings(TARGET, exports=exports), settings, RichSteps(),
                            warn=lambda message: print(f"warning: {message}", file=sys.stderr, flush=True))
    folder = args.out / f"cpu-{args.threads}threads-compare-{stem}-{size[0]}x{size[1]}"
    write_reports(report, folder, render)
    print((folder / "report.md").read_text())
    return folder


def main() -> None:
    parser = script_parser(__doc__, runs=10, warmup=2, threads=2)
    parser.add_argument("--cases", default="cityscapes,sam", help="comma-separated: cityscapes, sam")
    parser.add_argument("--seg-size", type=int, nargs=2, default=[512, 1024], metavar=("H", "W"))
    parser.add_argument("--sam-size", type=int, default=512, help="side of the SAM encoders' square input")
    parser.add_argument("--keep-exports", type=Path, help="keep the export folders here (default: a temp folder)")
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]}; choose from {', '.join(CASES)}")
    exports = args.keep_exports or Path(tempfile.mkdtemp(prefix="evit-compare-"))
    sizes = {"cityscapes": tuple(args.seg_size), "sam": (args.sam_size, args.sam_size)}
    try:
        for case in cases:
            run_case(case, sizes[case], args, exports)
    finally:
        if args.keep_exports is None:
            shutil.rmtree(exports, ignore_errors=True)


if __name__ == "__main__":
    main()
