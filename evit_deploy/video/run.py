"""A video run with outputs: the annotated video, ``frames.jsonl`` and ``summary.json`` in one output folder.

The folder is built in a staging folder beside it and moved into place at the end, also when the run is stopped
(Ctrl-C, SIGTERM) or the source turns out damaged part-way: the video is closed first (its index written), so
what lands is a playable video of the frames done and their JSONL lines, one line per video frame. A run stopped
before its first frame, or failing otherwise, leaves nothing. An existing output folder is replaced only when it
is empty or a previous video output (``summary.json`` says so and it holds nothing else).

``frames.jsonl``: per frame ``frame`` (index), ``time`` (seconds in the source), ``result`` (the result's
``to_dict()``, without the segmentation label map), ``model_ms``, ``e2e_ms`` (decoded → written) and ``stages_ms``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EvitError
from ..files import (
    Owner,
    Terminated,
    atomic_write,
    check_output_dir,
    commit_staged,
    fixed_files,
    owns_folder,
    staged_dir,
    writing,
)
from ..tasks import prompted_titles, task_spec
from .frames import FrameSource, SourceSettings, VideoDamaged, VideoError
from .pipeline import FrameJob, StreamSettings, build_pipeline, pipeline_threads
from .prompts import PromptSchedule, frame_options
from .sources import open_source
from .stats import RunStats
from .writer import VideoWriter

VIDEO_FILE = "annotated.mp4"
FRAMES_FILE = "frames.jsonl"
SUMMARY_FILE = "summary.json"
OUTPUT_FILES = (SUMMARY_FILE, VIDEO_FILE, FRAMES_FILE)
KIND = "evit-deploy video predictions"  # summary.json's "kind": marks a folder as a previous video output


@dataclass(frozen=True)
class VideoSettings:
    """What a run does besides the source: prediction ``options`` for every frame (``top_k``, SAM ``points``/
    ``box``/``multimask``), SAM ``prompts`` by frame, how the source is opened and the stream runs, and whether
    the annotated video is written (``video``; ``frames.jsonl`` always is)."""

    options: dict[str, Any] = field(default_factory=dict)
    prompts: PromptSchedule | None = None
    source: SourceSettings = field(default_factory=SourceSettings)
    stream: StreamSettings = field(default_factory=lambda: StreamSettings(draw=True, torch_threads=1))
    video: bool = True
    encoder_threads: int = 1


# The ownership rule of video outputs (evit_deploy.files): summary.json says it is one; the files are fixed.
VIDEO_OUTPUT = Owner("video output", SUMMARY_FILE,
                     fixed_files(OUTPUT_FILES, lambda doc: isinstance(doc, dict) and doc.get("kind") == KIND))


def check_output(output: str | os.PathLike) -> Path:
    """Refuse, before any work, an output folder that may not or cannot be written (one line)."""
    folder = Path(output)
    check_output_dir(folder, "video output folder")
    if folder.is_dir() and any(folder.iterdir()) and not owns_folder(folder, VIDEO_OUTPUT):
        raise EvitError(f"refusing to replace {folder}: it is not a previous evit-deploy video output; choose "
                        "another --output folder")
    parent = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as exc:
        raise EvitError(f"cannot write the video output to {folder}: {exc.strerror or exc} ({parent})") from None
    return folder


def _record(job: FrameJob, latency_ms: float | None = None) -> dict[str, Any]:
    result = job.result.to_dict(include_label_map=False)
    record = {"frame": job.frame.index, "time": None if job.frame.time is None else round(job.frame.time, 6)}
    if job.frame.name is not None:
        record["image"] = job.frame.name
    return {**record, "result": result, "model_ms": round(job.ms.get("infer", 0.0), 3),
            "e2e_ms": None if latency_ms is None else round(latency_ms, 3),
            "stages_ms": {k: round(v, 3) for k, v in job.ms.items()}}


class _Outputs:
    """The staging folder's video and JSONL, written by the pipeline's last stage (one thread)."""

    def __init__(self, folder: Path, source: FrameSource, settings: VideoSettings) -> None:
        self.folder, self.source, self.settings = folder, source, settings
        self.video: VideoWriter | None = None
        self.lines = open(folder / FRAMES_FILE, "w", encoding="utf-8")  # closed by close()/abort()
        self.written = 0

    def write(self, job: FrameJob) -> None:
        if self.settings.video:
            if self.video is None:
                self.video = VideoWriter(self.folder / VIDEO_FILE, self.source.info.fps, job.drawn.shape[:2],
                                         self.settings.encoder_threads)
            self.video.write(job.drawn, job.frame.time)
            job.drawn = None
        latency = (time.perf_counter() - job.frame.arrived) * 1e3
        self.lines.write(json.dumps(_record(job, latency)) + "\n")
        self.written += 1

    def close(self) -> None:
        """Finish the files (the video becomes playable)."""
        self.lines.close()
        if self.video is not None:
            self.video.close()

    def abort(self) -> None:
        self.lines.close()
        if self.video is not None:
            self.video.abort()


def run_video(predictor: Any, source: str | int | os.PathLike, output: str | os.PathLike,
              settings: VideoSettings | None = None,
              on_frame: Callable[[RunStats, FrameSource], None] | None = None) -> dict[str, Any]:
    """Predict on every frame of ``source`` (a video file, camera or URL; see :func:`open_source`) with
    ``predictor`` and write the output folder; returns the summary (also ``summary.json``).

    ``on_frame(stats, source)`` is called after each frame (progress display). Raises :class:`VideoDamaged` when
    the source is damaged part-way (after writing the frames before the damage), and re-raises Ctrl-C/SIGTERM
    after writing the frames done.
    """
    settings = settings or VideoSettings()
    folder = check_output(output)
    with open_source(source, settings.source) as opened:
        options_for = frame_options(settings.options, settings.prompts)
        if opened.info.size is not None:  # options and every prompt checked before the first frame
            if settings.prompts is not None:
                settings.prompts.check(opened.info.size, settings.options.get("multimask", True))
            predictor.prepare(np.zeros((*opened.info.size, 3), np.uint8), **options_for(0))
        return _run(predictor, opened, folder, settings, options_for, on_frame)


def _run(predictor: Any, source: FrameSource, folder: Path, settings: VideoSettings,
         options_for: Callable[[int], dict[str, Any]], on_frame: Callable[[RunStats, FrameSource], None] | None
         ) -> dict[str, Any]:
    stats = RunStats()
    stopped: BaseException | None = None
    with staged_dir(folder, "video output folder") as tmp:
        outputs = _Outputs(tmp, source, settings)
        pipeline = build_pipeline(predictor, source, settings.stream, options_for, sink=outputs.write)
        try:
            with pipeline_threads(predictor, settings.stream):
                for job in pipeline:
                    stats.add(job.ms, job.frame.arrived, job.done)
                    stats.dropped, stats.skipped = source.dropped + pipeline.dropped, source.skipped
                    if on_frame is not None:
                        on_frame(stats, source)
        except (KeyboardInterrupt, Terminated) as exc:
            stopped = exc
        except BaseException:
            outputs.abort()
            raise
        if not pipeline.stopped_cleanly:  # a stage still holds the writer: nothing we could vouch for
            outputs.abort()
            raise EvitError("the run did not stop within its time; no output was written")
        stats.dropped, stats.skipped = source.dropped + pipeline.dropped, source.skipped
        stats.frames = outputs.written  # a stop can fall between writing a frame and counting it
        with writing(f"write the video output to {folder}"):
            outputs.close()
            summary = _summary(predictor, source, settings, stats, outputs.written, stopped)
            if outputs.written:
                atomic_write(tmp / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
                commit_staged(tmp, folder, VIDEO_OUTPUT)
    if stopped is not None:
        raise stopped
    if source.damage is not None:
        kept = f"the {outputs.written} frames before it are in {folder}/" if outputs.written else "no frame was read"
        raise VideoDamaged(f"{source.info.name} is damaged: {source.damage}; {kept}",
                           summary if outputs.written else None)
    if not outputs.written:
        raise VideoError(f"{source.info.name}: no frames were processed")
    return summary


def _summary(predictor: Any, source: FrameSource, settings: VideoSettings, stats: RunStats, written: int,
             stopped: BaseException | None) -> dict[str, Any]:
    info = source.info
    how = None if stopped is None else ("interrupted" if isinstance(stopped, KeyboardInterrupt) else str(stopped))
    return {
        "kind": KIND, "model": predictor.model, "task": predictor.task, "export": predictor.source,
        "source": {"name": info.name, "kind": info.kind, "live": info.live, "fps": info.fps,
                   "size": list(info.size) if info.size else None, "codec": info.codec,
                   "declared_frames": info.frames},
        "files": {"video": VIDEO_FILE if settings.video and written else None, "frames": FRAMES_FILE},
        "stopped": how, "damage": source.damage, **stats.summary(), "line": stats.line(),
    }


def check_prompts_task(predictor: Any, prompts: PromptSchedule | None) -> None:
    """Prompts by frame are for SAM models only (one line otherwise)."""
    if prompts is not None and not task_spec(predictor.task).prompted:
        raise EvitError(f"prompts by frame are for {prompted_titles()} models; {predictor.model} is a "
                        f"{predictor.task} model")
