"""Frame sources: a video file, a camera, a network stream, or images, as one iterator of upright RGB frames.

:func:`open_source` decides what a source is (a registry of kinds, tried in order) and opens it; every error a
user can fix is a one-line :class:`VideoError` raised before the first frame: not found, not a video, no frames,
an unsupported codec (named), frames past ``max_pixels``, a URL that does not answer within ``timeout``, a camera
that does not exist.

Video is decoded with PyAV (FFmpeg's libraries in the wheel; the ``[video]`` extra). OpenCV's ``VideoCapture``
wraps the same FFmpeg and decoded the benchmark clip at the same rate (``latency/reports/video-cpu.md``), but it
reports neither why a stream ended (damage and the end look the same) nor the codec it cannot decode, and it has
no network timeouts; PyAV does all three.

Damage: a file whose decoding fails part-way keeps the frames before the failure and says where it stopped in
:attr:`FrameSource.damage` (also when it ends before the frame count its header declares). Damage the decoder
conceals (a frame repaired from its neighbours) is not reported. Live sources (cameras, RTSP) skip damaged packets
and count them instead; a live source that sends nothing for ``timeout`` seconds ends with that as its damage.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ..errors import one_line
from ..images import IMAGE_SUFFIXES, load_rgb
from ..optional import require
from ..predict.inputs import LIST_SUFFIXES, collect_images
from .frames import Frame, FrameSource, SourceInfo, SourceSettings, VideoError
from .live import LiveSource

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".ts", ".mts", ".m2ts", ".mpg",
                            ".mpeg", ".flv", ".wmv", ".3gp", ".ogv", ".y4m", ".h264", ".hevc"})
URL_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "http", "https"})
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp"})  # always live; http(s) is live when it has no known length
MAX_LIVE_ERRORS = 50  # damaged packets in a row after which a live source is given up
PURPOSE = "video input"


# -- PyAV ------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _ffmpeg_warnings() -> Iterator[list[tuple[int, str, str]]]:
    """FFmpeg's warnings logged by this thread inside the block (they name codecs FFmpeg cannot decode)."""
    from av import logging as avlog

    previous = avlog.get_level()
    avlog.set_level(avlog.WARNING)
    try:
        with avlog.Capture(local=True) as logs:
            yield logs
    finally:
        avlog.set_level(previous)


def _unknown_codec(logs: Sequence[tuple[int, str, str]]) -> str | None:
    """The codec FFmpeg could not identify, as its log line names it (``none (XVID / 0x44495658)`` → ``XVID``)."""
    for _, _, message in logs:
        found = re.search(r"Video: (\w+)(?: \(([^/)]+?)\s*/)?", message)
        if found:
            return (found.group(2) or found.group(1)).strip()
    return None


def _open_error(exc: Exception, what: str, kind: str, elapsed: float, timeout: float) -> VideoError:
    """A one-line error for a source PyAV could not open."""
    import av

    if isinstance(exc, av.error.ExitError) or (kind in ("url", "camera") and elapsed >= 0.95 * timeout):
        return VideoError(f"{what} did not answer within {timeout:g} s (--timeout)")
    if isinstance(exc, FileNotFoundError):
        if kind == "camera":
            found = sorted(glob.glob("/dev/video*")) or ["none"]
            return VideoError(f"no camera at {what} (cameras here: {', '.join(found)})")
        return VideoError(f"{kind} not found: {what}")
    if isinstance(exc, ConnectionRefusedError):
        return VideoError(f"{what} refused the connection")
    if isinstance(exc, PermissionError):
        return VideoError(f"cannot read {what}: permission denied")
    if isinstance(exc, av.error.EOFError):
        return VideoError(f"{what} holds no video frames (it ends before the first one)")
    if isinstance(exc, av.error.InvalidDataError) and kind == "file":
        return VideoError(f"{what} is not a video FFmpeg can read (no known container, or the file is damaged "
                          "or cut short before its index)")
    return VideoError(f"cannot open {what}: {one_line(exc, 160)}")


def _seconds(frame: Any) -> float | None:
    """A PyAV frame's timestamp in seconds, None when it has none."""
    seconds = frame.time
    return float(seconds) if seconds is not None and math.isfinite(seconds) else None


