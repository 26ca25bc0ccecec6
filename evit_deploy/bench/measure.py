"""Timing: interleaved rounds over several backends, robust statistics, memory."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

Call = Callable[[], object]


def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux /proc; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def summarize(times_ms: list[float], batch: int) -> dict[str, float]:
    arr = np.asarray(times_ms)
    median = float(np.median(arr))
    return {
        "median": median, "mean": float(arr.mean()), "p90": float(np.percentile(arr, 90)),
        "p99": float(np.percentile(arr, 99)), "min": float(arr.min()), "max": float(arr.max()),
        "std": float(statistics.pstdev(times_ms)) if len(times_ms) > 1 else 0.0,
        "throughput_img_s": batch * 1000.0 / median if median > 0 else float("inf"),
    }


@dataclass
class Contender:
    """One backend at one batch size: ``call`` runs one inference on a prepared input."""

    key: str
    call: Call
    times_ms: list[float] = field(default_factory=list)
    rss_growth_mb: float = 0.0


SETTLE_S = 0.01  # idle gap before each timed call, so one backend's worker threads have gone idle. Backends
# are also loaded with shared_cpu=True: ONNX Runtime's threads otherwise spin for long after a run and halved
# PyTorch's speed in interleaved rounds here (B1: 64 ms instead of 27 ms).


def interleaved(contenders: list[Contender], runs: int, warmup: int,
                on_round: Callable[[], None] | None = None, settle_s: float = SETTLE_S) -> None:
    """Warm every contender up, then time one call of each per round, ``runs`` rounds (noise hits all alike)."""
    for c in contenders:
        before = rss_mb()
        for _ in range(warmup):
            c.call()
        c.rss_growth_mb = max(0.0, rss_mb() - before)
    for _ in range(runs):
        for c in contenders:
            time.sleep(settle_s)
            start = time.perf_counter()
            c.call()
            c.times_ms.append((time.perf_counter() - start) * 1e3)
        if on_round:
            on_round()
