"""Numeric comparisons shared by validation, evaluation and benchmarks (numpy only)."""

from __future__ import annotations

import numpy as np


def row_cosines(ref: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Cosine similarity of each batch row (first axis) of ``out`` with the same row of ``ref``, in float64."""
    a = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
    b = np.asarray(out, dtype=np.float64).reshape(len(out), -1)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
