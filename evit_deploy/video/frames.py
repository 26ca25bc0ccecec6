"""What every frame source shares: the frame, what is known of a source before its first frame, its settings,
the source interface and the error of a source that cannot be read."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from ..errors import EvitError
from ..limits import LIMITS


class VideoError(EvitError):
    """A video source that cannot be opened or read (one line, names the source)."""


class VideoDamaged(VideoError):
    """A source that was damaged part-way; the frames before the damage were processed (``summary``: the run's
    summary when outputs were written, else None)."""

    def __init__(self, message: str, summary: dict | None = None) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass(frozen=True)
class SourceSettings:
    """How sources are opened. ``live``: None = cameras, RTSP/RTMP and network streams of unknown length are live
    (newest frame kept, slower processing drops frames); True also paces a file at its frame rate, like a camera."""

    max_pixels: int = LIMITS.max_image_pixels  # largest frame (width x height)
    timeout: float = 10.0  # network and cameras: seconds to wait for an answer, then for each packet
    live: bool | None = None
    loop: int = 1  # play a file this many times (soak tests)
    decoder_threads: int = 1  # FFmpeg's decoding threads (frame threads add latency and memory)
    newest: int = 1  # live sources: frames held for a slower consumer (the newest ones)


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``image`` [H, W, 3] uint8 RGB; ``time`` in seconds from the source's first frame (None
    for images); ``arrived`` the ``time.perf_counter()`` when it was decoded; ``name`` the image file."""

    index: int
    time: float | None
    image: np.ndarray
    arrived: float
    decode_ms: float = 0.0
    name: str | None = None


@dataclass(frozen=True)
class SourceInfo:
    """What is known of a source before its first frame."""

    name: str  # as the user gave it
    kind: str  # file | camera | url | images
    live: bool
    fps: float | None = None
    size: tuple[int, int] | None = None  # (H, W); None when frames may differ (images)
    frames: int | None = None  # declared frame count (all loops), None when unknown
    codec: str | None = None

    @property
    def label(self) -> str:
        """A short file-system-safe name (default output folder): the file stem, ``camera0``, the URL's host."""
        if self.kind == "url":
            parts = urlsplit(self.name)
            text = f"{parts.hostname or 'stream'}{parts.path}"
        elif self.kind == "camera":
            text = "camera" + re.sub(r"\D", "", self.name)
        else:
            text = Path(self.name.rstrip("/*")).stem or "images"
        return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:80] or "video"


class FrameSource(ABC):
    """Frames of one source, in order. Use as a context manager (closes the decoder) and iterate :meth:`frames`
    once. ``damage`` says why decoding stopped early (None: the source ended normally); ``dropped`` counts
    frames a live source discarded because the consumer was slower; ``skipped`` damaged packets of a live
    source."""

    info: SourceInfo
    damage: str | None = None
    dropped: int = 0
    skipped: int = 0

    @abstractmethod
    def frames(self) -> Iterator[Frame]:
        """The frames, decoded as they are asked for."""

    def close(self) -> None:  # noqa: B027 - nothing to release unless a source holds a decoder
        """Release the decoder (idempotent)."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