class AvSource(FrameSource):
    """A video file, camera or network stream decoded by PyAV (the first video stream)."""

    def __init__(self, target: str, name: str, kind: str, settings: SourceSettings, fmt: str | None = None,
                 options: dict[str, str] | None = None) -> None:
        self._target, self._fmt, self._options, self._settings = target, fmt, dict(options or {}), settings
        self._container: Any = None
        self._kind = kind
        container, stream = self._open(name)
        self._container = container
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else None
        declared = int(stream.frames) or None
        # the video's declared length: its own duration, or the container's when it holds nothing else
        if stream.duration is not None and stream.time_base:
            self._declared_seconds: float | None = float(stream.duration * stream.time_base)
        else:
            alone = container.duration and len(container.streams) == 1
            self._declared_seconds = container.duration / 1e6 if alone else None
        width, height = stream.codec_context.width, stream.codec_context.height
        if width and height:
            self._check_size(name, width, height)
        scheme = urlsplit(target).scheme.lower() if kind == "url" else ""
        length_known = declared is not None or container.duration is not None
        live = settings.live if settings.live is not None else (
            kind == "camera" or scheme in LIVE_SCHEMES or (kind == "url" and not length_known))
        loops = settings.loop if kind == "file" else 1
        self.info = SourceInfo(name, kind, live, fps, (height, width) if width and height else None,
                               declared * loops if declared else None, stream.codec_context.name)
        # the first frame is decoded now: a source without frames fails here, before any output exists, and the
        # size is the upright frame's (a rotated phone video swaps height and width)
        self._frames = self._passes()
        try:
            self._first: Frame = next(self._frames)
        except StopIteration:  # _passes raises for a source without frames; this is a safety net
            self.close()
            raise VideoError(f"{name} holds no video frames") from None
        except BaseException:
            self.close()
            raise
        self.info = replace(self.info, size=tuple(self._first.image.shape[:2]))

    def _open(self, name: str) -> tuple[Any, Any]:
        av = require("av", PURPOSE)
        timeout = self._settings.timeout
        started = time.monotonic()
        with _ffmpeg_warnings() as logs:
            try:
                container = av.open(self._target, format=self._fmt, options=self._options,
                                    timeout=(timeout, timeout) if self._kind in ("url", "camera") else None)
            except (av.error.FFmpegError, OSError) as exc:
                raise _open_error(exc, name, self._kind, time.monotonic() - started, timeout) from None
        try:
            if not container.streams.video:
                raise VideoError(f"{name} holds no video frames (no video stream)")
            stream = container.streams.video[0]
            if stream.codec_context is None:
                codec = _unknown_codec(logs) or "unknown"
                raise VideoError(f"{name}: its video codec ({codec}) is not supported: the FFmpeg in PyAV "
                                 f"{av.__version__} has no decoder for it")
        except BaseException:
            container.close()
            raise
        stream.thread_type = "AUTO" if self._settings.decoder_threads != 1 else "SLICE"
        stream.codec_context.thread_count = self._settings.decoder_threads
        return container, stream

    def _check_size(self, name: str, width: int, height: int) -> None:
        limit = self._settings.max_pixels
        if width * height > limit:
            raise VideoError(f"{name}: frames are {width}x{height} = {width * height} pixels, over the limit of "
                             f"{limit} (--max-pixels)")

    def frames(self) -> Iterator[Frame]:
        yield self._first
        yield from self._frames

    def _passes(self) -> Iterator[Frame]:
        """Every frame of every pass (``loop``), then the damage check."""
        index, offset = 0, 0.0
        for loop in range(self._settings.loop if self._kind == "file" else 1):
            if loop:
                self._container.close()
                self._container, _ = self._open(self.info.name)
            last = None
            for frame in self._decode(index, offset):
                last = frame
                index += 1
                yield frame
            if self.damage is not None or last is None:
                break
            step = 1.0 / self.info.fps if self.info.fps else 0.0
            offset = (last.time or 0.0) + step
        if index == 0:
            if self.damage:
                raise VideoError(f"{self.info.name} is damaged: {self.damage}")
            raise VideoError(f"{self.info.name} holds no video frames")
        if self.damage is None and self._kind == "file":
            self.damage = self._cut_short(index, last)

    def _cut_short(self, count: int, last: Frame | None) -> str | None:
        """Why a file that decoded without error still looks cut short (fewer frames or seconds than its header
        declares), or None."""
        declared, fps = self.info.frames, self.info.fps
        if declared:
            return None if count >= declared else (
                f"it ends after {count} of the {declared} frames its header declares (cut short?)")
        declared_s = self._declared_seconds
        if declared_s and fps and last is not None and last.time is not None and self._settings.loop == 1:
            shown = last.time + 1.0 / fps
            if shown < declared_s - max(2.0 / fps, 0.1):
                return f"it ends at {shown:.2f} s of the {declared_s:.2f} s its header declares (cut short?)"
        return None

    def _decode(self, first: int, offset: float) -> Iterator[Frame]:
        """Decode one pass over the stream; frame times start at ``offset``. On damage the frames the decoder
        still holds (B-frames wait for later packets) are flushed out before stopping."""
        import av

        container = self._container
        stream = container.streams.video[0]
        index, start, errors = first, None, 0
        packets = container.demux(stream)
        while True:
            tic = time.perf_counter()
            try:
                packet = next(packets)
                decoded = packet.decode()
            except (StopIteration, av.error.EOFError):
                return
            except (av.error.FFmpegError, OSError) as exc:
                if self.info.live and errors < MAX_LIVE_ERRORS and not isinstance(exc, av.error.ExitError):
                    errors += 1
                    self.skipped += 1
                    continue
                reason = (f"no data for {self._settings.timeout:g} s (--timeout)" if isinstance(exc, av.error.ExitError)
                          else one_line(getattr(exc, "strerror", None) or exc, 120))
                try:
                    decoded = stream.codec_context.decode(None)
                except (av.error.FFmpegError, OSError):
                    decoded = []
                for frame in decoded:
                    if start is None:
                        start = _seconds(frame) or 0.0
                    yield self._frame(frame, index, first, offset, start, tic)
                    index += 1
                where = f"after frame {index - 1}" if index > first else "before the first frame"
                self.damage = f"decoding stopped {where}: {reason}"
                return
            errors = 0
            for frame in decoded:
                if start is None:
                    start = _seconds(frame) or 0.0
                yield self._frame(frame, index, first, offset, start, tic)
                index += 1
                tic = time.perf_counter()

    def _frame(self, frame: Any, index: int, first: int, offset: float, start: float, tic: float) -> Frame:
        """A decoded PyAV frame as a :class:`Frame` (RGB, size checked, time from its timestamp, relative to the
        pass's first frame at ``start``)."""
        image = frame.to_ndarray(format="rgb24")
        self._check_size(self.info.name, image.shape[1], image.shape[0])
        quarter = round((getattr(frame, "rotation", 0) or 0) / 90) % 4  # display matrix: counter-clockwise turns
        if quarter:
            image = np.ascontiguousarray(np.rot90(image, quarter))
        seconds = _seconds(frame)
        if seconds is None:  # no timestamp (e.g. frames flushed out after damage): from the frame rate
            seconds = start + (index - first) / (self.info.fps or 1.0)
        now = time.perf_counter()
        return Frame(index, offset + seconds - start, image, now, (now - tic) * 1e3)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


