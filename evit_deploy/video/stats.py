"""Figures of a video run: frames, drops, the model's and the pipeline's frame rates, latency percentiles and
where the time goes per stage. Per-frame times are kept as float32 arrays (4 bytes a frame and stage)."""

from __future__ import annotations

import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STAGES = ("decode", "pre", "infer", "post", "encode")  # in pipeline order


@dataclass
class RunStats:
    """Accumulates finished frames (:meth:`add`) and summarises them (:meth:`summary`)."""

    started: float = field(default_factory=time.perf_counter)
    frames: int = 0
    dropped: int = 0
    skipped: int = 0
    last_done: float | None = None
    stage_ms: dict[str, array] = field(default_factory=lambda: {s: array("f") for s in STAGES})
    latency_ms: array = field(default_factory=lambda: array("f"))

    def add(self, ms: dict[str, float], arrived: float, done: float) -> float:
        """One finished frame: its stage times (ms) and when it was decoded and done (``perf_counter``); returns
        its end-to-end latency in ms."""
        self.frames += 1
        for stage, values in self.stage_ms.items():
            if stage in ms:
                values.append(ms[stage])
        latency = (done - arrived) * 1e3
        self.latency_ms.append(latency)
        self.last_done = done
        return latency

    @property
    def elapsed(self) -> float:
        return max(1e-9, (self.last_done or time.perf_counter()) - self.started)

    @property
    def model_fps(self) -> float | None:
        """Frames per second of model time alone (the sum of the inference stage's times)."""
        total = float(np.sum(self.stage_ms["infer"], dtype=np.float64)) / 1e3
        return self.frames / total if total > 0 else None

    @property
    def pipeline_fps(self) -> float | None:
        """Frames finished per second of wall-clock time, from the start to the last frame done."""
        return self.frames / self.elapsed if self.frames else None

    def latency(self, q: float) -> float | None:
        return float(np.percentile(self.latency_ms, q)) if self.frames else None

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (times in ms, rates in frames/s)."""

        def r(value: float | None, digits: int = 2) -> float | None:
            return None if value is None else round(value, digits)

        stages = {s: {"mean": r(float(np.mean(v))), "p50": r(float(np.percentile(v, 50)))}
                  for s, v in self.stage_ms.items() if len(v)}
        return {"frames": self.frames, "dropped": self.dropped, "skipped_damaged_packets": self.skipped,
                "seconds": r(self.elapsed, 3), "model_fps": r(self.model_fps), "pipeline_fps": r(self.pipeline_fps),
                "latency_ms": {"p50": r(self.latency(50)), "p99": r(self.latency(99))}, "stages_ms": stages}

    def line(self) -> str:
        """The one-line summary: frames, dropped, model fps, pipeline fps, p50/p99 latency."""
        def f(value: float | None, spec: str) -> str:
            return "-" if value is None else format(value, spec)

        return (f"{self.frames} frames, {self.dropped} dropped; model {f(self.model_fps, '.1f')} fps, pipeline "
                f"{f(self.pipeline_fps, '.1f')} fps; latency p50 {f(self.latency(50), '.0f')} ms, "
                f"p99 {f(self.latency(99), '.0f')} ms")
