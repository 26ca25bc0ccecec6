"""Benchmark: a video through the whole pipeline against the model alone, and memory over a looped file.

    .venv/bin/python latency/bench_video.py [--export DIR] [--frames 60] [--memory-frames 60 600] [--repeats 3]
                                            [--threads N] [--out latency/reports]

Without --export, efficientvit-seg-b1-cityscapes is exported for `cpu-openvino` at 512x1024 into a temporary
folder (random weights: speed does not depend on weight values). The source is a generated 60-frame 512x1024 H.264
MP4 at 30 fps (the sample photos panned across, with a little noise so it compresses like camera footage).

`evit_deploy.video.bench.bench_video` measures, in one process: the model alone on pre-processed frames
(model-only fps) and the whole pipeline (decode → pre → infer → post/draw → encode; end-to-end fps) in alternating
blocks, the time per stage, the peak RSS after frame 60 and frame 600 of the file played in a loop, and decoding
alone with PyAV and OpenCV. Targets (issue: video and live streams): end-to-end fps >= 0.8x model-only fps;
peak RSS at frame 600 within 10% of frame 60. Writes video-cpu.json and video-cpu.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from evit_deploy.samples import sample_photos
from evit_deploy.video.bench import bench_video
from evit_deploy.video.writer import VideoWriter

MODEL = "efficientvit-seg-b1-cityscapes"
TARGET = "cpu-openvino"
SIZE = (512, 1024)
FPS = 30


def make_clip(path: Path, frames: int, size: tuple[int, int] = SIZE, fps: int = FPS) -> Path:
    """``frames`` frames of ``size`` panning across the sample photos side by side, with mild noise."""
    h, w = size
    strip = np.concatenate([np.asarray(Image.fromarray(p).resize((w // 2, h + 64))) for p in sample_photos().values()],
                           axis=1)
    rng = np.random.default_rng(0)
    writer = VideoWriter(path, fps, size)
    for i in range(frames):
        x, y = (7 * i) % (strip.shape[1] - w), (i % 64)
        noise = rng.integers(-3, 4, (h, w, 3))
        writer.write(np.clip(strip[y : y + h, x : x + w].astype(np.int16) + noise, 0, 255).astype(np.uint8), i / fps)
    writer.close()
    return path


def export_model(folder: Path) -> Path:
    from evit_deploy.export.pipeline import ExportRequest, run_export

    return run_export(ExportRequest(MODEL, TARGET, imgsz=SIZE, output=str(folder / f"{MODEL}-{TARGET}"))).folder


def markdown(report: dict) -> str:
    r = report["result"]
    facts = next(iter(r["runtime_facts"].values()), {})
    ran = ", ".join(f"{k} {facts[k]}" for k in ("inference_precision", "threads", "streams") if k in facts)
    lines = [
        "# Video: end-to-end pipeline vs the model alone (`latency/bench_video.py`)", "",
        f"{r['model']} (`{report['target']}`, {r['backend']}) on a generated {r['source']['frames']}-frame "
        f"{r['source']['size'][0]}x{r['source']['size'][1]} {r['source']['codec']} file at {r['source']['fps']:g} fps; "
        f"{report['machine']['cpu']}, {report['machine']['cores']} cores; the runtime ran "
        f"{ran or 'as the export says'}.",
        "",
        f"**Machine shared**: {report['note']} Load average before/after: {r['load_average']['before']} / "
        f"{r['load_average']['after']}.", "",
        "| | frames/s | runs |", "|---|---|---|",
        f"| model only (pre-processed frames, no other stage running) | {r['model_only_fps']['median']:.3f} | "
        f"{r['model_only_fps']['runs']} |",
        f"| end to end (decode → pre → infer → post/draw → encode) | {r['end_to_end_fps']['median']:.3f} | "
        f"{r['end_to_end_fps']['runs']} |",
        f"| model inside the pipeline (its own time, under the other stages' load) | {r['model_fps_in_pipeline']:.3f} "
        "| |", "",
        f"End to end / model only: **{r['ratio']:.2f}** (per block pair {r['ratios']}); target >= "
        f"{r['target_ratio']}: **{'met' if r['ratio_met'] else 'not met'}**. Latency (decoded → written) p50 "
        f"{r['latency_ms']['p50']} ms, p99 {r['latency_ms']['p99']} ms.", "",
        "Where the time goes (mean ms a frame per stage in the pipeline runs; the stages overlap):", "",
        "| " + " | ".join(r["stages_ms"]) + " |", "|" + "---|" * len(r["stages_ms"]),
        "| " + " | ".join(f"{v:.1f}" for v in r["stages_ms"].values()) + " |", "",
        f"Threads: {', '.join(f'{k} {v}' for k, v in r['threads'].items())}.", "",
    ]
    memory = r.get("memory")
    if memory:
        first, last = (memory["at"][str(f)] for f in memory["frames"])
        lines += [f"Memory over the file played {memory['loops']} times: peak RSS {first['peak_rss_mb']} MiB at frame "
                  f"{memory['frames'][0]}, {last['peak_rss_mb']} MiB at frame {memory['frames'][1]} (growth "
                  f"{100 * memory['growth']['peak_rss_mb']:+.1f}%; current RSS {first['rss_mb']} → {last['rss_mb']} "
                  f"MiB); target within {100 * memory['target_growth']:.0f}%: "
                  f"**{'met' if memory['met'] else 'not met'}**.", ""]
    decoders = r.get("decoders")
    if decoders:
        cv = "not installed" if decoders["opencv"] is None else f"{decoders['opencv']:.2f} ms"
        lines += [f"Decoding alone, a frame to RGB: PyAV {decoders['pyav']:.2f} ms, OpenCV {cv}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", help="an existing export folder (default: export seg-B1 for cpu-openvino)")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--memory-frames", type=int, nargs=2, default=(60, 600))
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="runtime threads (default: the export's)")
    parser.add_argument("--note", default="other sessions were running on this 2-core machine; a first figure, to "
                                          "be re-recorded on a quiet machine.")
    parser.add_argument("--out", default=str(Path(__file__).parent / "reports"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="evit-bench-video-") as tmp:
        clip = make_clip(Path(tmp) / "street.mp4", args.frames)
        export = Path(args.export) if args.export else export_model(Path(tmp))
        result = bench_video(export, clip, threads=args.threads, repeats=args.repeats,
                             memory_frames=None if args.no_memory else tuple(args.memory_frames))
    report = {"target": TARGET, "machine": result["machine"], "note": args.note, "result": result}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "video-cpu.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "video-cpu.md").write_text(markdown(report) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
