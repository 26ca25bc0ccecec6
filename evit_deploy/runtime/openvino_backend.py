"""OpenVINO backend for IR artifacts (``model.xml`` + its weights ``model.bin``), CPU by default.

OpenVINO's CPU plugin runs bf16 on CPUs with AVX512_BF16/AMX unless told otherwise, whatever the IR holds, so the
inference precision is always pinned: to what the exporter wrote into the IR (``rt_info`` ``evit_deploy``:
``INFERENCE_PRECISION_HINT``, ``PERFORMANCE_HINT``, ``NUM_STREAMS``), f32 for an IR that says nothing. What the
compiled model really runs (precision, hint, streams, threads, and how many of its kernels run in each precision)
is read back from it: :attr:`OpenVinoBackend.facts`.

Shapes: a dynamic batch is compiled once per batch size on first use and kept (static shapes ran B1 r224 bs1 in
0.7-0.9x the time of the dynamic model here); the load compiles batch 1. Dynamic heights and widths run the
dynamic model.
"""

from __future__ import annotations

import threading
import warnings
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EvitError, one_line
from ..optional import require
from .base import Backend, TensorSpec, register_backend

RT_INFO_KEY = "evit_deploy"  # the IR's rt_info section the exporter writes the runtime settings into
SETTINGS = ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS")
CHOICE = "PRECISION_CHOICE"  # "auto" when --precision auto chose the precision: the runtime may choose again
DEVICES = ("CPU", "GPU", "NPU", "AUTO")
MAX_SHAPES = 4  # compiled input shapes kept per backend (each holds its own copy of the weights)
PRECISION_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def ir_settings(model: Any) -> dict[str, str]:
    """The runtime settings an evit-deploy exporter wrote into the IR (empty for a foreign IR)."""
    found = {}
    for key in (*SETTINGS, CHOICE):
        if model.has_rt_info([RT_INFO_KEY, key]):
            found[key] = str(model.get_rt_info([RT_INFO_KEY, key]).astype(str))
    return found


