"""``evit-deploy predict`` on a video file, a camera or a URL: progress on stderr, the summary line on stdout."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from ..files import Terminated


@contextlib.contextmanager
def _progress(name: str) -> Iterator[Any]:
    """An ``on_frame(stats, source)`` callback drawing a bar with fps for files, a live line for streams."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    quiet = not console.is_terminal  # logs and pipes get the summary line only
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console, transient=True,
                   disable=quiet)
    line = Progress(TextColumn("{task.description} {task.fields[rate]}"), console=console, transient=True,
                    disable=quiet)
    state: dict[str, Any] = {"frames": 0}

    def on_frame(stats: Any, source: Any) -> None:
        state["frames"] = stats.frames
        if "task" not in state:
            live = source.info.live or not source.info.frames
            state["view"] = line if live else bar
            state["view"].start()
            state["task"] = state["view"].add_task(name, total=None if live else source.info.frames, rate="")
        fps = stats.pipeline_fps or 0.0
        if state["view"] is line:
            p50 = stats.latency(50) or 0.0
            rate = f"{stats.frames} frames · {stats.dropped} dropped · {fps:.1f} fps · p50 {p50:.0f} ms"
        else:
            rate = f"{fps:.1f} fps"
        state["view"].update(state["task"], completed=stats.frames, rate=rate)

    try:
        yield on_frame, state
    finally:
        if "view" in state:
            state["view"].stop()


def predict_video(spec: Any, source: str, output: str | None, options: dict[str, Any], prompts: str | None,
                  settings: dict[str, Any]) -> None:
    """Run ``spec``'s predictor over ``source`` into ``output`` (default ``predictions/<source name>``)."""
    from ..optional import require
    from ..video.frames import SourceSettings, VideoDamaged
    from ..video.pipeline import StreamSettings
    from ..video.prompts import PromptSchedule
    from ..video.run import FRAMES_FILE, VIDEO_FILE, VideoSettings, check_output, check_prompts_task, run_video
    from ..video.sources import source_label

    require("av", "video input")
    folder = check_output(output or Path("predictions") / source_label(source))
    schedule = PromptSchedule.read(prompts, options) if prompts else None
    predictor = replace(spec, shared_cpu=True).load()  # the runtime shares the cores with the other stages
    check_prompts_task(predictor, schedule)
    video = VideoSettings(
        options=options, prompts=schedule,
        source=SourceSettings(settings["max_pixels"], settings["timeout"], settings["live"], settings["loop"]),
        stream=StreamSettings(settings["max_frames"], settings["duration"], draw=settings["video"], torch_threads=1),
        video=settings["video"])
    with _progress(f"{predictor.model} on {source}") as (on_frame, state):
        try:
            summary = run_video(predictor, source, folder, video, on_frame)
        except (KeyboardInterrupt, Terminated):
            if state["frames"]:
                click.echo(f"stopped after {state['frames']} frames: their video and {FRAMES_FILE} are in {folder}/",
                           err=True)
            raise
        except VideoDamaged as exc:
            if exc.summary is not None:
                click.echo(f"{source}: {exc.summary['line']}")
            raise
    click.echo(f"{source}: {summary['line']}")
    wrote = [f"{folder / VIDEO_FILE}"] if summary["files"]["video"] else []
    click.echo(f"wrote {', '.join([*wrote, str(folder / FRAMES_FILE)])}", err=True)