# -- images ----------------------------------------------------------------------------------------------------
class ImageSource(FrameSource):
    """Image files (paths, folders, globs, list files as ``predict`` takes them), one frame each."""

    def __init__(self, inputs: Sequence[str], settings: SourceSettings) -> None:
        self._paths = collect_images(inputs)
        self._settings = settings
        name = inputs[0] if len(inputs) == 1 else f"{len(self._paths)} images"
        self.info = SourceInfo(name, "images", False, frames=len(self._paths))

    def frames(self) -> Iterator[Frame]:
        for index, path in enumerate(self._paths):
            tic = time.perf_counter()
            image = np.asarray(load_rgb(path, self._settings.max_pixels))
            now = time.perf_counter()
            yield Frame(index, None, image, now, (now - tic) * 1e3, path)


# -- what a source is ------------------------------------------------------------------------------------------
def camera_device(index: int) -> tuple[str, str]:
    """(FFmpeg input format, device) of camera ``index`` on this platform."""
    formats = {"linux": ("v4l2", f"/dev/video{index}"), "darwin": ("avfoundation", str(index))}
    platform = "linux" if sys.platform.startswith("linux") else sys.platform
    if platform not in formats:
        raise VideoError(f"camera numbers are not supported on {sys.platform}; give the device as FFmpeg names "
                         "it (e.g. 'video=Integrated Camera' with --source on Windows is not supported yet)")
    return formats[platform]


