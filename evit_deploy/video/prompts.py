"""SAM prompts for a video: one prompt for every frame, or a JSONL file of prompts keyed by frame index.

Each line of the file is one JSON object: ``{"frame": 12, "points": [[x, y], ...], "point_labels": [1, 0],
"box": [x0, y0, x1, y1]}`` (``points``/``point_labels``/``box`` as ``predict`` takes them, in the frame's pixels;
a line needs points or a box). A frame uses the line with the largest ``frame`` at or below its index, so a
prompt holds until the next one; frames before the first line use the prompt given once (``--points``/
``--box``), and without one the file must start at frame 0. Lines are checked before any frame is decoded.
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import EvitError
from ..limits import LIMITS
from ..predict.prompts import PromptError, parse_prompt

PROMPT_KEYS = ("points", "point_labels", "box")


@dataclass(frozen=True)
class PromptSchedule:
    """Prompts by first frame (``starts`` ascending, ``prompts`` the options from each); ``default`` before the
    first. ``source`` names the file in errors."""

    starts: tuple[int, ...]
    prompts: tuple[dict[str, Any], ...]
    default: dict[str, Any]
    source: str = "prompts"

    @classmethod
    def read(cls, path: str | os.PathLike, default: dict[str, Any] | None = None) -> PromptSchedule:
        """Read and check the structure of a JSONL prompt file (bounded by ``LIMITS.max_prompt_file_bytes``)."""
        path = Path(path)
        try:
            size = path.stat().st_size
            if size > LIMITS.max_prompt_file_bytes:
                raise EvitError(f"{path} is {size / 2**20:.1f} MiB; prompt files are limited to "
                                f"{LIMITS.max_prompt_file_bytes // 2**20} MiB")
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise EvitError(f"prompt file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise EvitError(f"cannot read the prompt file {path}: {exc}") from None
        entries: dict[int, dict[str, Any]] = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                doc = json.loads(line)
            except ValueError as exc:
                raise EvitError(f"{where}: not JSON ({exc})") from None
            if not isinstance(doc, dict):
                raise EvitError(f"{where}: expected a JSON object with 'frame' and points and/or a box")
            frame = doc.get("frame")
            if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
                raise EvitError(f"{where}: 'frame' must be a frame index >= 0, got {frame!r}")
            unknown = sorted(set(doc) - {"frame", *PROMPT_KEYS})
            if unknown:
                raise EvitError(f"{where}: unknown keys {', '.join(unknown)} (a line takes frame, "
                                f"{', '.join(PROMPT_KEYS)})")
            if frame in entries:
                raise EvitError(f"{where}: frame {frame} has a prompt on an earlier line already")
            entries[frame] = {k: doc.get(k) for k in PROMPT_KEYS}
        if not entries:
            raise EvitError(f"{path} holds no prompts")
        starts = tuple(sorted(entries))
        default = {k: v for k, v in (default or {}).items() if v is not None}
        if starts[0] > 0 and not any(default.get(k) is not None for k in ("points", "box")):
            raise EvitError(f"{path} starts at frame {starts[0]}: give --points/--box for the frames before it, "
                            "or a line for frame 0")
        return cls(starts, tuple(entries[s] for s in starts), default, str(path))

    def check(self, size: tuple[int, int] | None, multimask: bool = True) -> None:
        """Check every prompt against the frame size (H, W): one line naming the frame on the first bad one."""
        if size is None:
            return
        for start, prompt in zip(self.starts, self.prompts):
            try:
                parse_prompt(size, prompt["points"], prompt["point_labels"], prompt["box"], multimask)
            except PromptError as exc:
                raise PromptError(f"{self.source}, frame {start}: {exc}") from None

    def for_frame(self, index: int) -> dict[str, Any]:
        """The prompt options of frame ``index``."""
        at = bisect.bisect_right(self.starts, index) - 1
        return dict(self.default) if at < 0 else {**self.default, **self.prompts[at]}


def frame_options(options: dict[str, Any], prompts: PromptSchedule | None) -> Callable[[int], dict[str, Any]]:
    """The prediction options of each frame: ``options`` for all, the SAM prompt from ``prompts`` where given."""
    if prompts is None:
        return lambda index: options
    rest = {k: v for k, v in options.items() if k not in PROMPT_KEYS}
    return lambda index: {**rest, **prompts.for_frame(index)}
