"""The one place timing statistics are computed: percentiles (numpy's linear interpolation, everywhere) and the 95%
confidence interval of the median, from calls timed in blocks.

Calls of one block share the machine's state at that moment (frequency, cache, a neighbour's load), so they are not
independent samples: the interval is a cluster bootstrap over whole blocks (blocks resampled with replacement, the
median of their calls taken each time). With a single block (e.g. a load test's request latencies) it falls back to
resampling the calls themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 1000


@dataclass(frozen=True)
class Stats:
    """Summary of timed calls, in milliseconds. A figure a tool did not report is None (imported rows)."""

    n: int | None = None  # timed calls
    blocks: int | None = None  # blocks they were timed in
    median: float | None = None
    mean: float | None = None
    p10: float | None = None
    p90: float | None = None
    p99: float | None = None
    min: float | None = None
    max: float | None = None
    std: float | None = None
    ci_low: float | None = None  # 95% confidence interval of the median
    ci_high: float | None = None

    @property
    def headline(self) -> float | None:
        """The figure a row is read by: the median, or the mean where a tool reports no median."""
        return self.median if self.median is not None else self.mean

    @property
    def ci_pct(self) -> float | None:
        """Half-width of the median's confidence interval, in % of the median (the larger side)."""
        if None in (self.median, self.ci_low, self.ci_high) or not self.median:
            return None
        return 100 * max(self.median - self.ci_low, self.ci_high - self.median) / self.median

    @property
    def spread_pct(self) -> float | None:
        """p10..p90 width in % of the median."""
        if None in (self.median, self.p10, self.p90) or not self.median:
            return None
        return 100 * (self.p90 - self.p10) / self.median

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stats:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def summarize(blocks: Sequence[Sequence[float]], confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
              seed: int = 0) -> Stats:
    """Statistics of calls timed in ``blocks`` (lists of milliseconds). Empty input gives an empty Stats."""
    parts = [np.asarray(b, dtype=np.float64) for b in blocks if len(b)]
    if not parts:
        return Stats(n=0, blocks=0)
    calls = np.concatenate(parts)
    p10, p90, p99 = np.percentile(calls, [10, 90, 99])
    low, high = median_interval(parts, confidence, resamples, seed)
    return Stats(n=int(calls.size), blocks=len(parts), median=float(np.median(calls)), mean=float(calls.mean()),
                 p10=float(p10), p90=float(p90), p99=float(p99), min=float(calls.min()), max=float(calls.max()),
                 std=float(calls.std()), ci_low=low, ci_high=high)


def median_interval(parts: list[np.ndarray], confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                    seed: int = 0) -> tuple[float | None, float | None]:
    """Bootstrap interval of the median of all calls: blocks resampled whole (calls when there is one block)."""
    rng = np.random.default_rng(seed)
    if len(parts) == 1:  # independent calls: resample them
        calls = parts[0]
        if calls.size < 2:
            return None, None
        medians = np.median(rng.choice(calls, (resamples, calls.size)), axis=1)
    else:
        medians = np.empty(resamples)
        for i in range(resamples):
            picked = rng.integers(0, len(parts), len(parts))
            medians[i] = np.median(np.concatenate([parts[j] for j in picked]))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(low), float(high)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, None when either is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator
