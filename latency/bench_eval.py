"""Benchmark: is `evit-deploy eval` dominated by its own I/O? Its ONNX row's images/s beside `bench`'s throughput.

    .venv/bin/python latency/bench_eval.py [--model efficientvit-b1-r224] [--images 96] [--batch 8] [--workers 2]
        [--threads 2] [--runs 20] [--out latency/reports]

Exports MODEL to `cpu-ort` in a temporary folder (random weights: latency does not depend on weight values),
writes IMAGES JPEG photos (the bundled sample photos at 640x480, cropped and flipped so no two are equal) as an
ImageNet-layout folder, then measures on this machine, alternating three times: `bench` throughput at BATCH
(the model run alone, interpolated from interleaved rounds) and `eval --no-pytorch` wall-clock images/s over the
folder (decoding and pre-processing in WORKERS threads, ahead of the model runs). Target (issue: eval): the eval
rate within 20% of the bench rate. Writes eval-io.md/.json.
"""

from __future__ import annotations

import statistics
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from evit_deploy.bench.harness import BenchSettings, bench_export
from evit_deploy.bench.scripts import new_report, script_parser, write_report
from evit_deploy.eval import EvalSettings, evaluate
from evit_deploy.export.pipeline import ExportRequest, run_export
from evit_deploy.samples import sample_photos
from evit_deploy.zoo.labels import class_ids


def make_dataset(root: Path, count: int) -> Path:
    """``count`` distinct 640x480 JPEGs in WordNet-id class folders (labels are irrelevant to speed)."""
    photos = [Image.fromarray(p).resize((700, 525)) for p in sample_photos().values()]
    wnids = class_ids("imagenet")
    rng = np.random.default_rng(0)
    for i in range(count):
        photo = photos[i % len(photos)]
        left, top = int(rng.integers(0, 60)), int(rng.integers(0, 45))
        image = photo.crop((left, top, left + 640, top + 480))
        if i % 2:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        folder = root / wnids[i % 10]
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"img{i:05d}.JPEG", quality=90)
    return root


def main() -> None:
    parser = script_parser(__doc__, runs=20, warmup=3)
    parser.add_argument("--model", default="efficientvit-b1-r224")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = run_export(ExportRequest(args.model, "cpu-ort", output=str(tmp / "export"))).folder
        data = make_dataset(tmp / "val", args.images)
        bench_rates, eval_rates, model_rates = [], [], []
        for _ in range(args.repeats):
            report = bench_export(folder, BenchSettings([args.batch], args.runs, args.warmup, args.threads))
            onnx = next(r for r in report["results"] if r["artifact"])
            bench_rates.append(onnx["throughput_img_s"])
            evaluation = evaluate(folder, EvalSettings(str(data), batch=args.batch, threads=args.threads,
                                                       workers=args.workers, pytorch=False))
            eval_rates.append(evaluation["images_per_s_wall"])
            model_rates.append(evaluation["results"][0]["images_per_s"])
    bench_rate, eval_rate = statistics.median(bench_rates), statistics.median(eval_rates)
    results = {"bench_img_s": bench_rates, "eval_wall_img_s": eval_rates, "eval_model_img_s": model_rates,
               "median_ratio_eval_over_bench": eval_rate / bench_rate}
    report = new_report(args.threads, {"model": args.model, "target": "cpu-ort", "images": args.images,
                                       "batch": args.batch, "workers": args.workers, "bench_runs": args.runs,
                                       "repeats": args.repeats, "photos": "640x480 JPEG (quality 90)"}, results)
    m = report["machine"]
    lines = [
        f"# `eval` throughput against `bench` ({args.model}, cpu-ort, batch {args.batch})", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {args.threads} runtime threads, {args.workers} decoding threads; "
        f"{args.images} JPEG photos of 640x480; {report['created']}. Produced by `latency/bench_eval.py`; "
        f"{args.repeats} alternating repeats of each, medians below.", "",
        "| measurement | images/s (median) | each repeat |", "|---|---:|---|",
        f"| `bench` (model only, interleaved rounds) | {bench_rate:.1f} | "
        f"{', '.join(f'{v:.1f}' for v in bench_rates)} |",
        f"| `eval` wall clock (decode + pre-process + model + metric) | {eval_rate:.1f} | "
        f"{', '.join(f'{v:.1f}' for v in eval_rates)} |",
        f"| `eval` time in the model only | {statistics.median(model_rates):.1f} | "
        f"{', '.join(f'{v:.1f}' for v in model_rates)} |", "",
        f"eval / bench = {eval_rate / bench_rate:.2f} (target >= 0.80: "
        f"{'met' if eval_rate / bench_rate >= 0.8 else 'NOT met'}).", "",
    ]
    write_report(args.out, "eval-io", report, "\n".join(lines))


if __name__ == "__main__":
    main()
