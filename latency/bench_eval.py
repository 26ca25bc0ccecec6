"""Benchmark: is `evit-deploy eval` dominated by its own I/O? Its ONNX row's images/s beside `bench`'s throughput.

    .venv/bin/python latency/bench_eval.py [--workers 2] [--threads 2] [--repeats 3] [--out latency/reports]

Two cases, each exported to `cpu-ort` in a temporary folder (random weights: latency does not depend on weight
values), with a dataset written in the dataset's own layout and typical image sizes:

- EfficientViT-B1 r224 on ImageNet-layout JPEGs of 500x375 (the most common ImageNet val size), batch 8;
- EfficientViT-seg-B1 Cityscapes at 512x1024 on Cityscapes-layout PNGs of 1024x2048, batch 2.

For each, alternating REPEATS times: `bench` throughput at the batch (the model alone, interleaved rounds) and
`eval --no-pytorch` wall-clock images/s (decoding and pre-processing in WORKERS threads ahead of the model runs).
It also times decoding + pre-processing alone, on one core, to show where the time goes. Target (issue: eval):
the eval rate within 20% of the bench rate. Writes eval-io.md/.json.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from evit_deploy.bench.harness import BenchSettings, bench_export
from evit_deploy.bench.scripts import new_report, script_parser, write_report
from evit_deploy.eval import EvalSettings, evaluate
from evit_deploy.eval.datasets import open_dataset
from evit_deploy.eval.protocols import PROTOCOLS
from evit_deploy.export.pipeline import ExportRequest, run_export
from evit_deploy.samples import sample_photos
from evit_deploy.zoo import get_card
from evit_deploy.zoo.labels import class_ids


@dataclass
class Case:
    model: str
    imgsz: tuple[int, int] | None
    image_size: tuple[int, int]  # (W, H) of the dataset's images
    images: int
    batch: int
    runs: int


CASES = [Case("efficientvit-b1-r224", None, (500, 375), 96, 8, 20),
         Case("efficientvit-seg-b1-cityscapes", (512, 1024), (2048, 1024), 12, 2, 6)]


def _photos(size: tuple[int, int], count: int) -> list[Image.Image]:
    """``count`` distinct photos of ``size`` (the sample photos, cropped at random places and flipped)."""
    rng = np.random.default_rng(0)
    bases = [Image.fromarray(p).resize((int(size[0] * 1.1), int(size[1] * 1.1))) for p in sample_photos().values()]
    out = []
    for i in range(count):
        base = bases[i % len(bases)]
        left, top = int(rng.integers(0, base.width - size[0])), int(rng.integers(0, base.height - size[1]))
        image = base.crop((left, top, left + size[0], top + size[1]))
        out.append(image.transpose(Image.FLIP_LEFT_RIGHT) if i % 2 else image)
    return out


def make_dataset(case: Case, root: Path) -> Path:
    if get_card(case.model).task == "cls":
        wnids = class_ids("imagenet")
        for i, image in enumerate(_photos(case.image_size, case.images)):
            (root / wnids[i % 10]).mkdir(parents=True, exist_ok=True)
            image.save(root / wnids[i % 10] / f"img{i:05d}.JPEG", quality=90)
        return root
    rng = np.random.default_rng(1)
    for i, image in enumerate(_photos(case.image_size, case.images)):
        city = ("aachen", "bonn")[i % 2]
        for part in ("leftImg8bit", "gtFine"):
            (root / part / "val" / city).mkdir(parents=True, exist_ok=True)
        stem = f"{city}_{i:06d}_000019"
        image.save(root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png")
        labels = rng.choice([7, 8, 11, 21, 23, 24, 26], size=(case.image_size[1], case.image_size[0]))
        Image.fromarray(labels.astype(np.uint8)).save(root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png")
    return root


def prepare_ms(case: Case, data: Path, input_size: tuple[int, int]) -> float:
    """Decoding + pre-processing of one image on one core (median over the dataset), in ms."""
    dataset = open_dataset(data)
    protocol = PROTOCOLS[get_card(case.model).task](get_card(case.model), dataset, input_size)
    times = []
    for sample in dataset.samples[:8]:
        tic = time.perf_counter()
        protocol.prepare(sample, None)
        times.append((time.perf_counter() - tic) * 1e3)
    return statistics.median(times)


def run_case(case: Case, args, tmp: Path) -> dict:  # noqa: ANN001 - argparse.Namespace
    folder = run_export(ExportRequest(case.model, "cpu-ort", imgsz=case.imgsz, output=str(tmp / case.model))).folder
    data = make_dataset(case, tmp / f"data-{case.model}")
    input_size = case.imgsz or get_card(case.model).input_size
    bench_rates, eval_rates, model_rates, scoring = [], [], [], []
    for _ in range(args.repeats):
        report = bench_export(folder, BenchSettings([case.batch], case.runs, args.warmup, args.threads))
        bench_rates.append(next(r for r in report["results"] if r["artifact"])["throughput_img_s"])
        evaluation = evaluate(folder, EvalSettings(str(data), batch=case.batch, threads=args.threads,
                                                   workers=args.workers, pytorch=False))
        eval_rates.append(evaluation["images_per_s_wall"])
        model_rates.append(evaluation["results"][0]["images_per_s"])
        scoring.append(evaluation["results"][0]["seconds"]["scoring"] * 1e3 / case.images)
    return {"model": case.model, "input_size": list(input_size), "image_size": list(case.image_size),
            "images": case.images, "batch": case.batch, "bench_img_s": bench_rates, "eval_wall_img_s": eval_rates,
            "eval_model_img_s": model_rates, "prepare_ms_one_core": prepare_ms(case, data, tuple(input_size)),
            "scoring_ms": statistics.median(scoring),
            "ratio": statistics.median(eval_rates) / statistics.median(bench_rates)}


def markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    lines = [
        "# `eval` throughput against `bench` (cpu-ort, ONNX Runtime)", "",
        f"Machine: {m['cpu']}, {m['cores']} cores; {s['threads']} runtime threads, {s['workers']} decoding threads; "
        f"{report['created']}. Produced by `latency/bench_eval.py`; {s['repeats']} alternating repeats of each "
        "measurement, medians below.", "",
        "| model | input | dataset images | batch | `bench` img/s | `eval` wall img/s | `eval` model-only img/s | "
        "decode + pre-process, one core (ms/img) | metric (ms/img) | eval / bench |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['model']} | {r['input_size'][0]}x{r['input_size'][1]} | {r['images']} x "
            f"{r['image_size'][0]}x{r['image_size'][1]} | {r['batch']} | {statistics.median(r['bench_img_s']):.1f} "
            f"| {statistics.median(r['eval_wall_img_s']):.1f} | {statistics.median(r['eval_model_img_s']):.1f} | "
            f"{r['prepare_ms_one_core']:.1f} | {r['scoring_ms']:.1f} | {r['ratio']:.2f} |")
    lines += ["", "Target: eval within 20% of bench (ratio >= 0.80). What the protocol adds to the model run is CPU "
              "work: decoding, the official resize (PIL bicubic with antialiasing for ImageNet; OpenCV INTER_CUBIC "
              "for Cityscapes) and, for segmentation, resizing the 19 logit maps bicubically to the label's full "
              "1024x2048 before the argmax. On 2 cores that work competes with the model's own threads, so the "
              "ratio cannot exceed model CPU time / (model CPU time + that work), whatever the thread pool does.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = script_parser(__doc__, warmup=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_case(case, args, Path(tmp)) for case in CASES]
    report = new_report(args.threads, {"threads": args.threads, "workers": args.workers, "repeats": args.repeats,
                                       "target": "cpu-ort", "weights": "random"}, rows)
    write_report(args.out, "eval-io", report, markdown(report))


if __name__ == "__main__":
    main()