def bf16_supported(core: Any, device: str) -> bool:
    """Whether OpenVINO runs bf16 natively on ``device`` (its own answer: ``OPTIMIZATION_CAPABILITIES``)."""
    try:
        return "BF16" in core.get_property(device, "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:
        return False


def _device(providers: Sequence[str] | None) -> str:
    for p in providers or ():
        if p.split(":")[0].split(".")[0].upper() in DEVICES:
            return p
    return "CPU"


@register_backend(".xml")
class OpenVinoBackend(Backend):
    """An OpenVINO IR on ``device`` (the first OpenVINO device name in ``providers``, default CPU).

    ``threads``: ``INFERENCE_NUM_THREADS`` (0 = OpenVINO's default, every core). ``shared_cpu``: threads are not
    pinned to cores others use (``ENABLE_CPU_PINNING`` off).
    """

    name = "openvino"
    requires = "openvino"
    OPTIONS = {"performance_hint": ("LATENCY", "THROUGHPUT"), "num_streams": ("<int>",)}

    def __init__(self, path: str | Path, threads: int = 0, providers: Sequence[str] | None = None,
                 shared_cpu: bool = False, options: Mapping[str, str] | None = None) -> None:
        chosen = self.check_options(options)
        ov = require(self.requires, f"running {Path(path).name}")
        self.path = Path(path)
        if not self.path.is_file():
            raise EvitError(f"model file not found: {self.path}")
        weights = self.path.with_suffix(".bin")
        if not weights.is_file():
            raise EvitError(f"cannot load {self.path}: its weights file {weights.name} is missing beside it (an "
                            "OpenVINO IR is the .xml and the .bin together)")
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(str(self.path), str(weights))
        except Exception as exc:  # RuntimeError on a corrupt .xml or a .bin that does not fit it
            raise EvitError(f"cannot load {self.path} with OpenVINO: not a valid IR, or {weights.name} is not its "
                            f"weights ({one_line(exc, 200)})") from None
        self.device = _device(providers)
        self.providers = [self.device]
        recorded = ir_settings(self.model)
        self.auto = recorded.pop(CHOICE, "") == "auto"
        self.fallback = ""
        self.config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"} | recorded
        if "performance_hint" in chosen:  # runtime options override what the IR says
            self.config["PERFORMANCE_HINT"] = chosen["performance_hint"]
        if "num_streams" in chosen:
            self.config["NUM_STREAMS"] = chosen["num_streams"]
        if self.config.get("NUM_STREAMS") in ("0", 0):
            del self.config["NUM_STREAMS"]
        self.config_source = "the IR (written at export)" if recorded else "defaults: f32 pinned (a foreign IR)"
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        if shared_cpu and self.device == "CPU":
            self.config["ENABLE_CPU_PINNING"] = False
        wanted = self.config["INFERENCE_PRECISION_HINT"]
        if wanted == "bf16" and self.device == "CPU" and not bf16_supported(self.core, self.device):
            if not self.auto:
                raise EvitError(f"{self.path} is a bf16 artifact, but OpenVINO cannot run bf16 on this CPU (no "
                                "AVX512_BF16/AMX); export it again with --precision fp32, or --precision auto")
            wanted = self.config["INFERENCE_PRECISION_HINT"] = "f32"  # more exact than the bf16 it was validated in
            self.fallback = "bf16 chosen by --precision auto at export; this CPU has no native bf16: runs f32"
            warnings.warn(f"{self.path.name}: {self.fallback}", RuntimeWarning, stacklevel=2)
        self._inputs = [self._spec(p) for p in self.model.inputs]
        self._outputs = [self._spec(p) for p in self.model.outputs]
        self._compiled: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._local = threading.local()
        # Only a dynamic batch is compiled per shape; dynamic sizes (dynamic_hw) run the dynamic model, as
        # every image may have its own size.
        self._per_shape = all(isinstance(d, int) for s in self._inputs for d in s.shape[1:])
        first = tuple(tuple(1 if i == 0 and not isinstance(d, int) else d for i, d in enumerate(s.shape))
                      for s in self._inputs)
        self.compiled = self._compile(first if self._per_shape else None)
        ran = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if self.device == "CPU" and ran != wanted:
            raise EvitError(f"{self.path}: OpenVINO compiled it for {ran}, not the pinned {wanted}; refusing to run "
                            "it at a precision it was not validated in")

    @staticmethod
    def _spec(port: Any) -> TensorSpec:
        shape = tuple(d.get_length() if d.is_static else "?" for d in port.get_partial_shape())
        return TensorSpec(port.get_any_name(), shape, np.dtype(port.get_element_type().to_dtype()).name)

    def _compile(self, shapes: tuple | None) -> Any:
        """The model compiled for these input shapes (None: as stored), cached (at most MAX_SHAPES)."""
        with self._lock:
            if shapes in self._compiled:
                self._compiled.move_to_end(shapes)
                return self._compiled[shapes]
            model = self.model
            if shapes is not None and any(isinstance(d, str) for s in self._inputs for d in s.shape):
                model = self.model.clone()
                model.reshape({p.get_any_name(): list(s) for p, s in zip(model.inputs, shapes)})
            try:
                compiled = self.core.compile_model(model, self.device, self.config)
            except Exception as exc:
                raise EvitError(f"OpenVINO cannot compile {self.path} for {self.device} "
                                f"({one_line(exc, 200)})") from None
            self._compiled[shapes] = compiled
            while len(self._compiled) > MAX_SHAPES:
                self._compiled.popitem(last=False)
            return compiled

    def _request(self, shapes: tuple | None) -> Any:
        """This thread's infer request for ``shapes`` (requests are not shared between threads)."""
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        compiled = self._compile(shapes)
        request = requests.get(shapes)
        if request is None or request[0] is not compiled:
            request = requests[shapes] = (compiled, compiled.create_infer_request())
        return request[1]

    def bare_call(self, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        checked = self.check_feeds(feeds)
        typed = {s.name: np.ascontiguousarray(checked[s.name], dtype=s.dtype) for s in self._inputs}
        request = self._request(tuple(typed[s.name].shape for s in self._inputs) if self._per_shape else None)
        ov = require("openvino", "OpenVINO")
        for i, s in enumerate(self._inputs):  # set once, shared: benchmark_app's requests hold their inputs too
            request.set_input_tensor(i, ov.Tensor(typed[s.name], shared_memory=True))
        self._bare_inputs = typed  # the tensors above share these arrays' memory: keep them alive
        return request.infer

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        typed = {s.name: np.ascontiguousarray(feeds[s.name], dtype=s.dtype) for s in self._inputs}
        request = self._request(tuple(typed[s.name].shape for s in self._inputs) if self._per_shape else None)
        request.infer(typed)
        return {spec.name: request.get_output_tensor(i).data.copy() for i, spec in enumerate(self._outputs)}

    @property
    def facts(self) -> dict[str, Any]:
        """What the compiled model really runs (read back from OpenVINO, not what was asked)."""
        c = self.compiled
        ran = c.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        kernels = Counter()
        for op in c.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if "runtimePrecision" in info and op.get_type_name() not in ("Parameter", "Result", "Constant"):
                kernels[str(info["runtimePrecision"].astype(str)).lower()] += 1
        return {
            "device": self.device, "inference_precision": PRECISION_NAMES.get(ran, ran),
            "performance_hint": str(c.get_property("PERFORMANCE_HINT")),
            "streams": int(c.get_property("NUM_STREAMS")),
            "threads": int(c.get_property("INFERENCE_NUM_THREADS")),
            "settings_from": self.config_source,
            **({"precision_fallback": self.fallback} if self.fallback else {}),
            "kernels_by_precision": dict(sorted(kernels.items())),
            "openvino": require("openvino", "OpenVINO facts").__version__.split("-")[0],
        }

