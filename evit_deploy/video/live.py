"""Live sources: a reader thread takes frames as the camera or stream delivers them and keeps only the newest.

When processing is slower than the source, a frame the consumer has not taken yet is replaced by the next one
(counted in ``dropped``) instead of piling up: latency and memory stay bounded however long the stream runs.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator

from .frames import Frame, FrameSource, SourceSettings

POLL_S = 0.1  # how often waiting threads look at the stop flag


class NewestFrames:
    """A bounded buffer between a producer that must not wait and a slower consumer: ``put`` on a full buffer
    discards the oldest frame held (counted in ``dropped``); ``get`` waits for a frame, None once closed and
    empty."""

    def __init__(self, size: int = 1) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self._frames: deque[Frame] = deque(maxlen=size)
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if len(self._frames) == self._frames.maxlen:
                self.dropped += 1
            self._frames.append(frame)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest frame held, waiting up to ``timeout`` (None: until one comes or the buffer closes);
        None when closed and empty. :class:`TimeoutError` when nothing came in time."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._frames or self._closed, timeout):
                raise TimeoutError
            return self._frames.popleft() if self._frames else None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class LiveSource(FrameSource):
    """Reads ``inner`` on its own thread into :class:`NewestFrames`; :meth:`frames` yields what is there.
    ``paced``: a file is read at its frame rate, as a camera would deliver it."""

    def __init__(self, inner: FrameSource, settings: SourceSettings, paced: bool = False) -> None:
        self.inner = inner
        self.info = inner.info
        self._paced = paced and bool(inner.info.fps)
        self._buffer = NewestFrames(settings.newest)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._join_s = settings.timeout + 1.0

    @property
    def dropped(self) -> int:  # type: ignore[override]
        return self._buffer.dropped

    @property
    def damage(self) -> str | None:  # type: ignore[override]
        return self.inner.damage

    @property
    def skipped(self) -> int:  # type: ignore[override]
        return self.inner.skipped

    def _read(self) -> None:
        started = time.perf_counter()
        try:
            for frame in self.inner.frames():
                if self._stop.is_set():
                    break
                if self._paced and frame.time is not None:
                    wait = started + frame.time - time.perf_counter()
                    if wait > 0 and self._stop.wait(wait):
                        break
                self._buffer.put(frame)
        except BaseException as exc:  # handed to the consumer's thread
            self._error = exc
        finally:
            self._buffer.close()

    def frames(self) -> Iterator[Frame]:
        self._thread = threading.Thread(target=self._read, name="evit-video-reader", daemon=True)
        self._thread.start()
        while True:
            try:
                frame = self._buffer.get(POLL_S)
            except TimeoutError:
                continue
            if frame is None:
                break
            yield frame
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._stop.set()
        self._buffer.close()
        if self._thread is not None:
            self._thread.join(self._join_s)
        if self._thread is None or not self._thread.is_alive():
            self.inner.close()
