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
peak RSS at frame 600 within 10% of frame 60. Writes video-cpu.json, .md and .html.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from evit_deploy.bench.scripts import write_script_report
from evit_deploy.samples import sample_photos
from evit_deploy.video.bench import bench_video, video_report
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", help="an existing export folder (default: export seg-B1 for cpu-openvino)")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--memory-frames", type=int, nargs=2, default=(60, 600))
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="runtime threads (default: the export's)")
    parser.add_argument("--note", help="a note on the machine's state (e.g. shared), printed in the report")
    parser.add_argument("--out", default=str(Path(__file__).parent / "reports"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="evit-bench-video-") as tmp:
        clip = make_clip(Path(tmp) / "street.mp4", args.frames)
        export = Path(args.export) if args.export else export_model(Path(tmp))
        result = bench_video(export, clip, threads=args.threads, repeats=args.repeats,
                             memory_frames=None if args.no_memory else tuple(args.memory_frames))
    report = video_report(result, f"{MODEL} (`{TARGET}`): a video end to end against the model alone")
    report.target = TARGET
    report.notes.append("Produced by `latency/bench_video.py`." + (f" {args.note}" if args.note else ""))
    write_script_report(Path(args.out), "video-cpu", report)


if __name__ == "__main__":
    main()
