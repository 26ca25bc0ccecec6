"""Measuring a video run: the model alone against the whole pipeline, in the same process, with where the time goes.

:func:`bench_video` returns a JSON-ready dict:

- ``model_only_fps``: the model on pre-processed frames of the source, one after another, nothing else running;
- ``end_to_end_fps``: the whole pipeline over the file (decode → pre → infer → post/draw → encode to a temporary
  MP4), frames over wall-clock time; the two are measured in alternating blocks (``repeats``) and
  ``ratio`` is the median of each block pair's ratio;
- ``stages_ms``: the mean time of each stage per frame in the pipeline runs (stages overlap, so they do not add up
  to the frame time), ``infer`` being the model's time under the load of the other stages;
- ``memory``: the resident set size (current and peak) after ``memory_frames[0]`` and ``memory_frames[1]`` frames
  of the file played in a loop, and the growth between them (measured first, before the other blocks);
- ``decoders``: decoding the file alone with PyAV and with OpenCV (when installed), ms a frame — why PyAV.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import EvitError
from ..host import load_average, machine_facts, peak_rss_mb, rss_mb, torch_threads
from .frames import SourceSettings
from .pipeline import StreamSettings
from .run import VideoSettings, run_video
from .sources import open_source

TARGET_RATIO = 0.8  # end-to-end fps at least this share of model-only fps (issue: video and live streams)
TARGET_MEMORY_GROWTH = 0.10  # peak RSS at the later frame within 10% of the earlier one
DISTINCT_INPUTS = 8  # model-only runs cycle over this many pre-processed frames


def _model_only(predictor: Any, source: str, runs: int, torch_count: int | None) -> float:
    """Frames per second of ``predictor.infer`` alone on pre-processed frames of ``source``."""
    with open_source(source) as opened:
        items = []
        for frame in opened.frames():
            items.append(predictor.prepare(frame.image))
            if len(items) == DISTINCT_INPUTS:
                break
    with torch_threads(None if predictor.engine.runs_on_torch else torch_count):
        predictor.infer([items[0]])
        started = time.perf_counter()
        for i in range(runs):
            predictor.infer([items[i % len(items)]])
        return runs / (time.perf_counter() - started)


def _memory(predictor: Any, source: str, folder: Path, frames: tuple[int, int], stream: StreamSettings,
            frame_count: int) -> dict[str, Any]:
    """RSS after ``frames[0]`` and ``frames[1]`` frames of ``source`` played in a loop through the pipeline."""
    loops = math.ceil(frames[1] / max(1, frame_count))
    marks: dict[int, dict[str, float]] = {}

    def on_frame(stats: Any, _: Any) -> None:
        if stats.frames in frames:
            marks[stats.frames] = {"rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()}

    settings = VideoSettings(source=SourceSettings(loop=loops), stream=replace(stream, max_frames=frames[1]))
    run_video(predictor, source, folder, settings, on_frame)
    first, last = marks.get(frames[0]), marks.get(frames[1])
    if first is None or last is None:
        raise EvitError(f"the looped run did not reach frame {frames[1]}")
    growth = {k: round(last[k] / first[k] - 1.0, 4) if first[k] and last[k] else None for k in first}
    return {"frames": list(frames), "loops": loops, "at": {str(k): v for k, v in sorted(marks.items())},
            "growth": growth, "target_growth": TARGET_MEMORY_GROWTH,
            "met": None if growth["peak_rss_mb"] is None else growth["peak_rss_mb"] <= TARGET_MEMORY_GROWTH}


def decode_rates(source: str, repeats: int = 3) -> dict[str, float | None]:
    """ms a frame to decode ``source`` to RGB arrays alone: PyAV (as the sources do) and OpenCV (None when it is
    not installed). Median of ``repeats`` passes."""
    def pyav() -> float:
        with open_source(source) as opened:
            started, count = time.perf_counter(), sum(1 for _ in opened.frames())
        return (time.perf_counter() - started) * 1e3 / count

    def opencv() -> float:
        import cv2

        capture = cv2.VideoCapture(source)
        started, count = time.perf_counter(), 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            count += 1
        capture.release()
        return (time.perf_counter() - started) * 1e3 / max(1, count)

    out: dict[str, float | None] = {"pyav": round(statistics.median(pyav() for _ in range(repeats)), 3)}
    try:
        import cv2  # noqa: F401 - optional: the [eval] extra
    except ImportError:
        out["opencv"] = None
    else:
        out["opencv"] = round(statistics.median(opencv() for _ in range(repeats)), 3)
    return out


def bench_video(export: str | os.PathLike, source: str | os.PathLike, *, threads: int | None = None,
                repeats: int = 3, memory_frames: tuple[int, int] | None = (60, 600), torch_count: int = 1,
                helper_nice: int = 0, decoders: bool = True) -> dict[str, Any]:
    """Model-only vs end-to-end frame rates of ``export`` on the video file ``source``, where the time goes, and
    (``memory_frames``) whether memory stays flat over a looped run. ``threads``: the runtime's (default: the
    export's). Returns the figures as a dict (see the module docstring)."""
    from ..predict.predictor import Predictor

    source = str(source)
    predictor = Predictor.from_export(export, threads=threads, shared_cpu=True)
    predictor.warm_up()
    with open_source(source) as opened:
        info = opened.info
    if info.live or not info.frames:
        raise EvitError(f"{source}: bench_video needs a video file with a known frame count")
    stream = StreamSettings(draw=True, torch_threads=torch_count, helper_nice=helper_nice)
    machine = machine_facts(threads)
    with tempfile.TemporaryDirectory(prefix="evit-bench-video-") as tmp:
        memory = (_memory(predictor, source, Path(tmp) / "memory", memory_frames, stream, info.frames)
                  if memory_frames else None)
        model_fps, e2e_fps, ratios, runs = [], [], [], []
        for r in range(repeats):
            model_fps.append(_model_only(predictor, source, info.frames, torch_count))
            summary = run_video(predictor, source, Path(tmp) / f"run{r}", VideoSettings(stream=stream))
            e2e_fps.append(summary["pipeline_fps"])
            ratios.append(e2e_fps[-1] / model_fps[-1])
            runs.append(summary)
    stages = {s: round(statistics.median(run["stages_ms"][s]["mean"] for run in runs), 2)
              for s in runs[0]["stages_ms"]}
    ratio = statistics.median(ratios)
    return {
        "export": str(export), "model": predictor.model, "task": predictor.task,
        "backend": ", ".join(b.name for b in predictor.engine.backends.values()),
        "runtime_facts": {role: b.facts for role, b in predictor.engine.backends.items()},
        "source": {"path": source, "frames": info.frames, "fps": info.fps, "size": list(info.size or ()),
                   "codec": info.codec},
        "threads": {"runtime": threads if threads is not None else "export default", "decoder": 1, "encoder": 1,
                    "torch (pre/post)": torch_count, "python stages": 5, "helper nice": helper_nice},
        "repeats": repeats, "machine": machine,
        "load_average": {"before": machine["load_average"], "after": load_average()},
        "model_only_fps": {"median": round(statistics.median(model_fps), 3), "runs": [round(v, 3) for v in model_fps]},
        "end_to_end_fps": {"median": round(statistics.median(e2e_fps), 3), "runs": [round(v, 3) for v in e2e_fps]},
        "ratio": round(ratio, 3), "ratios": [round(v, 3) for v in ratios], "target_ratio": TARGET_RATIO,
        "ratio_met": ratio >= TARGET_RATIO,
        "model_fps_in_pipeline": round(statistics.median(run["model_fps"] for run in runs), 3),
        "latency_ms": {q: round(statistics.median(run["latency_ms"][q] for run in runs), 1) for q in ("p50", "p99")},
        "stages_ms": stages, "memory": memory, "decoders": decode_rates(source) if decoders else None,
    }


