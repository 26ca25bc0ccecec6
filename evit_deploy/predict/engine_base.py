"""What every engine is (no runtime import): :class:`Engine`, and :func:`run_images`, image inputs through one graph
of an engine in as few calls as its batch allows. The task specs' handlers and protocols run graphs through these;
:mod:`.engines` has the engines themselves."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Engine(ABC):
    """Runs the graphs of one model."""

    max_batch: int = 1  # largest image batch one call accepts
    static_batch: int | None = None  # the graph's fixed batch when its batch axis is not dynamic
    native_boxes: bool = False  # the decoder takes ``boxes`` [P,4] (stock prompt encoder), not corner points
    runs_on_torch: bool = False  # the graphs run in PyTorch (torch's intra-op threads are the model's)

    @abstractmethod
    def run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph of ``role`` on named inputs; returns named outputs."""


def run_images(engine: Engine, role: str, input_name: str, output_name: str, xs: list[np.ndarray]) -> np.ndarray:
    """Run ``[1,...]`` inputs through ``role`` in as few calls as the engine's batch allows.

    A static batch > 1 is filled up with copies of the chunk's first input (their outputs are dropped).
    """
    step = engine.static_batch or engine.max_batch
    outs = []
    for start in range(0, len(xs), step):
        chunk = xs[start : start + step]
        n = len(chunk)
        if engine.static_batch:
            chunk = chunk + [chunk[0]] * (engine.static_batch - n)
        outs.append(engine.run(role, {input_name: np.concatenate(chunk)})[output_name][:n])
    return np.concatenate(outs)
