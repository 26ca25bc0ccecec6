"""LiteRT (TFLite) backend for ``.tflite`` artifacts, with the XNNPACK CPU delegate.

Callers always pass and get float32: a model with quantized (int8) inputs/outputs has its inputs quantized and
its outputs dequantized here, with the tensors' own scale and zero point. ``inputs``/``outputs`` describe that
float32 interface; ``stored_inputs``/``stored_outputs`` and ``io_quantization`` describe the file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EvitError, one_line
from ..host import cores, library_version
from ..optional import require
from .base import Backend, TensorSpec, register_backend

_QUANTIZED = ("int8", "uint8", "int16")


def tensor_specs(details: dict[str, dict[str, Any]]) -> list[TensorSpec]:
    """TensorSpecs of LiteRT tensor details keyed by name (stored dtype; unknown dimensions become '?')."""
    specs = []
    for name, d in details.items():
        dims = d.get("shape_signature")
        if dims is None or (len(dims) == 0 and len(d["shape"]) > 0):
            dims = d["shape"]
        specs.append(TensorSpec(name, tuple(int(v) if v >= 0 else "?" for v in dims), np.dtype(d["dtype"]).name))
    return specs


def _quantization(d: dict[str, Any]) -> dict[str, Any] | None:
    dtype = np.dtype(d["dtype"]).name
    params = d.get("quantization_parameters") or {}
    scales = params.get("scales")
    if dtype not in _QUANTIZED or scales is None or len(scales) == 0:
        return None
    if len(scales) > 1:
        raise EvitError(f"per-channel quantized model inputs/outputs are not supported ({d['name']})")
    return {"dtype": dtype, "scale": float(scales[0]), "zero_point": int(params["zero_points"][0])}


def op_details(interpreter: Any) -> list[dict[str, Any]]:
    """The operators of a LiteRT interpreter's graph as it runs (after delegation: a delegated partition is one
    ``DELEGATE`` op), each ``{"index", "op_name", "inputs", "outputs"}`` with tensor indices (-1 = absent input).

    LiteRT lists them only through the private ``Interpreter._get_ops_details``; this is the one place that calls
    it, so a LiteRT without it fails here, in one line."""
    get = getattr(interpreter, "_get_ops_details", None)
    if get is None:
        raise EvitError(f"this LiteRT (ai-edge-litert {library_version('ai-edge-litert') or '?'}) does not list a "
                        "graph's operators (Interpreter._get_ops_details is gone); evit-deploy needs it to inspect "
                        ".tflite files")
    return list(get())


@register_backend(".tflite")
class LiteRtBackend(Backend):
    """A ``.tflite`` model on the LiteRT interpreter.

    ``threads``: CPU threads (0 = every CPU available to this process; more than that is capped).
    ``providers``: XNNPACK is LiteRT's default CPU delegate and is applied unless ``providers`` is given
    without an entry naming XNNPACK (then the built-in kernels run alone). ``xnnpack_partitions`` counts the
    graph partitions the delegate took (0 = not applied).
    """

    name = "litert"
    requires = "ai_edge_litert.interpreter"
    OPTIONS = {"xnnpack": ("on", "off")}

    def __init__(self, path: str | Path, threads: int = 0, providers: Sequence[str] | None = None,
                 shared_cpu: bool = False, options: Mapping[str, str] | None = None) -> None:
        chosen = self.check_options(options)
        interpreter = require(self.requires, f"running {Path(path).name}")
        Interpreter, OpResolverType = interpreter.Interpreter, interpreter.OpResolverType  # noqa: N806
        self.path = Path(path)
        if not self.path.is_file():
            raise EvitError(f"model file not found: {self.path}")
        cpus = cores()
        self.threads = min(threads, cpus) if threads and threads > 0 else cpus
        self.xnnpack_requested = providers is None or any("xnnpack" in p.lower() for p in providers)
        if "xnnpack" in chosen:
            self.xnnpack_requested = chosen["xnnpack"] == "on"
        self.providers = ["XNNPACK", "CPU"] if self.xnnpack_requested else ["CPU"]
        resolver = OpResolverType.AUTO if self.xnnpack_requested else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=self.threads,
                                           experimental_op_resolver_type=resolver)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:  # bad identifier / flatbuffer, unsupported ops
            raise EvitError(f"cannot load {self.path} with LiteRT: not a valid .tflite model ({one_line(exc, 200)})"
                            ) from None
        signatures = self.interpreter.get_signature_list()
        if signatures:
            key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
            self._runner = self.interpreter.get_signature_runner(key)
            inputs, outputs = self._runner.get_input_details(), self._runner.get_output_details()
            # The runner lists outputs in name order; keep the signature's order instead.
            outputs = {name: outputs[name] for name in signatures[key]["outputs"]}
            inputs = {name: inputs[name] for name in signatures[key]["inputs"]}
        else:
            self._runner = None
            inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
            outputs = {d["name"]: d for d in self.interpreter.get_output_details()}
        self._in_details, self._out_details = inputs, outputs
        self.stored_inputs, self.stored_outputs = tensor_specs(inputs), tensor_specs(outputs)
        self.io_quantization = {
            name: q for name, d in (inputs | outputs).items() if (q := _quantization(d)) is not None
        }
        self._inputs = [self._float_spec(s) for s in self.stored_inputs]
        self._outputs = [self._float_spec(s) for s in self.stored_outputs]
        self.xnnpack_partitions = sum(op["op_name"] == "DELEGATE" for op in op_details(self.interpreter))

    def _float_spec(self, spec: TensorSpec) -> TensorSpec:
        return TensorSpec(spec.name, spec.shape, "float32") if spec.name in self.io_quantization else spec

    def _feed(self, name: str, value: np.ndarray) -> np.ndarray:
        stored = np.dtype(self._in_details[name]["dtype"])
        q = self.io_quantization.get(name)
        value = np.asarray(value)
        if q is not None and value.dtype.kind == "f":
            info = np.iinfo(stored)
            value = np.clip(np.round(value / q["scale"]) + q["zero_point"], info.min, info.max)
        return np.ascontiguousarray(value, dtype=stored)

    def _fetch(self, name: str, value: np.ndarray) -> np.ndarray:
        q = self.io_quantization.get(name)
        if q is None:
            return value
        return ((value.astype(np.float32) - q["zero_point"]) * q["scale"]).astype(np.float32)

    @property
    def facts(self) -> dict[str, Any]:
        return {"providers": self.providers, "threads": self.threads, "xnnpack_partitions": self.xnnpack_partitions,
                "api": "Interpreter"}

    def bare_call(self, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        checked = self.check_feeds(feeds)
        typed = {name: self._feed(name, checked[name]) for name in self._in_details}
        if self._runner is not None:  # a signature runner holds the interpreter: only it may invoke
            return lambda: self._runner(**typed)
        for name, d in self._in_details.items():  # set once; the interpreter keeps its input buffers
            self.interpreter.set_tensor(d["index"], typed[name])
        return self.interpreter.invoke

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        typed = {name: self._feed(name, feeds[name]) for name in self._in_details}
        if self._runner is not None:
            raw = self._runner(**typed)
        else:
            for name, value in typed.items():
                self.interpreter.set_tensor(self._in_details[name]["index"], value)
            self.interpreter.invoke()
            raw = {name: self.interpreter.get_tensor(d["index"]) for name, d in self._out_details.items()}
        return {name: self._fetch(name, raw[name]) for name in self._out_details}
