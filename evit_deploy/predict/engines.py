"""Engines run a model's graphs with the export's tensor names: ONNX Runtime on an export, or PyTorch.

``engine.run(role, feeds)`` takes and returns numpy arrays by name; roles are ``model`` (cls/seg), ``encoder``
and ``decoder`` (SAM). Engines are stateless, so one engine serves concurrent calls (ONNX Runtime sessions and
PyTorch modules in inference mode are both safe to call from several threads).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EvitError

MANIFEST = "export.json"
TORCH_MAX_BATCH = 64


class Engine(ABC):
    """Runs the graphs of one model."""

    max_batch: int = 1  # largest image batch one call accepts
    static_batch: int | None = None  # the graph's fixed batch when its batch axis is not dynamic
    native_boxes: bool = False  # the decoder takes ``boxes`` [P,4] (stock prompt encoder), not corner points

    @abstractmethod
    def run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph of ``role`` on named inputs; returns named outputs."""


def read_export_manifest(folder: Path) -> dict[str, Any]:
    """The ``export.json`` of an export folder (only the keys prediction needs are checked)."""
    path = folder / MANIFEST
    if not path.is_file():
        raise EvitError(f"{folder} is not an export folder (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
        manifest["model"], manifest["task"], manifest["input_size"], manifest["artifacts"]  # noqa: B018
    except (ValueError, KeyError, TypeError) as exc:
        raise EvitError(f"{path} is not a valid export manifest ({type(exc).__name__}: {exc})") from None
    return manifest


class OnnxEngine(Engine):
    """The artifacts of an export folder, run with :func:`evit_deploy.runtime.load` (one backend per role)."""

    def __init__(self, folder: str | Path, manifest: dict[str, Any] | None = None,
                 artifact: str | Path | None = None, threads: int | None = None) -> None:
        from .. import runtime

        self.folder = Path(folder)
        self.manifest = manifest or read_export_manifest(self.folder)
        roles = list(dict.fromkeys(a["role"] for a in self.manifest["artifacts"]))
        chosen = Path(artifact).resolve() if artifact is not None else None
        runtime_settings = self.manifest.get("profile", {}).get("runtime", {})
        self.backends = {}
        for role in roles:
            entries = [a for a in self.manifest["artifacts"] if a["role"] == role]
            match = [a for a in entries if chosen is not None and (self.folder / a["path"]).resolve() == chosen]
            if match:
                self.backends[role] = runtime.load(chosen, threads=threads if threads is not None
                                                   else runtime_settings.get("threads", 0))
            else:
                self.backends[role] = runtime.load(self.folder, role=role, threads=threads)
        if chosen is not None and not any((self.folder / a["path"]).resolve() == chosen
                                          for a in self.manifest["artifacts"]):
            raise EvitError(f"{artifact} is not an artifact listed in {self.folder / MANIFEST}")
        batch = self.manifest.get("batch", {"size": 1, "dynamic": False})
        if batch.get("dynamic"):
            self.max_batch = int(self.manifest.get("profile", {}).get("batch", {}).get("max", TORCH_MAX_BATCH))
            self.static_batch = None
        else:
            self.max_batch = self.static_batch = int(batch.get("size", 1))

    def run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if role not in self.backends:
            raise EvitError(f"{self.folder} has no '{role}' artifact (roles: {', '.join(self.backends)})")
        return self.backends[role].run(feeds)


class TorchEngine(Engine):
    """A PyTorch zoo model (``evit_deploy.create_model``); the SAM decoder is the stock prompt encoder + decoder.

    The ``decoder`` role returns all four mask tokens, exactly what ``EfficientViTSam.predict_masks`` slices from
    (token 0 = single-mask output, 1..3 = multimask outputs), and takes true ``boxes`` like the stock predictor.
    """

    native_boxes = True
    max_batch = TORCH_MAX_BATCH

    def __init__(self, model: Any) -> None:
        self.model = model.eval()
        self._roles = {"model": self._model, "encoder": self._encoder, "decoder": self._decode}

    def run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        if role not in self._roles:
            raise EvitError(f"unknown graph role '{role}' (known: {', '.join(self._roles)})")
        with torch.inference_mode():
            return self._roles[role](feeds)

    def _model(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        return {"logits": self.model(torch.from_numpy(feeds["input"])).numpy()}

    def _encoder(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        return {"image_embeddings": self.model.image_encoder(torch.from_numpy(feeds["input_image"])).numpy()}

    def _decode(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        sam = self.model
        coords = torch.from_numpy(feeds["point_coords"])
        labels = torch.from_numpy(feeds["point_labels"])
        boxes = torch.from_numpy(feeds["boxes"]) if feeds.get("boxes") is not None else None
        points = (coords, labels) if coords.shape[1] > 0 else None
        sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
        masks, iou = sam.mask_decoder.predict_masks(
            image_embeddings=torch.from_numpy(feeds["image_embeddings"]),
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
        return {"masks": masks.numpy(), "iou_predictions": iou.numpy()}
