"""The runtime backend interface and its registry (one backend per artifact format)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..artifacts import TensorSpec
from ..errors import EvitError


class Backend(ABC):
    """A loaded artifact: call it with arrays, get arrays back.

    Constructors take ``(path, threads=0, providers=None, shared_cpu=False, options=None)`` (``options``: see
    :attr:`OPTIONS`); ``shared_cpu`` says other work shares the cores (a benchmark interleaving backends), so worker
    threads must not busy-wait between runs.

    ``backend(x)`` for a single-input model returns one array when the model has one output, else a dict by
    output name; several inputs are passed positionally (in ``inputs`` order) or by name.
    """

    name: str = ""
    runs_on_torch: bool = False  # runs in PyTorch, on torch's intra-op threads (callers must not restrict them)
    requires: str = ""  # the module the runtime lives in (checked before a worker process loads it)
    # runtime options a user (or optimize) may set: name → allowed values ("<int>": a positive integer)
    OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {}
    path: Path
    _inputs: list[TensorSpec]  # set by each backend when it loads the artifact
    _outputs: list[TensorSpec]

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    @property
    def facts(self) -> dict[str, Any]:
        """What really runs, as the runtime reports it (validation and benchmark reports record it): e.g. the
        providers ONNX Runtime uses, the precision OpenVINO compiled for."""
        providers = getattr(self, "providers", None)
        return {"providers": list(providers)} if providers else {}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on named inputs, return named outputs. The feeds are checked against :attr:`inputs` once, here
        (names, rank, fixed sizes, numeric types: a one-line EvitError), then the backend's ``_run`` runs them."""
        return self._run(self.check_feeds(feeds))

    @classmethod
    def check_options(cls, options: Mapping[str, str] | None) -> dict[str, str]:
        """``options`` checked against :attr:`OPTIONS` (one line naming the bad key or value)."""
        checked = {}
        for key, value in (options or {}).items():
            allowed = cls.OPTIONS.get(key)
            if allowed is None:
                known = ", ".join(cls.OPTIONS) or "none"
                raise EvitError(f"{cls.name or cls.__name__} has no runtime option '{key}' (its options: {known})")
            value = str(value)
            if allowed == ("<int>",) and not (value.isdigit() and int(value) > 0):
                raise EvitError(f"{cls.name} runtime option {key} takes a positive integer, not '{value}'")
            if allowed != ("<int>",) and value not in allowed:
                raise EvitError(f"{cls.name} runtime option {key} takes {' or '.join(allowed)}, not '{value}'")
            checked[key] = value
        return checked

    def bare_call(self, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        """The runtime's own inference call on ``feeds``, prepared once: what its benchmark tool times (no input
        check, conversion or output copy per call). A benchmark measures its own overhead against it."""
        checked = self.check_feeds(feeds)
        return lambda: self._run(checked)

    @abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run checked feeds (every input present, shapes fit) and return the outputs by name."""

    def check_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [s.name for s in self.inputs]
        missing = [n for n in names if feeds.get(n) is None]
        unknown = sorted(set(feeds) - set(names))
        if missing or unknown:
            raise EvitError(f"{self.path.name} takes inputs {names}; missing {missing}, unknown {unknown}")
        checked = {}
        for spec in self.inputs:
            value = np.asarray(feeds[spec.name])
            fixed = [(i, d) for i, d in enumerate(spec.shape) if isinstance(d, int)]
            if value.ndim != len(spec.shape) or any(value.shape[i] != d for i, d in fixed):
                shown = [d if isinstance(d, int) else "*" for d in spec.shape]
                raise EvitError(f"{self.path.name}: input '{spec.name}' has shape {list(value.shape)}; "
                                f"it takes {shown}")
            if value.dtype.kind not in "fiub":
                raise EvitError(f"{self.path.name}: input '{spec.name}' has dtype {value.dtype}; it takes {spec.dtype}")
            checked[spec.name] = value
        return checked

    def __call__(self, *args: np.ndarray, **kwargs: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        if len(args) > len(self.inputs):
            raise EvitError(f"{self.path.name} takes {len(self.inputs)} inputs, got {len(args)}")
        feeds = {spec.name: a for spec, a in zip(self.inputs, args)} | kwargs
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
