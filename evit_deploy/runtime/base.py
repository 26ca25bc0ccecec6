"""The runtime backend interface and its registry (one backend per artifact format)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..artifacts import TensorSpec


class Backend(ABC):
    """A loaded artifact: call it with arrays, get arrays back.

    Constructors take ``(path, threads=0, providers=None, shared_cpu=False)``; ``shared_cpu`` says other work
    shares the cores (a benchmark interleaving backends), so worker threads must not busy-wait between runs.

    ``backend(x)`` for a single-input model returns one array when the model has one output, else a dict by
    output name; several inputs are passed positionally (in ``inputs`` order) or by name.
    """

    name: str = ""
    path: Path
    _inputs: list[TensorSpec]  # set by each backend when it loads the artifact
    _outputs: list[TensorSpec]

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on named inputs, return named outputs."""

    def __call__(self, *args: np.ndarray, **kwargs: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        feeds = {spec.name: np.asarray(a) for spec, a in zip(self.inputs, args)} | {
            k: np.asarray(v) for k, v in kwargs.items()
        }
        missing = [s.name for s in self.inputs if s.name not in feeds]
        if missing or len(args) > len(self.inputs):
            raise TypeError(f"{self.name} expects inputs {[s.name for s in self.inputs]}, missing {missing}")
        out = self.run(feeds)
        return next(iter(out.values())) if len(out) == 1 else out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path}, inputs={[s.name for s in self.inputs]})"


BACKENDS: dict[str, Callable[..., Backend]] = {}


def register_backend(*suffixes: str) -> Callable[[type[Backend]], type[Backend]]:
    """Register a backend class for artifact files with these suffixes (``.onnx``, ``.tflite``, ...)."""

    def decorator(cls: type[Backend]) -> type[Backend]:
        for suffix in suffixes:
            BACKENDS[suffix] = cls
        return cls

    return decorator
