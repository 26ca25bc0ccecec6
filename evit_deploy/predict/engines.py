"""Engines run a model's graphs with the export's tensor names: an export's artifacts, or PyTorch.

``engine.run(role, feeds)`` takes and returns numpy arrays by name; roles are ``model`` (cls/seg), ``encoder``
and ``decoder`` (SAM). :class:`ExportEngine` opens each artifact of an export folder with its runtime backend
(ONNX Runtime, LiteRT, TensorRT, compiled PyTorch; see :mod:`evit_deploy.runtime`); :class:`TorchEngine` runs
the PyTorch zoo model. Engines keep no per-call state; whether one engine may serve concurrent calls is the
backend's property (ONNX Runtime sessions and PyTorch modules in inference mode may be called from several
threads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import MANIFEST, Manifest, choose_artifact, read_manifest
from ..errors import EvitError
from ..tasks import TaskSpec
from .engine_base import Engine

TORCH_MAX_BATCH = 64


class ExportEngine(Engine):
    """The artifacts of an export folder, one runtime backend per role (ONNX Runtime, LiteRT, TensorRT, ...).

    The folder is opened through its manifest: each artifact is confined to the folder, hash-checked and its
    inputs checked before it runs. ``artifact`` (a file of the folder) picks that file for its role.
    """

    def __init__(self, folder: str | Path, manifest: Manifest | None = None,
                 artifact: str | Path | None = None, threads: int | None = None, verify: bool = True,
                 shared_cpu: bool = False) -> None:
        from .. import runtime

        self.folder = Path(folder)
        self.manifest = manifest or read_manifest(self.folder, verify=False)
        chosen = Path(artifact).resolve() if artifact is not None else None
        picked = {role: choose_artifact(self.manifest, role) for role in self.manifest.roles
                  if any(a.role == role and a.runnable for a in self.manifest.artifacts)}
        if chosen is not None:
            match = [a for a in self.manifest.artifacts if (self.folder / a.path).resolve() == chosen and a.runnable]
            if not match:
                raise EvitError(f"{artifact} is not a runnable artifact listed in {self.folder / MANIFEST}")
            picked[match[0].role] = match[0]
        self.backends = {role: runtime.open_artifact(self.folder, self.manifest, entry, threads, shared_cpu, verify)
                         for role, entry in picked.items()}
        self.runs_on_torch = any(b.runs_on_torch for b in self.backends.values())
        batch = self.manifest.batch
        self.max_batch = batch.largest
        self.static_batch = None if batch.dynamic else batch.size

    def run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if role not in self.backends:
            raise EvitError(f"{self.folder} has no '{role}' artifact (roles: {', '.join(self.backends)})")
        return self.backends[role].run(feeds)


class ArtifactEngine(Engine):
    """Backends opened directly, without an export folder (``{role: Backend}``): e.g. a candidate graph."""

    def __init__(self, backends: dict[str, Any], max_batch: int = TORCH_MAX_BATCH) -> None:
        self.backends = backends
        first = next(iter(backends.values())).inputs[0].shape[0]
        self.static_batch = first if isinstance(first, int) else None
        self.max_batch = self.static_batch or max_batch

    def run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if role not in self.backends:
            raise EvitError(f"no '{role}' graph (roles: {', '.join(self.backends)})")
        return self.backends[role].run(feeds)


class TorchEngine(Engine):
    """A PyTorch zoo model (``evit_deploy.create_model``), each graph run as its task spec says
    (:meth:`~evit_deploy.tasks.TaskSpec.torch_run`; SAM's decoder: the stock prompt encoder + decoder).

    The SAM ``decoder`` role returns all four mask tokens, exactly what ``EfficientViTSam.predict_masks`` slices
    from (token 0 = single-mask output, 1..3 = multimask outputs), and takes true ``boxes`` like the stock predictor.
    """

    native_boxes = True
    runs_on_torch = True
    max_batch = TORCH_MAX_BATCH

    def __init__(self, model: Any, spec: TaskSpec) -> None:
        self.model = model.eval()
        self.spec = spec

    def run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        if role not in self.spec.roles:
            raise EvitError(f"unknown graph role '{role}' (known: {', '.join(self.spec.roles)})")
        with torch.inference_mode():
            return self.spec.torch_run(self.model, role, feeds)
