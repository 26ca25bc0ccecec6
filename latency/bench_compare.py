"""Benchmark: EfficientViT beside the paper's competitors on this machine's CPU (cpu-ort: ONNX Runtime fp32).

    .venv/bin/python latency/bench_compare.py [--threads 2] [--cases cityscapes,sam] [--seg-size 512 1024]
        [--sam-size 512] [--keep-exports DIR] [--block-s 0.5] [--min-blocks 5] [--ci 5] [--budget-s 300]
        [--warmup-s 1] [--out latency/reports]

Each case is one `evit-deploy bench compare MODEL NAMES --target cpu-ort` run (evit_deploy.compare): every model
exported for cpu-ort, validated against its own PyTorch module by the same gate, and measured by the worker protocol
in one alternation (each model's PyTorch eager and ONNX in worker processes of their own, same input, batch 1,
threads; blocks alternate until every median's 95% CI is within --ci % or --budget-s ends); the report puts the
paper's ratios (Jetson AGX Orin / A100, TensorRT fp16) beside the ratios measured here, and counted params/MACs
beside the paper's.

- ``cityscapes``: efficientvit-seg-b1-cityscapes vs segformer-b1 at 512x1024 (the paper's B1/B1 pair: 146 / 24.3 ms
  on Orin = 6.0x). Full resolution (1024x2048) quadruples every call; 512x1024 is what the issue's check uses.
- ``sam``: efficientvit-sam-l0 vs the sam-vit-b and sam-vit-h image encoders, all at 512x512. The paper runs SAM at
  1024 (2980 GMACs for ViT-H, a minute a call on 2 CPU threads); at 512 ViT-H is 820 GMACs and the case takes
  minutes. Its export is 2.5 GB of weights (ONNX external data), so the exports go to a temporary folder.

Writes ``<out>/cpu-<threads>threads-compare-<case>-<size>/report.{json,md,html}``. Smoke test (tiny sizes, short
blocks): ``latency/bench_compare.py --block-s 0.05 --min-blocks 2 --ci 1000 --budget-s 5 --seg-size 128 256
--sam-size 128 --out /tmp/compare-smoke``. The claims' targets are the paper's ratios, stated beside ours in the
report.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from evit_deploy.bench.render import check_report_folder, write_report
from evit_deploy.bench.scripts import progress, run_script, script_parser, settings_from
from evit_deploy.cli.output import RichSteps
from evit_deploy.compare.plan import plan_compare
from evit_deploy.compare.run import CompareSettings, run_comparison

TARGET = "cpu-ort"
CASES = {  # case: (EfficientViT model, competitors, report folder stem)
    "cityscapes": ("efficientvit-seg-b1-cityscapes", ["segformer-b1"], "seg-b1-vs-segformer-b1"),
    "sam": ("efficientvit-sam-l0", ["sam-vit-b", "sam-vit-h"], "sam-l0-vs-sam-vit-b-h"),
}


def run_case(case: str, size: tuple[int, int], args, exports: Path) -> Path:  # noqa: ANN001 - argparse.Namespace
    model, rivals, stem = CASES[case]
    folder = args.out / f"cpu-{args.threads}threads-compare-{stem}-{size[0]}x{size[1]}"
    check_report_folder(folder)  # before minutes of measuring
    plan = plan_compare(model, rivals, size)
    progress(f"[{case}] {model} vs {', '.join(rivals)} at {size[0]}x{size[1]}, {args.threads} threads ...")
    report = run_comparison(plan, CompareSettings(TARGET, exports=exports), settings_from(args), RichSteps(),
                            progress, warn=lambda message: progress(f"warning: {message}"))
    report.notes.append("Produced by `latency/bench_compare.py`.")
    write_report(report, folder)
    print((folder / "report.md").read_text())
    return folder


def main() -> None:
    parser = script_parser(__doc__, budget_s=300.0)
    parser.add_argument("--cases", default="cityscapes,sam", help="comma-separated: cityscapes, sam")
    parser.add_argument("--seg-size", type=int, nargs=2, default=[512, 1024], metavar=("H", "W"))
    parser.add_argument("--sam-size", type=int, default=512, help="side of the SAM encoders' square input")
    parser.add_argument("--keep-exports", type=Path, help="keep the export folders here (default: a temp folder)")
    args = parser.parse_args()
    settings_from(args)  # refuse bad protocol options before any export
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
    run_script(main)
