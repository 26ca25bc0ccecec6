"""A stand-in for Triton's Python backend (``triton_python_backend_utils``), to run our ``model.py`` files.

What it checks: that the pipeline and python-platform models we write load with the configs we write, and that
every BLS request they send matches the target model's ``config.pbtxt`` (input names, dtypes, dims, batch limit,
output names); the graph models then run with ONNX Runtime on the CPU, so answers can be compared with the
Predictor's. What it does not check: anything of Triton itself (scheduling, dynamic batching, the C++ stub's
tensor handling, DLPack, decoupled models, model loading order). ``tests/test_triton_server.py`` runs a real
server for those.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ..triton_config import NP_TYPES, one, read_config


class FakeTriton:
    """``triton_python_backend_utils`` for tests: BLS requests are checked against the target model's config
    (names, dtypes, dims, batch limit) and run with ONNX Runtime."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.calls: list[tuple[str, dict[str, tuple]]] = []
        self.module = self._module()

    def _module(self) -> types.ModuleType:
        fake = self
        mod = types.ModuleType("triton_python_backend_utils")

        class Tensor:
            def __init__(self, name: str, array: np.ndarray) -> None:
                self._name, self._array = name, np.asarray(array)

            def name(self) -> str:
                return self._name

            def as_numpy(self) -> np.ndarray:
                return self._array

            @classmethod
            def from_dlpack(cls, name: str, array: object) -> Tensor:
                return cls(name, np.from_dlpack(array))

        class TritonError:
            def __init__(self, msg: str) -> None:
                self._msg = msg

            def message(self) -> str:
                return self._msg

        class InferenceResponse:
            def __init__(self, output_tensors: list, error: TritonError | None = None) -> None:
                self.output_tensors, self._error = output_tensors, error

            def has_error(self) -> bool:
                return self._error is not None

            def error(self) -> TritonError | None:
                return self._error

        class InferenceRequest:
            def __init__(self, model_name: str, requested_output_names: list[str], inputs: list[Tensor]) -> None:
                self.model_name, self.outputs, self.inputs = model_name, requested_output_names, inputs

            def exec(self) -> InferenceResponse:
                return fake.run(self.model_name, {t.name(): t.as_numpy() for t in self.inputs}, self.outputs,
                                Tensor, InferenceResponse)

        def get_input_tensor_by_name(request: object, name: str) -> Tensor | None:
            value = request.get(name)
            return None if value is None else Tensor(name, value)

        def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
            return next((t for t in response.output_tensors if t.name() == name), None)

        mod.Tensor, mod.TritonError, mod.InferenceResponse, mod.InferenceRequest = (
            Tensor, TritonError, InferenceResponse, InferenceRequest)
        mod.get_input_tensor_by_name = get_input_tensor_by_name
        mod.get_output_tensor_by_name = get_output_tensor_by_name
        return mod

    def run(self, model: str, feeds: dict, outputs: list[str], tensor_cls: type, response_cls: type) -> object:
        config = read_config(self.repo / model)
        max_batch = one(config, "max_batch_size")
        declared = {one(t, "name"): t for t in config["input"]}
        assert set(feeds) == set(declared), (model, set(feeds))
        for name, array in feeds.items():
            spec = declared[name]
            assert array.dtype == NP_TYPES[one(spec, "data_type")], (name, array.dtype)
            shape = list(array.shape)
            if max_batch:
                assert 1 <= shape[0] <= max_batch, (name, shape)
                shape = shape[1:]
            assert len(shape) == len(spec["dims"]) and all(d in (-1, s) for d, s in zip(spec["dims"], shape)), \
                (name, array.shape, spec["dims"])
        assert set(outputs) <= {one(t, "name") for t in config["output"]}
        self.calls.append((model, {k: v.shape for k, v in feeds.items()}))
        session = ort.InferenceSession(str(self.repo / model / "1" / one(config, "default_model_filename")),
                                       providers=["CPUExecutionProvider"])
        values = session.run(outputs, feeds)
        return response_cls([tensor_cls(n, v) for n, v in zip(outputs, values)])


def load_pipeline(repo: Path, name: str, fake: FakeTriton, monkeypatch: pytest.MonkeyPatch) -> object:
    """The model.py of ``repo/name`` (the pipeline, or a python-platform graph) initialised on the stand-in."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake.module)
    spec = importlib.util.spec_from_file_location(f"triton_model_{name.replace('-', '_')}",
                                                  repo / name / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    config = (repo / name / "config.pbtxt").read_text()
    model.initialize({"model_repository": str(repo / name), "model_version": "1", "model_config": config})
    return model


