"""The pipelined run: decoding, pre-processing, inference, post-processing/drawing and encoding overlap.

Each stage runs on its own thread and hands frames to the next through a bounded queue (``depth`` frames): a
slow stage blocks the one before it (back-pressure), so a file is never read faster than it is processed and
memory stays flat however long the video. For a live source the queues up to the model keep the newest frames
instead (a full queue drops its oldest frame, counted), so frames do not grow stale waiting for a slower model;
the source's own reader keeps only the newest frames too (:mod:`evit_deploy.video.live`). Order is kept (one
thread per stage), and a stage's error stops the run and is raised in the consumer's thread.

Thread split on the CPU: the model runs on the runtime's own threads (the export's ``runtime.threads``, default
every core), opened with ``shared_cpu`` so idle runtime threads do not spin on cores the other stages need;
FFmpeg decodes on one thread (``SourceSettings.decoder_threads``) and x264 encodes on one; pre- and
post-processing are numpy/PIL/torch work on one thread each, with torch's intra-op threads set to
``StreamSettings.torch_threads`` while the run lasts (the CLI and the benchmark use 1; a PyTorch-engine model is
left alone). Python holds the GIL only between these calls; decoding, the model run, resizing and encoding
release it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..host import torch_threads
from ..images import load_rgb
from .frames import Frame, FrameSource
from .live import POLL_S

_END = object()  # end of the frames, passed down the stages
NEWEST_UNTIL = "infer"  # live sources: the queues feeding the stages up to this one keep the newest frames
JOIN_S = 30.0  # longest wait for a stage to finish its frame when the run stops


@dataclass
class FrameJob:
    """One frame on its way through the stages; each stage fills its part and frees what is no longer needed."""

    frame: Frame
    ms: dict[str, float] = field(default_factory=dict)  # stage → milliseconds spent on this frame
    rgb: Any = None  # PIL image of the frame (pre → post)
    item: Any = None  # Prepared model input (pre → infer → post)
    raw: Any = None  # the model's raw output (infer → post)
    result: Any = None  # the Result, as Predictor.predict returns it
    drawn: np.ndarray | None = None  # the annotated frame (post → encode)
    done: float = 0.0  # perf_counter when the last stage finished


@dataclass(frozen=True)
class StreamSettings:
    """``max_frames``/``duration`` stop the run (``duration``: seconds of video; of wall-clock time since the first
    frame for a live source). ``depth``: frames queued between two stages. ``draw``: annotate each frame
    (``Result.annotate``). ``torch_threads``: torch's intra-op threads while the run lasts (None: untouched)."""

    max_frames: int | None = None
    duration: float | None = None
    depth: int = 1
    draw: bool = False
    torch_threads: int | None = None
    helper_nice: int = 0  # Linux: niceness added to every stage thread but inference (and the threads they start)


Stage = tuple[str, Callable[[FrameJob], None]]


class NewestQueue(queue.Queue):
    """A queue whose ``put`` never waits: on a full queue it discards the oldest item, counted in ``dropped``."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.dropped = 0

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        with self.not_full:
            if item is not _END and 0 < self.maxsize <= self._qsize():
                self._get()
                self.dropped += 1
                self.unfinished_tasks -= 1
            self._put(item)
            self.unfinished_tasks += 1
            self.not_empty.notify()


class Pipeline:
    """Runs ``feed`` (the first stage, e.g. decoding) and ``stages`` each on a thread; iterate to get the finished
    jobs in order. Leaving the iteration (end, error, ``break``, KeyboardInterrupt) stops and joins the threads.
    ``newest``: how many of the first queues keep the newest frames instead of blocking (live sources)."""

    def __init__(self, feed: Iterator[FrameJob], stages: Sequence[Stage], depth: int = 1, newest: int = 0,
                 on_start: Callable[[str], None] | None = None) -> None:
        self._feed = feed
        self._on_start = on_start or (lambda name: None)
        self._stages = list(stages)
        size = max(1, depth)
        self._queues: list[queue.Queue] = [NewestQueue(size) if i < newest else queue.Queue(size)
                                           for i in range(len(self._stages) + 1)]
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []

    # -- plumbing ---------------------------------------------------------------------------------------------
    def _put(self, q: queue.Queue, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue) -> Any:
        while not self._stop.is_set():
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                continue
        return _END

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._stop.set()

    def _run_feed(self) -> None:
        try:
            self._on_start("decode")
            for job in self._feed:
                if not self._put(self._queues[0], job):
                    return
            self._put(self._queues[0], _END)
        except BaseException as exc:  # handed to the consumer
            self._fail(exc)

    def _run_stage(self, index: int) -> None:
        name, work = self._stages[index]
        source, sink = self._queues[index], self._queues[index + 1]
        try:
            self._on_start(name)
            while True:
                job = self._get(source)
                if job is _END:
                    self._put(sink, _END)
                    return
                tic = time.perf_counter()
                work(job)
                job.ms[name] = (time.perf_counter() - tic) * 1e3
                if not self._put(sink, job):
                    return
        except BaseException as exc:
            self._fail(exc)

    # -- use ----------------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[FrameJob]:
        self._threads = [threading.Thread(target=self._run_feed, name="evit-video-decode", daemon=True)]
        self._threads += [threading.Thread(target=self._run_stage, args=(i,), name=f"evit-video-{name}", daemon=True)
                          for i, (name, _) in enumerate(self._stages)]
        for thread in self._threads:
            thread.start()
        try:
            last = self._queues[-1]
            while True:
                try:
                    job = last.get(timeout=POLL_S)
                except queue.Empty:
                    if self._error is not None:
                        raise self._error from None
                    continue
                if job is _END:
                    break
                job.done = time.perf_counter()
                yield job
            if self._error is not None:
                raise self._error
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop every stage after the frame it is on, and wait for them (at most ``JOIN_S`` seconds each)."""
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(JOIN_S)

    @property
    def dropped(self) -> int:
        """Frames the newest-frame queues discarded."""
        return sum(q.dropped for q in self._queues if isinstance(q, NewestQueue))

    @property
    def stopped_cleanly(self) -> bool:
        """Whether every stage thread has ended (a sink may be closed only then)."""
        return not any(t.is_alive() for t in self._threads)