def _is_camera_index(text: str) -> bool:
    return text.isdigit() and len(text) <= 3


def _scheme(text: str) -> str:
    return urlsplit(text).scheme.lower() if "://" in text else ""


def is_video_source(text: str) -> bool:
    """Whether ``text`` names a video source (not images): a camera number or device, a stream URL, or a file
    with a video suffix."""
    return (_is_camera_index(text) or text.startswith("/dev/video") or _scheme(text) in URL_SCHEMES
            or Path(text).suffix.lower() in VIDEO_SUFFIXES)


def names_images(text: str) -> bool:
    """Whether ``text`` names images as ``predict`` reads them: an image file, a folder, a list file or a glob."""
    path = Path(text)
    return (path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES | set(LIST_SUFFIXES)
            or (not path.exists() and bool(set("*?[") & set(text))))


def source_label(text: str) -> str:
    """A short file-system-safe name for a source (its default output folder), before it is opened."""
    kind = ("camera" if _is_camera_index(text) or text.startswith("/dev/video") else
            "url" if _scheme(text) else "file")
    return SourceInfo(text, kind, False).label


def _open_camera(text: str, settings: SourceSettings) -> FrameSource:
    fmt, device = camera_device(int(text)) if _is_camera_index(text) else ("v4l2", text)
    return AvSource(device, device, "camera", settings, fmt=fmt)


def _open_url(text: str, settings: SourceSettings) -> FrameSource:
    scheme = _scheme(text)
    if scheme not in URL_SCHEMES:
        raise VideoError(f"{text}: unsupported URL scheme '{scheme}' (video sources: "
                         f"{', '.join(sorted(URL_SCHEMES))})")
    options = {"rtsp_transport": "tcp"} if scheme.startswith("rtsp") else {}
    return AvSource(text, text, "url", settings, options=options)


def _open_file(text: str, settings: SourceSettings) -> FrameSource:
    return AvSource(text, text, "file", settings)


def _is_video_file(text: str) -> bool:
    path = Path(text)
    return path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES | set(LIST_SUFFIXES)


def _is_missing_video(text: str) -> bool:
    return Path(text).suffix.lower() in VIDEO_SUFFIXES and not Path(text).exists()


def _missing(text: str, settings: SourceSettings) -> FrameSource:
    raise VideoError(f"video not found: {text}")


Opener = Callable[[str, SourceSettings], FrameSource]
# tried in order: the first kind whose test accepts the text opens it; anything else is read as images
SOURCE_KINDS: list[tuple[str, Callable[[str], bool], Opener]] = [
    ("camera", lambda t: _is_camera_index(t) or t.startswith("/dev/video"), _open_camera),
    ("url", lambda t: bool(_scheme(t)), _open_url),
    ("file", _is_video_file, _open_file),
    ("missing video", _is_missing_video, _missing),
]


def open_source(source: str | int | os.PathLike | Sequence[str | os.PathLike],
                settings: SourceSettings | None = None) -> FrameSource:
    """Open a source: a camera number (``0``) or device (``/dev/video0``), an ``rtsp://``/``rtmp://``/
    ``http(s)://`` URL, a video file, or images (files, folders, glob patterns, list files; a list of them).
    A live source comes wrapped in :class:`~evit_deploy.video.live.LiveSource` (newest frames kept)."""
    settings = settings or SourceSettings()
    if settings.loop < 1:
        raise VideoError(f"loop must be >= 1, got {settings.loop}")
    if isinstance(source, (list, tuple)):
        texts = [str(s) for s in source]
        if len(texts) != 1:
            return ImageSource(texts, settings)
        source = texts[0]
    text = str(source)
    for _, accepts, opener in SOURCE_KINDS:
        if accepts(text):
            opened = opener(text, settings)
            return LiveSource(opened, settings, paced=opened.info.kind == "file") if opened.info.live else opened
    return ImageSource([text], settings)
