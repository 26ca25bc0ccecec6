"""Checking what a prediction takes besides the image: SAM prompts, and the option errors task options share.

A prompt is checked against the image it belongs to (points inside it, a well-formed box, labels 1/0, finite
numbers) before any model runs, so a bad prompt is a one-line :class:`PromptError`, never a shape error from
the decoder graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import EvitError

MAX_POINTS = 64


class OptionError(EvitError):
    """A prediction option the model's task does not take, or a bad option value."""


class PromptError(OptionError):
    """A SAM prompt of the wrong shape, with non-finite values, or outside the image."""


@dataclass(frozen=True)
class SamPrompt:
    """Checked prompt in original-image pixels: points [N,2], labels [N] (1 fg / 0 bg), box [4] XYXY or None."""

    points: np.ndarray
    labels: np.ndarray
    box: np.ndarray | None
    multimask: bool

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"points": self.points.tolist(), "point_labels": self.labels.tolist()}
        out["box"] = self.box.tolist() if self.box is not None else None
        return out


def _as_array(value: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise PromptError(f"{name} must be numbers, got {type(value).__name__}") from None
    if not np.isfinite(arr).all():
        raise PromptError(f"{name} must be finite numbers")
    return arr


def parse_prompt(size: tuple[int, int], points: Any = None, point_labels: Any = None, box: Any = None,
                 multimask: Any = True) -> SamPrompt:
    """Check a SAM prompt against the image size (H, W); raises :class:`PromptError` with a one-line reason."""
    h, w = size
    pts = _as_array(points if points is not None else np.zeros((0, 2)), "points")
    if pts.ndim == 1 and pts.size == 2:
        pts = pts[None]
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise PromptError(f"points must have shape [N, 2] as (x, y) pairs, got shape {list(pts.shape)}")
    if len(pts) > MAX_POINTS:
        raise PromptError(f"at most {MAX_POINTS} points per prompt, got {len(pts)}")
    if point_labels is None:
        labels = np.ones(len(pts), dtype=np.int64)
    else:
        raw = _as_array(point_labels, "point_labels").reshape(-1) if np.ndim(point_labels) else None
        if raw is None or raw.shape != (len(pts),):
            raise PromptError(f"point_labels must have one label per point ({len(pts)}), got {point_labels!r}"[:200])
        if not np.isin(raw, (0, 1)).all():
            raise PromptError("point_labels must be 1 (foreground) or 0 (background)")
        labels = raw.astype(np.int64)
    bx = None
    if box is not None:
        bx = _as_array(box, "box").reshape(-1)
        if bx.shape != (4,):
            raise PromptError(f"box must be [x0, y0, x1, y1], got {np.size(box)} numbers")
        if bx[0] > bx[2] or bx[1] > bx[3]:
            raise PromptError(f"box must have x0 <= x1 and y0 <= y1, got {bx.tolist()}")
    if not len(pts) and bx is None:
        raise PromptError("SAM needs a prompt: give points and/or a box")
    xy = np.concatenate([pts, bx.reshape(2, 2)]) if bx is not None else pts
    if ((xy < 0) | (xy[:, 0] > w)[:, None] | (xy[:, 1] > h)[:, None]).any():
        raise PromptError(f"prompt coordinates must lie inside the {w}x{h} image (x in [0, {w}], y in [0, {h}])")
    if not isinstance(multimask, (bool, np.bool_)):
        raise PromptError(f"multimask must be true or false, got {multimask!r}")
    return SamPrompt(pts, labels, bx, bool(multimask))
