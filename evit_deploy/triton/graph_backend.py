"""The python-platform graph model written by ``evit-deploy triton --platform python``: one artifact of an export
run with this package's runtime (ONNX Runtime, OpenVINO, LiteRT) inside Triton's Python backend.

Imported by the model's ``1/model.py``. ``initialize`` checks the artifact's sha256 against the settings the
writer recorded (``graph.json``) and opens it; ``execute`` gets every request Triton's dynamic batcher grouped,
runs them as one batch when the graph has a batch axis, and answers each request with its own rows (a request
the graph refuses gets its error, the others still run).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EvitError
from ..files import sha256_file
from .configs import GRAPH_SETTINGS
from .stub_check import check_stub


def _pb_utils() -> Any:
    import triton_python_backend_utils as pb_utils

    return pb_utils


class TritonPythonModel:
    """Triton's Python-backend entry points for one graph."""

    def initialize(self, args: dict[str, str]) -> None:
        from .. import runtime

        check_stub()
        folder = Path(args["model_repository"]) / str(args["model_version"])
        settings = json.loads((folder / GRAPH_SETTINGS).read_text())
        path = folder / Path(settings["file"]).name
        for name, digest in settings["sha256"].items():  # the graph and its companions, as export.json recorded
            if digest and sha256_file(folder / Path(name).name) != digest:
                raise EvitError(f"{folder / Path(name).name} does not match the sha256 export.json recorded; "
                                "write the repository again")
        self.backend = runtime.open_file(path, settings.get("threads") or 0, settings.get("providers") or None)
        self.inputs = [spec.name for spec in self.backend.inputs]
        self.outputs = settings["outputs"]
        self.batched = bool(settings["batched"])

    def execute(self, requests: list[Any]) -> list[Any]:
        pb_utils = _pb_utils()
        feeds = [{name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs}
                 for r in requests]
        results: list[dict[str, np.ndarray] | Exception] = []
        if self.batched and len(feeds) > 1:
            results = self._run_batched(feeds)
        else:
            results = [self._run_one(f) for f in feeds]
        responses = []
        for result in results:
            if isinstance(result, Exception):
                responses.append(pb_utils.InferenceResponse(output_tensors=[],
                                                            error=pb_utils.TritonError(str(result))))
            else:
                tensors = [pb_utils.Tensor(name, np.ascontiguousarray(result[name])) for name in self.outputs]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def _run_one(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray] | Exception:
        try:
            return self.backend.run(feeds)
        except Exception as exc:  # noqa: BLE001 - answered as this request's error
            return exc

    def _run_batched(self, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray] | Exception]:
        """Requests whose rows have the same shapes run as one batch; each gets its slice of the outputs."""
        groups: dict[tuple, list[int]] = {}
        for i, f in enumerate(feeds):
            groups.setdefault(tuple((n, f[n].shape[1:], str(f[n].dtype)) for n in self.inputs), []).append(i)
        results: list[dict[str, np.ndarray] | Exception] = [EvitError("not run")] * len(feeds)
        for members in groups.values():
            joined = {n: np.concatenate([feeds[i][n] for i in members]) for n in self.inputs}
            out = self._run_one(joined)
            start = 0
            for i in members:
                rows = feeds[i][self.inputs[0]].shape[0]
                results[i] = out if isinstance(out, Exception) else {k: v[start:start + rows] for k, v in out.items()}
                start += rows
        return results

    def finalize(self) -> None:
        self.backend = None
