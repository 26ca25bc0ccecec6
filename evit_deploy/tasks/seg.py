"""``seg``: semantic segmentation (Cityscapes, ADE20K). Its graph (logits at stride 8), builder, the Predictor's
handler and the official protocol (applications/efficientvit_seg/eval_*.py). Torch-side code is imported inside
the methods (a spec is read by the runtime without torch).

Protocol: PIL decode → OpenCV ``INTER_CUBIC`` on uint8 to the input size → normalise; stride-8 logits resized
bicubically (``align_corners=False``) to the label's size → argmax; intersection and union per class summed over
the whole set; mIoU = mean over the classes whose union is not empty (the official plain mean on a full set).
Cityscapes at the export's size; ADE20K short side 512, long side rounded up to a multiple of 32 (sizes vary).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..eval.protocols import Item, Protocol, Tally
from ..images import load_rgb
from ..optional import require
from ..predict.handlers import Prepared, TaskHandler
from .graph import Graph, argmax_agreement
from .spec import TaskSpec, register

if TYPE_CHECKING:
    from torch import nn

    from ..eval.datasets import Sample
    from ..predict.results import Segmentation
    from ..zoo.cards import ModelCard

ADE20K_SHORT_SIDE = 512
MODEL = Graph("model", (("input", 4),), (("logits", 4),), "per-pixel argmax agreement", argmax_agreement(1),
              class_output=True)


class SegmentationHandler(TaskHandler):
    """Resize to the export's fixed input size (bicubic); stride-8 logits → bicubic to the image size → argmax.

    The official evaluation resizes Cityscapes to 1024x2048 and ADE20K to short side 512 with OpenCV
    INTER_CUBIC; an export has one fixed input size, and PIL's bicubic resize stands in for OpenCV's.
    """

    graph = MODEL

    def finish(self, item: Prepared, raw: np.ndarray) -> Segmentation:
        from ..predict.postprocess import label_map
        from ..predict.results import Segmentation

        return Segmentation(label_map(raw, item.original_size), self.info.class_names, self.info.palette)

    @staticmethod
    def summary(record: dict[str, Any]) -> str:
        return ", ".join(f"{c['label']} {100 * c['fraction']:.1f}%" for c in record["classes"][:3])


def ade20k_size(height: int, width: int, short: int = ADE20K_SHORT_SIDE) -> tuple[int, int]:
    """ADE20K's evaluation size: the short side to 512, the long side rounded *up* to a multiple of 32."""
    if height < width:
        return short, math.ceil(width / height * short / 32) * 32
    return math.ceil(height / width * short / 32) * 32, short


class SegmentationProtocol(Protocol):
    """mIoU (and pixel accuracy, per-class IoU) on the model's own dataset, as the official script computes it."""

    graph, datasets, primary, headline = MODEL, ("cityscapes", "ade20k"), "miou", ("miou", "pixel_acc")
    dataset_per_model = True

    @property
    def dynamic_sizes(self) -> bool:  # type: ignore[override]
        return self.dataset.kind == "ade20k"

    def protocol_size(self, sample: Sample) -> tuple[int, int]:
        if self.dataset.kind == "ade20k":
            from PIL import Image

            with Image.open(sample.image) as img:
                return ade20k_size(img.height, img.width)
        return self.input_size

    def prepare(self, sample: Sample, size: tuple[int, int] | None) -> Item:
        from ..processing import normalize

        cv2 = require("cv2", "segmentation evaluation (OpenCV INTER_CUBIC, as the official protocol)")
        rgb = np.asarray(load_rgb(sample.image, upright=False))
        h, w = size or self.protocol_size(sample)
        if rgb.shape[:2] != (h, w):
            rgb = cv2.resize(rgb, dsize=(w, h), interpolation=cv2.INTER_CUBIC)
        p = self.card.preprocess
        x = normalize(rgb, p.mean, p.std).numpy()
        return Item(sample, x, self.dataset.load_label(sample), rgb.shape[:2])

    def score(self, tally: Tally, item: Item, raw: np.ndarray, reference: Any | None) -> Any:
        from ..predict.postprocess import label_map

        label = item.truth
        pred = label_map(np.asarray(raw, np.float32), label.shape)
        classes = self.dataset.num_classes
        valid = label != 255
        p, t = pred[valid].astype(np.int64), label[valid].astype(np.int64)
        inter = np.bincount(t[p == t], minlength=classes)[:classes]
        tally.add("intersection", inter)
        tally.add("union", np.bincount(p, minlength=classes)[:classes] + np.bincount(t, minlength=classes)[:classes]
                  - inter)
        tally.add("target", np.bincount(t, minlength=classes)[:classes])
        tally.add("images", 1)
        if reference is not None:
            tally.agree += float((pred == reference).sum())
            tally.compared += pred.size
        return pred

    def metrics(self, tally: Tally) -> dict[str, Any]:
        inter = np.asarray(tally.counts.get("intersection", 0), np.float64)
        union = np.asarray(tally.counts.get("union", 0), np.float64)
        target = np.asarray(tally.counts.get("target", 0), np.float64)
        seen = union > 0
        iou = np.where(seen, inter / np.maximum(union, 1), np.nan)
        names = self.card_class_names()
        return {
            "miou": float(100 * iou[seen].mean()) if seen.any() else None,
            "pixel_acc": float(100 * inter.sum() / target.sum()) if target.sum() else None,
            "per_class_iou": {name: (None if math.isnan(v) else round(100 * float(v), 3)) for name, v in
                              zip(names, iou)},
            "classes_counted": int(seen.sum()), "images": int(tally.counts.get("images", 0)),
        }

    def card_class_names(self) -> list[str]:
        from ..zoo.labels import class_names

        names = list(class_names(self.card.class_names)) if self.card.class_names else []
        return names if len(names) == self.dataset.num_classes else [str(i) for i in range(self.dataset.num_classes)]


class SegmentationTask(TaskSpec):
    name, title = "seg", "semantic segmentation"
    graphs = (MODEL,)
    handler, protocol = SegmentationHandler, SegmentationProtocol
    dynamic_hw = True  # ADE20K's protocol sizes every image
    output_stride = 8

    def build(self, card: ModelCard) -> nn.Module:
        from ..nn.backbones import build_backbone
        from ..nn.heads import SegHead
        from ..nn.models import EfficientViTSeg

        backbone = build_backbone(card.backbone, card.act)
        h = card.head
        head = SegHead(h["feature_ids"], backbone.channels(h["feature_ids"]), h["strides"], h["width"], h["depth"],
                       h["middle"], h["expand_ratio"], h.get("final_expand"), card.num_classes, card.act)
        return EfficientViTSeg(backbone, head)


SPEC = register(SegmentationTask())
