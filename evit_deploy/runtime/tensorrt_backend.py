"""TensorRT backend for ``.engine`` / ``.plan`` artifacts (TensorRT 10.x name-based I/O API).

I/O buffers are PyTorch CUDA tensors; ``run`` copies the inputs host → device (through pinned buffers),
enqueues with ``execute_async_v3`` on a PyTorch CUDA stream, copies the outputs device → host and synchronizes,
so timings include the transfers (as the paper's TensorRT figures do). Dynamic axes are set per call with
``set_input_shape``; ``cuda_graph`` (default: the engine sidecar's, from the profile's ``trt.cuda_graph``)
replays a captured CUDA graph of the enqueue for input shapes seen before.

Before deserializing, the sidecar ``<engine>.json`` written by the builder is compared with this host: an
engine built with another TensorRT version or for another GPU is refused with a one-line EvitError
(:func:`evit_deploy.runtime.trt_common.check_compatibility`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EvitError
from ..host import cuda_problem, gpu_facts
from .base import Backend, TensorSpec, register_backend
from .sidecar import read_sidecar
from .trt_common import check_compatibility, import_tensorrt, make_logger


def _torch_dtype(trt: Any, dtype: Any) -> Any:
    import torch

    table = {"FLOAT": torch.float32, "HALF": torch.float16, "INT32": torch.int32, "INT64": torch.int64,
             "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool, "BF16": torch.bfloat16}
    for name, torch_dtype in table.items():
        if hasattr(trt.DataType, name) and dtype == getattr(trt.DataType, name):
            return torch_dtype
    raise EvitError(f"unsupported TensorRT tensor type {dtype}")


@register_backend(".engine", ".plan")
class TensorRtBackend(Backend):
    """A serialized TensorRT engine on CUDA device ``device``.

    ``threads``/``providers`` are accepted for a uniform ``runtime.load`` and ignored. ``check_device=False``
    skips the sidecar comparison (TensorRT itself still refuses an engine from another TensorRT version).
    """

    name = "tensorrt"
    requires = "tensorrt"

    def __init__(self, path: str | Path, threads: int = 0, providers: Sequence[str] | None = None,
                 cuda_graph: bool | None = None, check_device: bool = True, device: int = 0,
                 shared_cpu: bool = False, options: Mapping[str, str] | None = None) -> None:
        self.check_options(options)
        self.path = Path(path)
        trt = import_tensorrt(f"running {self.path.name}")
        import torch

        if (problem := cuda_problem()) is not None:
            raise EvitError(f"running {self.path.name} needs a CUDA GPU visible to PyTorch ({problem}); the TensorRT "
                            "backend keeps its buffers in torch CUDA tensors")
        if not self.path.is_file():
            raise EvitError(f"engine file not found: {self.path}")
        self.trt, self.torch, self.device = trt, torch, torch.device("cuda", device)
        self.sidecar = read_sidecar(self.path) or {}
        if not self.sidecar:
            warnings.warn(f"{self.path.name} has no {self.path.name}.json sidecar: its TensorRT version and GPU "
                          "cannot be checked before loading", stacklevel=2)
        elif check_device:
            problem = check_compatibility(self.sidecar, gpu_facts(device, trt=trt))
            if problem:
                raise EvitError(f"refusing {self.path}: {problem}")
        self.logger = make_logger(trt)
        self.runtime = trt.Runtime(self.logger)
        if self.sidecar.get("dla_core") is not None:
            self.runtime.DLA_core = int(self.sidecar["dla_core"])
        with torch.cuda.device(self.device):
            self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                reason = self.logger.errors[-1] if self.logger.errors else "not a TensorRT engine"
                raise EvitError(f"cannot load {self.path} with TensorRT {trt.__version__} ({reason[:240]})")
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(self.device)
        self.cuda_graph = bool(self.sidecar.get("cuda_graph", False) if cuda_graph is None else cuda_graph)
        self._names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._input_names = [n for n in self._names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._output_names = [n for n in self._names if n not in self._input_names]
        self._dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in self._names}
        self._inputs = [self._spec(n, "inputs") for n in self._input_names]
        self._outputs = [self._spec(n, "outputs") for n in self._output_names]
        self._buffers: dict[tuple, dict[str, tuple[Any, Any]]] = {}  # shape key → {name: (device, pinned host)}
        self._graphs: dict[tuple, Any] = {}

    def _spec(self, name: str, kind: str) -> TensorSpec:
        recorded = {s["name"]: s for s in self.sidecar.get(kind, []) if isinstance(s, dict)}
        shape = tuple(int(d) if d >= 0 else "?" for d in self.engine.get_tensor_shape(name))
        if name in recorded and len(recorded[name]["shape"]) == len(shape):
            shape = tuple(r if d == "?" else d for d, r in zip(shape, recorded[name]["shape"]))
        return TensorSpec(name, shape, str(self._dtypes[name]).replace("torch.", ""))

    def _bind(self, shapes: dict[str, tuple[int, ...]]) -> tuple[tuple, dict[str, tuple[Any, Any]]]:
        """Set the input shapes and (re)use device + pinned host buffers for them; returns (key, buffers)."""
        torch = self.torch
        key = tuple(shapes[n] for n in self._input_names)
        for name in self._input_names:
            if not self.context.set_input_shape(name, shapes[name]):
                raise EvitError(f"{self.path.name}: input {name} of shape {list(shapes[name])} is outside the engine's "
                                f"optimisation profile ({self.sidecar.get('shapes', {}).get(name, 'see the sidecar')})")
        if key not in self._buffers:
            buffers = {}
            for name in self._names:
                shape = shapes[name] if name in shapes else tuple(self.context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise EvitError(f"{self.path.name}: cannot infer the shape of output {name} ({list(shape)})")
                dtype = self._dtypes[name]
                buffers[name] = (torch.empty(shape, dtype=dtype, device=self.device),
                                 torch.empty(shape, dtype=dtype, pin_memory=True))
            self._buffers[key] = buffers
        buffers = self._buffers[key]
        for name, (dev, _) in buffers.items():
            self.context.set_tensor_address(name, int(dev.data_ptr()))
        return key, buffers

    def _enqueue(self, key: tuple) -> None:
        torch = self.torch
        if not self.cuda_graph:
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise EvitError(f"TensorRT could not run {self.path.name} ({'; '.join(self.logger.errors[-1:])})")
            return
        graph = self._graphs.get(key)
        if graph is None:  # first call with these shapes: run eagerly (flushes shape updates), then capture
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise EvitError(f"TensorRT could not run {self.path.name} ({'; '.join(self.logger.errors[-1:])})")
            self.stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                self.context.execute_async_v3(self.stream.cuda_stream)
            self._graphs[key] = graph
            return  # this call's outputs come from the eager run
        graph.replay()

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        arrays = {n: np.ascontiguousarray(feeds[n], dtype=str(self._dtypes[n]).replace("torch.", ""))
                  for n in self._input_names}
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            key, buffers = self._bind({n: tuple(a.shape) for n, a in arrays.items()})
            for name in self._input_names:
                dev, host = buffers[name]
                host.numpy()[...] = arrays[name]
                dev.copy_(host, non_blocking=True)
            self._enqueue(key)
            for name in self._output_names:
                dev, host = buffers[name]
                host.copy_(dev, non_blocking=True)
            self.stream.synchronize()
            return {name: buffers[name][1].numpy().copy() for name in self._output_names}
