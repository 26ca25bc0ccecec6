"""ONNX Runtime backend for ``.onnx`` and ORT-format ``.ort`` artifacts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EvitError, one_line
from ..optional import require
from .base import Backend, TensorSpec, register_backend

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
              "tensor(int32)": "int32", "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(bool)": "bool"}


@register_backend(".onnx", ".ort")
class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    requires = "onnxruntime"
    OPTIONS = {"spinning": ("on", "off"), "graph_optimization": ("disable", "basic", "extended", "all")}
    GRAPH_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                    "all": "ORT_ENABLE_ALL"}

    def __init__(self, path: str | Path, threads: int = 0, providers: Sequence[str] | None = None,
                 shared_cpu: bool = False, options: Mapping[str, str] | None = None) -> None:
        chosen = self.check_options(options)
        ort = require(self.requires, f"running {Path(path).name}")
        self.path = Path(path)
        if not self.path.is_file():
            raise EvitError(f"model file not found: {self.path}")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        # idle worker threads would otherwise spin and slow whatever else runs on these cores
        if chosen.get("spinning", "off" if shared_cpu else "on") == "off":
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if "graph_optimization" in chosen:
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                       self.GRAPH_LEVELS[chosen["graph_optimization"]])
        available = ort.get_available_providers()
        wanted = [p for p in (providers or ["CPUExecutionProvider"]) if p in available]
        self.providers = wanted or ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=self.providers)
        except Exception as exc:  # InvalidProtobuf, Fail, ... on a corrupt or foreign file
            raise EvitError(f"cannot load {self.path} with onnxruntime: not a valid model ({one_line(exc, 200)})"
                            ) from None
        self._inputs = [self._spec(i) for i in self.session.get_inputs()]
        self._outputs = [self._spec(o) for o in self.session.get_outputs()]

    @staticmethod
    def _spec(node) -> TensorSpec:  # noqa: ANN001 - onnxruntime NodeArg
        shape = tuple(d if isinstance(d, int) else str(d) for d in node.shape)
        return TensorSpec(node.name, shape, _ORT_TYPES.get(node.type, node.type))

    @property
    def facts(self) -> dict[str, Any]:
        """The session's settings as ONNX Runtime holds them (what a benchmark row records)."""
        options = self.session.get_session_options()
        try:
            spinning = options.get_session_config_entry("session.intra_op.allow_spinning")
        except RuntimeError:  # not set: ONNX Runtime's default (spinning on)
            spinning = ""
        return {"providers": list(self.session.get_providers()), "threads": options.intra_op_num_threads or "default",
                "inter_op_threads": options.inter_op_num_threads or "default",
                "spinning": "off" if spinning == "0" else "on (ONNX Runtime's default)",
                "graph_optimization": str(options.graph_optimization_level).split(".")[-1],
                "execution_mode": str(options.execution_mode).split(".")[-1]}

    def bare_call(self, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        typed = {s.name: np.ascontiguousarray(v, dtype=s.dtype) for s, v in zip(self._inputs,
                                                                                 self.check_feeds(feeds).values())}
        return lambda: self.session.run(None, typed)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        typed = {s.name: np.ascontiguousarray(feeds[s.name], dtype=s.dtype) for s in self._inputs}
        values = self.session.run(None, typed)
        return {spec.name: value for spec, value in zip(self._outputs, values)}
