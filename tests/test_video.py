"""Video and live streams: sources, the pipelined run, the annotated video and frames.jsonl, Predictor.stream, bad
input, a network source served by a local HTTP server, and a kill mid-run.

Every video here is made by the test with PyAV (a few frames of a few dozen pixels), decoded again after the run;
the model exports are the session's small shared ones (tests/conftest.py).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evit_deploy.errors import EvitError
from evit_deploy.predict import Predictor
from evit_deploy.predict.prompts import PromptError
from evit_deploy.samples import sample_photo
from evit_deploy.video import (
    PromptSchedule,
    SourceSettings,
    VideoError,
    VideoSettings,
    is_video_source,
    open_source,
    run_video,
)
from evit_deploy.video.live import NewestFrames
from evit_deploy.video.pipeline import FrameJob, NewestQueue, Pipeline
from evit_deploy.video.sources import names_images, source_label
from evit_deploy.video.writer import VideoWriter

from .helpers import run_cli
from .shared_exports import build_sam_export

av = pytest.importorskip("av")

SIZE = (96, 160)  # (H, W) of the test videos


# -- making and reading videos (PyAV directly, independent of the code under test) -----------------------------
def frames_of(count: int, size: tuple[int, int] = SIZE, seed: int = 0) -> list[np.ndarray]:
    """``count`` distinct RGB frames: a sample photo panned across, so every frame differs."""
    h, w = size
    base = np.asarray(Image.fromarray(sample_photo("coffee")).resize((w * 2, h * 2)))
    rng = np.random.default_rng(seed)
    return [np.ascontiguousarray(base[(3 * i) % h : (3 * i) % h + h, (5 * i) % w : (5 * i) % w + w]
                                 + rng.integers(0, 2, (h, w, 3), dtype=np.uint8)) for i in range(count)]


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 10, fmt: str | None = None,
               options: dict | None = None, codec: str = "libx264") -> Path:
    with av.open(str(path), "w", format=fmt, options=options or {}) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    return path


def decode(path: Path) -> tuple[list[np.ndarray], Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], rate


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def no_leftovers(folder: Path) -> bool:
    return not list(folder.parent.glob(f".{folder.name}.tmp-*"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """Six frames of 96x160 at 10 fps, H.264 in MP4 (index at the front, so HTTP can stream it)."""
    folder = tmp_path_factory.mktemp("clips")
    return write_clip(folder / "clip.mp4", frames_of(6), options={"movflags": "+faststart"})


@pytest.fixture(scope="module")
def seg_pred(seg_export):
    return Predictor.from_export(seg_export[0])


# -- sources -------------------------------------------------------------------------------------------------
def test_source_kinds_and_labels(clip, tmp_path):
    assert is_video_source("0") and is_video_source("/dev/video2") and is_video_source("rtsp://cam/1")
    assert is_video_source("https://example.com/a.mp4") and is_video_source("x.MKV")
    assert not is_video_source("photo.jpg") and not is_video_source("photos/")
    assert names_images(str(tmp_path)) and names_images("a.png") and names_images("shots/*.jpg")
    assert not names_images(str(clip))
    assert source_label("0") == "camera0" and source_label("/dev/video3") == "camera3"
    assert source_label("rtsp://10.0.0.5:554/live/main") == "10.0.0.5-live-main"
    assert source_label("videos/street 1.mp4") == "street-1"
    with open_source(str(clip)) as source:
        info = source.info
        assert (info.kind, info.live, info.size, info.frames, info.codec) == ("file", False, SIZE, 6, "h264")
        assert info.fps == pytest.approx(10)
        frames = list(source.frames())
    assert [f.index for f in frames] == list(range(6))
    assert [f.time for f in frames] == pytest.approx([i / 10 for i in range(6)])
    expected, _ = decode(clip)
    assert all((f.image == e).all() for f, e in zip(frames, expected))
    with open_source(str(clip), SourceSettings(loop=3)) as source:
        looped = list(source.frames())
    assert len(looped) == 18 and looped[-1].index == 17
    assert np.all(np.diff([f.time for f in looped]) > 0)
    assert (looped[12].image == frames[0].image).all()


def test_rotated_video_is_read_upright(tmp_path):
    stored = np.zeros((32, 64, 3), np.uint8)
    stored[:, :8] = 255  # a white band along the left edge of the stored picture
    with av.open(str(tmp_path / "phone.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv444p"
        stream.set_display_rotation(90)  # shown turned a quarter counter-clockwise
        out.mux(stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        out.mux(stream.encode(None))
    with open_source(str(tmp_path / "phone.mp4")) as source:
        assert source.info.size == (64, 32)
        frame = next(source.frames()).image
    assert frame.shape == (64, 32, 3)
    assert frame[-6:].mean() > 200 and frame[:-10].mean() < 30  # the left band is now the bottom band


def test_newest_frames_buffer_and_queue_keep_the_newest():
    buffer = NewestFrames(1)
    for i in range(5):
        buffer.put(i)
    assert buffer.dropped == 4 and buffer.get(0) == 4
    with pytest.raises(TimeoutError):
        buffer.get(0.01)
    buffer.put(7)
    buffer.close()
    assert buffer.get() == 7 and buffer.get() is None  # what is held still comes out after close
    q = NewestQueue(2)
    for i in range(5):
        q.put(i)
    assert q.dropped == 3 and [q.get_nowait(), q.get_nowait()] == [3, 4]


def test_pipeline_keeps_order_applies_back_pressure_and_raises_stage_errors():
    produced: list[int] = []

    def feed(n):
        for i in range(n):
            produced.append(i)
            yield FrameJob(frame=i)  # type: ignore[arg-type]

    def slow(job):
        time.sleep(0.01)

    stages = [("a", slow), ("b", lambda job: None)]
    pipeline = Pipeline(feed(40), stages, depth=1)
    seen = []
    for job in pipeline:
        seen.append(job.frame)
        # decoded but not finished: at most one frame in each stage and one in each queue
        assert len(produced) - len(seen) <= 2 * len(stages) + 2
        time.sleep(0.005)
    assert seen == list(range(40)) and pipeline.stopped_cleanly

    def boom(job):
        if job.frame == 3:
            raise ValueError("stage failed on frame 3")

    with pytest.raises(ValueError, match="frame 3"):
        list(Pipeline(feed(10), [("a", boom)]))


# -- segmentation: the annotated video, frames.jsonl, the summary ---------------------------------------------
def test_cli_segmentation_video(seg_export, seg_pred, clip, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["predict", str(seg_export[0]), str(clip), "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "6 frames, 0 dropped; model " in stdout and "pipeline" in stdout and "p99" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["annotated.mp4", "frames.jsonl", "summary.json"]
    source, _ = decode(clip)
    video, rate = decode(out / "annotated.mp4")
    assert len(video) == 6 and video[0].shape == (*SIZE, 3) and rate == 10
    records = lines(out / "frames.jsonl")
    assert [r["frame"] for r in records] == list(range(6))
    assert [r["time"] for r in records] == pytest.approx([i / 10 for i in range(6)])
    for frame, drawn, record in zip(source, video, records):
        result = seg_pred(frame)
        assert record["result"] == result.to_dict(include_label_map=False)
        assert record["model_ms"] > 0 and record["e2e_ms"] >= record["model_ms"]
        expected = np.asarray(result.overlay(Image.fromarray(frame)), dtype=np.float32)
        drawn = drawn.astype(np.float32)
        # H.264 is lossy: the decoded video is close to the overlay and far from the undrawn frame
        assert np.abs(drawn - expected).mean() < 4 < np.abs(drawn - frame).mean()
        for y, x in ((20, 30), (48, 80), (70, 140)):
            color = seg_pred.info.palette[result.label_map[y, x]]
            blend = 0.5 * frame[y, x] + 0.5 * color
            assert np.abs(drawn[y, x] - blend).max() < 40
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 6 and summary["dropped"] == 0 and summary["stopped"] is None
    assert summary["model_fps"] > 0 and summary["pipeline_fps"] > 0
    assert set(summary["stages_ms"]) == {"decode", "pre", "infer", "post", "encode"}
    assert summary["latency_ms"]["p99"] >= summary["latency_ms"]["p50"] > 0
    # a rerun replaces its own earlier output; limits stop early
    assert run_cli(["predict", str(seg_export[0]), str(clip), "-o", str(out), "--max-frames", "2"]) == 0
    assert len(lines(out / "frames.jsonl")) == 2 and len(decode(out / "annotated.mp4")[0]) == 2
    assert run_cli(["predict", str(seg_export[0]), "--source", str(clip), "-o", str(out), "--duration", "0.25",
                    "--no-video"]) == 0
    assert [r["frame"] for r in lines(out / "frames.jsonl")] == [0, 1, 2] and not (out / "annotated.mp4").exists()
    assert no_leftovers(out)


def test_predictor_stream_yields_what_predict_returns(seg_pred, cls_pred, clip, tmp_path):
    source, _ = decode(clip)
    streamed = list(seg_pred.stream(str(clip)))
    assert len(streamed) == 6
    for frame, result in zip(source, streamed):
        assert (result.label_map == seg_pred(frame).label_map).all()
    assert len(list(seg_pred.stream(str(clip), max_frames=2))) == 2
    # images, folders and globs are sources too
    folder = tmp_path / "shots"
    folder.mkdir()
    for i, frame in enumerate(source[:3]):
        Image.fromarray(frame).save(folder / f"{i}.png")
    for spec in (str(folder), str(folder / "*.png"), [str(folder / "0.png"), str(folder / "1.png")]):
        results = list(cls_pred.stream(spec, top_k=2))
        assert [r.indices for r in results] == [cls_pred(f, top_k=2).indices for f in source[: len(results)]]
    stream = seg_pred.stream(str(clip))
    next(stream)
    stream.close()  # leaving early stops the threads
    assert not [t for t in threading.enumerate() if t.name.startswith("evit-video")]


def test_bench_video_reports_model_only_and_end_to_end_side_by_side(seg_export, clip):
    from evit_deploy.video.bench import bench_video

    report = bench_video(seg_export[0], clip, repeats=1, memory_frames=(3, 9))
    assert report["source"]["frames"] == 6 and report["task"] == "seg"
    assert report["ratio"] == pytest.approx(report["end_to_end_fps"]["runs"][0] / report["model_only_fps"]["runs"][0],
                                            rel=1e-2)
    assert set(report["stages_ms"]) == {"decode", "pre", "infer", "post", "encode"}
    memory = report["memory"]
    assert memory["loops"] == 2 and set(memory["at"]) == {"3", "9"}
    assert memory["growth"]["peak_rss_mb"] == pytest.approx(
        memory["at"]["9"]["peak_rss_mb"] / memory["at"]["3"]["peak_rss_mb"] - 1, abs=1e-3)
    assert report["decoders"]["pyav"] > 0


def test_bench_video_command_writes_the_typed_report(seg_export, clip, tmp_path):
    """`bench video`: the same figures as one report of the one renderer (rows: model alone, end to end)."""
    from evit_deploy.bench.schema import read_report

    from .helpers import run_cli

    assert run_cli(["bench", "video", str(seg_export[0]), str(clip), "--repeats", "1", "--memory-frames", "3", "6",
                    "-o", str(tmp_path / "rep")]) == 0
    report = read_report(tmp_path / "rep")
    assert report.kind == "video" and [r.format for r in report.rows] == ["model only", "end to end"]
    assert all(r.latency.median > 0 for r in report.rows)
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Where the time goes" in md and "decode" in md and "Memory over the file played" in md


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_helper_stages_can_run_at_a_lower_priority():
    from evit_deploy.video.pipeline import _helper_priority

    lower, seen = _helper_priority(3), {}

    def stage(name):
        lower(name)
        seen[name] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    for name in ("pre", "infer"):
        thread = threading.Thread(target=stage, args=(name,))
        thread.start()
        thread.join()
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert seen == {"pre": min(19, base + 3), "infer": base}
    assert _helper_priority(0) is None


# -- classification and SAM -----------------------------------------------------------------------------------
def test_classification_video_writes_label_and_score(cls_pred, tmp_path):
    bright = [np.full((*SIZE, 3), 230, np.uint8) for _ in range(3)]
    clip = write_clip(tmp_path / "bright.mkv", bright, fps=25, fmt="matroska")
    summary = run_video(cls_pred, str(clip), tmp_path / "out")
    assert summary["frames"] == 3
    video, rate = decode(tmp_path / "out" / "annotated.mp4")
    assert len(video) == 3 and video[0].shape == (*SIZE, 3) and rate == 25
    top = video[0][:8, :40].astype(int)  # the caption's dark box with light text over a bright frame
    assert (top < 60).mean() > 0.5 and (top > 150).any()
    assert (np.abs(video[0][60:, 100:].astype(int) - 230) < 12).all()  # the rest of the frame is untouched
    record = lines(tmp_path / "out" / "frames.jsonl")[0]
    best = cls_pred(bright[0])
    assert record["result"]["top_k"][0]["index"] == best.indices[0]


def test_sam_video_with_a_prompt_once_and_per_frame(tmp_path):
    sam = Predictor.from_export(build_sam_export())
    frames = frames_of(3, (64, 96), seed=1)
    clip = write_clip(tmp_path / "sam.mp4", frames)
    source, _ = decode(clip)
    box = [10, 8, 60, 50]
    once = list(sam.stream(str(clip), box=box, multimask=False))
    assert all(r.prompt["box"] == box for r in once)
    assert (once[1].masks == sam(source[1], box=box, multimask=False).masks).all()
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"frame": 0, "box": [10, 8, 60, 50]}\n\n{"frame": 2, "points": [[40, 30]]}\n')
    out = tmp_path / "out"
    assert run_cli(["predict", str(build_sam_export()), str(clip), "-o", str(out), "--prompts", str(prompts),
                    "--single-mask"]) == 0
    records = lines(out / "frames.jsonl")
    assert [r["result"]["prompt"]["box"] for r in records] == [box, box, None]
    assert records[2]["result"]["prompt"]["points"] == [[40.0, 30.0]]
    expected = sam(source[2], points=[[40, 30]], multimask=False)
    assert records[2]["result"]["masks"][0]["area"] == int(expected.masks[0].sum())
    video, _ = decode(out / "annotated.mp4")
    assert len(video) == 3 and video[0].shape == (64, 96, 3)
    mask = expected.masks[0]
    if mask.any() and (~mask).any():  # the mask is tinted: its pixels moved away from the frame more
        moved = np.abs(video[2].astype(int) - source[2].astype(int)).sum(-1)
        assert moved[mask].mean() > moved[~mask].mean()


def test_prompt_files_are_checked(tmp_path, seg_export, clip, capsys):
    good = tmp_path / "p.jsonl"
    good.write_text('{"frame": 0, "points": [[5, 5]]}\n{"frame": 4, "box": [1, 1, 9, 9]}\n')
    schedule = PromptSchedule.read(good)
    assert schedule.for_frame(3)["points"] == [[5, 5]] and schedule.for_frame(9)["box"] == [1, 1, 9, 9]
    with pytest.raises(PromptError, match="frame 0"):
        schedule.check((4, 4))  # the point lies outside a 4x4 frame
    for text, message in (('{"frame": 0, "points": [[1, 1]]}\nnot json\n', "p.jsonl:2: not JSON"),
                          ('{"frame": -1, "box": [0, 0, 1, 1]}\n', "'frame' must be"),
                          ('{"frame": 0, "boxes": [0, 0, 1, 1]}\n', "unknown keys boxes"),
                          ('{"frame": 0, "box": [0,0,1,1]}\n{"frame": 0, "box": [0,0,1,1]}\n', "earlier line"),
                          ('{"frame": 3, "box": [0, 0, 1, 1]}\n', "starts at frame 3")):
        good.write_text(text)
        with pytest.raises(EvitError, match=message):
            PromptSchedule.read(good)
    good.write_text('{"frame": 0, "box": [0, 0, 1, 1]}\n')
    assert run_cli(["predict", str(seg_export[0]), str(clip), "--prompts", str(good), "-o",
                    str(tmp_path / "o")]) == 2
    assert "Segment Anything" in capsys.readouterr().err and not (tmp_path / "o").exists()


# -- live sources ------------------------------------------------------------------------------------------
def test_live_file_drops_frames_a_slower_model_cannot_take(cls_pred, tmp_path):
    clip = write_clip(tmp_path / "fast.mp4", frames_of(40), fps=400)  # 400 fps: faster than the model
    summary = run_video(cls_pred, str(clip), tmp_path / "out",
                        VideoSettings(source=SourceSettings(live=True), video=False))
    assert summary["source"]["live"] is True and summary["dropped"] > 0
    assert summary["frames"] + summary["dropped"] == 40  # every frame processed or counted as dropped
    indices = [r["frame"] for r in lines(tmp_path / "out" / "frames.jsonl")]
    assert indices == sorted(indices) and len(indices) == summary["frames"]


# -- a network source -----------------------------------------------------------------------------------------
@pytest.fixture()
def http_server(clip):
    handler = functools.partial(_QuietHandler, directory=str(clip.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_http_url_is_a_source(seg_export, seg_pred, clip, http_server, tmp_path, capsys):
    out = tmp_path / "net"
    assert run_cli(["predict", str(seg_export[0]), f"{http_server}/clip.mp4", "-o", str(out)]) == 0
    assert "6 frames, 0 dropped" in capsys.readouterr().out
    records = lines(out / "frames.jsonl")
    source, _ = decode(clip)
    assert len(records) == 6 and records[5]["result"] == seg_pred(source[5]).to_dict(include_label_map=False)
    assert len(decode(out / "annotated.mp4")[0]) == 6
    assert json.loads((out / "summary.json").read_text())["source"]["kind"] == "url"


# -- bad input: one line, exit 2, nothing written ------------------------------------------------------------
def _truncated(clip: Path, path: Path) -> Path:
    """The clip cut in the middle of its fourth packet."""
    with av.open(str(clip)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    pos, size = packets[3]
    path.write_bytes(clip.read_bytes()[: pos + size // 2])
    return path


def _unknown_codec(path: Path) -> Path:
    avi = write_clip(path, frames_of(2), fmt="avi", codec="mpeg4")
    data = avi.read_bytes()
    assert data.count(b"FMP4") == 2
    avi.write_bytes(data.replace(b"FMP4", b"ZZZ9"))  # a FOURCC no decoder knows
    return avi


def test_bad_video_input_is_one_line_and_writes_nothing(seg_export, clip, tmp_path, capsys):
    export = str(seg_export[0])
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    with av.open(str(tmp_path / "empty.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height = 64, 64
        out.start_encoding()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # accepts connections, never answers
    port = silent.getsockname()[1]
    (tmp_path / "afile").write_text("x")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("keep me")
    cases = [
        ([str(tmp_path / "text.mp4")], "not a video FFmpeg can read"),
        ([str(tmp_path / "missing.mp4")], "video not found"),
        ([str(tmp_path / "empty.mp4")], "no video frames"),
        ([str(_unknown_codec(tmp_path / "odd.avi"))], "codec (ZZZ9) is not supported"),
        ([str(clip), "--max-pixels", "5000"], "160x96 = 15360 pixels, over the limit of 5000"),
        ([f"http://127.0.0.1:{port}/live.mp4", "--timeout", "0.5"], "did not answer within 0.5 s"),
        (["http://127.0.0.1:1/x.mp4"], "refused the connection"),
        (["--source", "/dev/video97"], "no camera at /dev/video97"),
        (["ftp://example.com/a.mp4"], "unsupported URL scheme 'ftp'"),
    ]
    try:
        for args, message in cases:
            out = tmp_path / "out"
            assert run_cli(["predict", export, *args, "-o", str(out)]) == 2, args
            err = capsys.readouterr().err.strip()
            assert message in err and err.startswith("error: ") and len(err.splitlines()) == 1, err
            assert not out.exists() and no_leftovers(out)
    finally:
        silent.close()
    for output, message in ((tmp_path / "afile" / "out", "is a file"), (tmp_path / "theirs", "not a previous")):
        assert run_cli(["predict", export, str(clip), "-o", str(output)]) == 2
        assert message in capsys.readouterr().err
    assert (tmp_path / "theirs" / "notes.txt").read_text() == "keep me"
    for args, message in (([str(clip), "--batch", "2"], "--batch is for images"),
                          ([str(clip), str(clip)], "one video source at a time"),
                          ([], "give IMAGES or --source")):
        assert run_cli(["predict", export, *args]) == 2
        assert message in capsys.readouterr().err


def test_damaged_video_keeps_the_frames_before_the_damage(seg_export, clip, tmp_path, capsys):
    broken = _truncated(clip, tmp_path / "cut.mp4")
    out = tmp_path / "out"
    assert run_cli(["predict", str(seg_export[0]), str(broken), "-o", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "cut.mp4 is damaged" in err[0] and "frames before it are in" in err[0]
    records = lines(out / "frames.jsonl")
    assert 0 < len(records) < 6 and f"{len(records)} frames" in captured.out
    assert len(decode(out / "annotated.mp4")[0]) == len(records)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["damage"] and summary["frames"] == len(records)
    with pytest.raises(VideoError, match="damaged"):
        list(Predictor.from_export(seg_export[0]).stream(str(broken)))


def test_file_cut_short_without_a_decoding_error_is_reported(tmp_path):
    mkv = write_clip(tmp_path / "a.mkv", frames_of(20), fps=10, fmt="matroska")
    with av.open(str(mkv)) as container:  # cut after the 8th packet: Matroska declares the duration up front
        ends = [p.pos + p.size for p in container.demux(video=0) if p.size]
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(mkv.read_bytes()[: ends[7]])
    with open_source(str(cut)) as source:
        frames = list(source.frames())
    assert 0 < len(frames) < 20 and "cut short" in source.damage and "of the 2.00 s" in source.damage
    with open_source(str(mkv)) as source:
        assert len(list(source.frames())) == 20 and source.damage is None


def test_writer_odd_size_and_time_stamps(tmp_path):
    writer = VideoWriter(tmp_path / "odd.mp4", 12.5, (33, 47))
    for i, frame in enumerate(frames_of(4, (33, 47))):
        writer.write(frame, i * 0.08)
    writer.write(np.zeros((20, 20, 3), np.uint8), 0.1)  # another size is scaled; a time in the past moves on
    writer.close()
    video, rate = decode(tmp_path / "odd.mp4")
    assert len(video) == 5 and video[0].shape == (33, 47, 3) and rate == Fraction(25, 2)


# -- a kill mid-run ---------------------------------------------------------------------------------------------
def _staged(out: Path) -> list[dict]:
    for folder in out.parent.glob(f".{out.name}.tmp-*"):
        try:
            return lines(folder / "frames.jsonl")
        except (OSError, ValueError):
            pass
    return []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_killed_run_leaves_a_playable_video_of_the_frames_done(cls_export, tmp_path, sig):
    clip = write_clip(tmp_path / "long.mp4", frames_of(120), fps=20)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "evit_deploy", "predict", str(cls_export[0]), str(clip),
                             "-o", str(out), "--live"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while len(_staged(out)) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err
    records = lines(out / "frames.jsonl")
    assert 3 <= len(records) < 120 and "stopped after" in err
    video, _ = decode(out / "annotated.mp4")
    assert len(video) == len(records)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] and summary["frames"] == len(records)
    assert no_leftovers(out)


class Interrupting:
    """A Predictor whose model run is interrupted (Ctrl-C) on frame ``at``."""

    def __init__(self, inner, at: int) -> None:
        self.inner, self.at, self.runs = inner, at, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def infer(self, items):
        if self.runs == self.at:
            raise KeyboardInterrupt
        self.runs += 1
        return self.inner.infer(items)


def test_interrupted_run_keeps_the_frames_done_or_leaves_nothing(cls_pred, clip, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_video(Interrupting(cls_pred, 0), str(clip), out)
    assert not out.exists() and no_leftovers(out)
    with pytest.raises(KeyboardInterrupt):
        run_video(Interrupting(cls_pred, 4), str(clip), out)
    records = lines(out / "frames.jsonl")
    assert 1 <= len(records) <= 4 and len(decode(out / "annotated.mp4")[0]) == len(records)
    assert json.loads((out / "summary.json").read_text())["stopped"] == "interrupted"


def test_help_describes_video(capsys):
    assert run_cli(["predict", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--source", "--max-frames", "--duration", "--live", "--prompts", "--timeout", "annotated.mp4"):
        assert flag in text

