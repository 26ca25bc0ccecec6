"""Numeric comparisons shared by validation, evaluation and benchmarks (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np


def row_cosines(ref: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Cosine similarity of each batch row (first axis) of ``out`` with the same row of ``ref``, in float64."""
    a = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
    b = np.asarray(out, dtype=np.float64).reshape(len(out), -1)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


def non_finite_count(outputs: Any) -> int:
    """How many NaN/Inf values ``outputs`` hold (an array, or tuples, lists and dicts of arrays; other values
    are not counted)."""
    if isinstance(outputs, dict):
        return sum(non_finite_count(v) for v in outputs.values())
    if isinstance(outputs, (tuple, list)):
        return sum(non_finite_count(v) for v in outputs)
    array = np.asarray(outputs) if isinstance(outputs, np.ndarray) or np.isscalar(outputs) else None
    if array is None or array.dtype.kind not in "fc":
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))