def _feed(source: FrameSource, settings: StreamSettings) -> Iterator[FrameJob]:
    """The source's frames as jobs, up to ``max_frames`` / ``duration``."""
    first: float | None = None
    for count, frame in enumerate(source.frames()):
        if settings.max_frames is not None and count >= settings.max_frames:
            return
        if settings.duration is not None:
            first = frame.arrived if first is None else first
            elapsed = frame.arrived - first if source.info.live or frame.time is None else frame.time
            if elapsed >= settings.duration:
                return
        yield FrameJob(frame, {"decode": frame.decode_ms})


def build_pipeline(predictor: Any, source: FrameSource, settings: StreamSettings,
                   options_for: Callable[[int], dict[str, Any]], sink: Callable[[FrameJob], None] | None = None
                   ) -> Pipeline:
    """The pipeline of ``predictor`` (a :class:`~evit_deploy.predict.Predictor`) over ``source``'s frames: decode →
    pre → infer → post (→ ``sink``, e.g. encoding, as the last stage). Its finished jobs come in frame order,
    each with its ``result`` (and ``drawn`` frame with ``settings.draw``). ``options_for(frame_index)``: the
    prediction options of a frame (SAM prompts may change per frame)."""

    def pre(job: FrameJob) -> None:
        job.rgb = load_rgb(job.frame.image)
        job.item = predictor.prepare(job.rgb, **options_for(job.frame.index))

    def infer(job: FrameJob) -> None:
        job.raw = predictor.infer([job.item])[0]

    def post(job: FrameJob) -> None:
        job.result = predictor.finish(job.item, job.raw)
        if settings.draw:
            job.drawn = np.asarray(job.result.annotate(job.rgb))
        job.item = job.raw = job.rgb = None

    stages: list[Stage] = [("pre", pre), ("infer", infer), ("post", post)]
    if sink is not None:
        stages.append(("encode", sink))
    newest = [name for name, _ in stages].index(NEWEST_UNTIL) + 1 if source.info.live else 0
    return Pipeline(_feed(source, settings), stages, settings.depth, newest, _helper_priority(settings.helper_nice))


def _helper_priority(nice: int) -> Callable[[str], None] | None:
    """Lower the priority of the calling stage thread (not inference) by ``nice`` (Linux, where niceness is per
    thread), so that the model's threads win the cores when both are ready and the other stages fill the gaps."""
    if not nice or not sys.platform.startswith("linux"):
        return None

    def lower(stage: str) -> None:
        if stage != "infer":
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + nice)

    return lower


def pipeline_threads(predictor: Any, settings: StreamSettings) -> contextlib.AbstractContextManager[None]:
    """torch's threads for the run (left alone when the model itself runs in PyTorch)."""
    return torch_threads(None if predictor.engine.runs_on_torch else settings.torch_threads)


def stream_jobs(predictor: Any, source: FrameSource, settings: StreamSettings,
                options_for: Callable[[int], dict[str, Any]]) -> Iterator[FrameJob]:
    """The finished jobs of :func:`build_pipeline` (without a sink), torch's threads set for the run."""
    with pipeline_threads(predictor, settings):
        yield from build_pipeline(predictor, source, settings, options_for)