def video_report(result: dict[str, Any], title: str | None = None) -> Any:
    """:func:`bench_video`'s figures as the typed report every benchmark writes (one renderer): a row each for the
    model alone and the whole pipeline (ms a frame over the runs), and tables for the stages, memory and
    decoders."""
    from ..bench.schema import Machine, Report, Row
    from ..bench.stats import summarize
    from ..host import library_versions

    facts = result["machine"]
    machine = Machine(label=facts["label"], cpu=facts["cpu"], cpu_flags=facts["cpu_flags"], cores=facts["cores"],
                      threads=facts["threads"], platform=facts["platform"], gpu=facts.get("gpu"),
                      load_start=result["load_average"]["before"], load_end=result["load_average"]["after"])
    settings = {"threads": result["threads"], "repeats": result["repeats"], "source": result["source"]}
    rows = [Row(result["model"], result["backend"], what, "-", 1, device=machine.label,
                latency=summarize([[1000.0 / fps for fps in result[key]["runs"]]]),
                extra={"frames/s (median)": result[key]["median"]})
            for what, key in (("model only", "model_only_fps"), ("end to end", "end_to_end_fps"))]
    stages = result["stages_ms"]
    tables = [{"title": "Where the time goes (mean ms a frame per stage; the stages overlap)",
               "columns": list(stages), "rows": [list(stages.values())]}]
    memory = result.get("memory")
    if memory:
        first, last = (memory["at"][str(f)] for f in memory["frames"])
        tables.append({"title": f"Memory over the file played {memory['loops']} times",
                       "columns": ["frame", "peak RSS MiB", "RSS MiB"],
                       "rows": [[memory["frames"][0], first["peak_rss_mb"], first["rss_mb"]],
                                [memory["frames"][1], last["peak_rss_mb"], last["rss_mb"]]],
                       "note": f"peak RSS growth {100 * memory['growth']['peak_rss_mb']:+.1f}% (target within "
                               f"{100 * memory['target_growth']:.0f}%: {'met' if memory['met'] else 'not met'})."})
    decoders = result.get("decoders")
    if decoders:
        tables.append({"title": "Decoding alone, ms a frame to RGB", "columns": list(decoders),
                       "rows": [[v if v is not None else "not installed" for v in decoders.values()]]})
    report = Report(kind="video", title=title or f"{result['model']}: video end to end against the model alone",
                    machine=machine, rows=rows, settings=settings, versions=library_versions(), model=result["model"],
                    task=result["task"], export=result["export"], input_size=result["source"]["size"] or None,
                    measured="frames of a video file", columns={"frames/s (median)": "frames/s"})
    report.sections["tables"] = tables
    report.notes = [
        f"End to end / model only: {result['ratio']:.2f} (per block pair {result['ratios']}); target >= "
        f"{result['target_ratio']}: {'met' if result['ratio_met'] else 'not met'}. Latency from decode to written "
        f"frame: p50 {result['latency_ms']['p50']} ms, p99 {result['latency_ms']['p99']} ms; the model inside the "
        f"pipeline ran {result['model_fps_in_pipeline']:.3f} frames/s.",
        "Both rows are measured in this one process in alternating blocks: the model alone on pre-processed frames, "
        "then the whole pipeline (decode → pre → infer → post/draw → encode) over the file; the rows give ms a frame "
        "(1000 / frames per second of each block).",
        "Threads: " + ", ".join(f"{k} {v}" for k, v in result["threads"].items()) + ".",
    ]
    return report
