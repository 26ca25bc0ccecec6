"""Writing the annotated video: H.264 in MP4 (PyAV's libx264) at the source's frame rate and size.

Frames keep their source times (a live source that dropped frames plays at the right speed). The MP4 index is
written when the writer closes (``faststart``: at the front, so players and browsers can start before the end);
a file whose writer never closed is not playable, which is why :mod:`evit_deploy.video.run` writes into a staging
folder and moves it into place only after :meth:`VideoWriter.close`.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..optional import require

DEFAULT_FPS = 30  # when the source does not say (images, some streams)
CODEC = "libx264"
PRESET = "veryfast"  # x264's speed/size trade-off: 12 ms a 512x1024 frame on one core here, a third of "faster"
CRF = 23  # x264's default quality


class VideoWriter:
    """An H.264 MP4 of RGB frames of one size (``size`` (H, W); frames of another size are scaled to it).

    ``threads``: x264's threads (1 leaves the cores to the model). Odd sizes are encoded in 4:4:4 (4:2:0 needs
    even sides), which some players do not play.
    """

    def __init__(self, path: str | Path, fps: float | None, size: tuple[int, int], threads: int = 1,
                 preset: str = PRESET, crf: int = CRF) -> None:
        av = require("av", "writing video")
        self.path = Path(path)
        self.rate = Fraction(fps or DEFAULT_FPS).limit_denominator(1001)
        self.size = size
        self.frames = 0
        self._last_pts = -1
        self._container: Any = av.open(str(self.path), "w", format="mp4", options={"movflags": "+faststart"})
        height, width = size
        stream = self._container.add_stream(CODEC, rate=self.rate, options={"preset": preset, "crf": str(crf)})
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        stream.codec_context.thread_count = threads
        self._stream = stream

    def write(self, image: np.ndarray, time: float | None = None) -> None:
        """Append one [H, W, 3] uint8 RGB frame shown at ``time`` seconds (None: right after the previous one)."""
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        height, width = self.size
        if (frame.height, frame.width) != (height, width):
            frame = frame.reformat(width=width, height=height)
        known = time is not None and math.isfinite(time)
        pts = max(self._last_pts + 1, round(time * self.rate)) if known else self._last_pts + 1
        frame.pts, frame.time_base = pts, 1 / self.rate
        self._last_pts = pts
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and write the index: the file is playable from here on (idempotent)."""
        if self._container is None:
            return
        container, self._container = self._container, None
        try:
            container.mux(self._stream.encode(None))
        finally:
            container.close()

    def abort(self) -> None:
        """Close without caring for the file (it is about to be removed)."""
        if self._container is not None:
            container, self._container = self._container, None
            try:
                container.close()
            except Exception:  # the file is discarded anyway
                pass
