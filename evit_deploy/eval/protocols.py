"""The official evaluation protocols, one per task (applications/efficientvit_{cls,seg,sam}/eval_*.py).

A protocol prepares a sample (decode + pre-process, run in worker threads), runs prepared samples through an
engine (any backend, or PyTorch) and accumulates the task metric and the agreement with a reference run:

- cls: the card's shorter-side crop (ceil(r / crop_ratio), bicubic, centre crop); top-1 / top-5 in %.
- seg: PIL decode → OpenCV ``INTER_CUBIC`` on uint8 to the input size → normalise; stride-8 logits resized
  bicubically (``align_corners=False``) to the label's size → argmax; intersection and union per class summed over
  the whole set; mIoU = mean over the classes whose union is not empty (the official plain mean on a full set).
  Cityscapes at the export's size; ADE20K short side 512, long side rounded up to a multiple of 32 (sizes vary).
- sam: long side to the encoder side (bilinear), pad; the ground-truth box (xywh → xyxy) as the prompt,
  multimask output, the mask (of tokens 1–3) with the highest predicted IoU, upsampled to the image; IoU with
  the ground-truth mask; mean over annotations, and per COCO size (areas ≤ 32², 32²–96², ≥ 96², bounds inclusive).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..images import load_rgb
from ..optional import require
from ..predict.engines import Engine
from ..predict.handlers import SamHandler, run_images
from ..predict.postprocess import label_map, sam_postprocess_masks
from ..processing import normalize, preprocess
from ..zoo.cards import ModelCard
from .datasets import Dataset, DatasetError, Sample

ADE20K_SHORT_SIDE = 512


@dataclass
class Item:
    """A prepared sample: the model input, and what scoring needs (label, original size, prompts)."""

    sample: Sample
    x: np.ndarray
    truth: Any = None
    original_size: tuple[int, int] = (0, 0)


@dataclass
class Tally:
    """Running metric of one backend (fields per task) and its agreement with the reference backend."""

    counts: dict[str, Any] = field(default_factory=dict)
    agree: float = 0.0
    compared: float = 0.0

    def add(self, key: str, value: Any) -> None:
        self.counts[key] = self.counts.get(key, 0) + value


class Protocol(ABC):
    """One task's official protocol. ``size`` of ``prepare`` is the input (H, W); None = the protocol's own."""

    task: ClassVar[str]
    dynamic_sizes: ClassVar[bool] = False  # True: the protocol's input size varies per image

    def __init__(self, card: ModelCard, dataset: Dataset, input_size: tuple[int, int]) -> None:
        self.card, self.dataset, self.input_size = card, dataset, tuple(input_size)

    def protocol_size(self, sample: Sample) -> tuple[int, int]:
        return self.input_size

    @abstractmethod
    def prepare(self, sample: Sample, size: tuple[int, int] | None) -> Item:
        """Decode and pre-process one sample (thread-safe: runs in worker threads)."""

    @abstractmethod
    def run(self, engine: Engine, items: list[Item]) -> list[Any]:
        """One raw output per item."""

    @abstractmethod
    def score(self, tally: Tally, item: Item, raw: Any, reference: Any | None) -> Any:
        """Add one item's result to ``tally`` (and its agreement with ``reference``, the reference backend's
        scored output); returns the scored output (what a later backend is compared with)."""

    @abstractmethod
    def metrics(self, tally: Tally) -> dict[str, Any]:
        """The final metrics of a tally."""

    primary: ClassVar[str]  # the metric an accuracy gate compares


def _grouped(engine: Engine, items: list[Item], role: str, input_name: str, output_name: str) -> list[np.ndarray]:
    """Run items in batches of equal input shape (sizes vary per image in some protocols)."""
    out: list[Any] = [None] * len(items)
    shapes: dict[tuple, list[int]] = {}
    for i, item in enumerate(items):
        shapes.setdefault(item.x.shape, []).append(i)
    for indices in shapes.values():
        results = run_images(engine, role, input_name, output_name, [items[i].x for i in indices])
        for i, result in zip(indices, results):
            out[i] = result
    return out


PROTOCOLS: dict[str, type[Protocol]] = {}


def register_protocol(cls: type[Protocol]) -> type[Protocol]:
    PROTOCOLS[cls.task] = cls
    return cls


@register_protocol
class ClassificationProtocol(Protocol):
    task, primary = "cls", "top1"

    def prepare(self, sample: Sample, size: tuple[int, int] | None) -> Item:
        x = preprocess(load_rgb(sample.image, upright=False), self.card, size or self.input_size).numpy()
        return Item(sample, x, int(sample.label))

    def run(self, engine: Engine, items: list[Item]) -> list[Any]:
        return _grouped(engine, items, "model", "input", "logits")

    def score(self, tally: Tally, item: Item, raw: np.ndarray, reference: Any | None) -> Any:
        top5 = np.argsort(-np.asarray(raw, np.float64), kind="stable")[:5]
        tally.add("images", 1)
        tally.add("top1", int(top5[0] == item.truth))
        tally.add("top5", int(item.truth in top5))
        if reference is not None:
            tally.agree += float(top5[0] == reference)
            tally.compared += 1
        return int(top5[0])

    def metrics(self, tally: Tally) -> dict[str, Any]:
        n = tally.counts.get("images", 0)
        return {"top1": 100.0 * tally.counts.get("top1", 0) / n if n else None,
                "top5": 100.0 * tally.counts.get("top5", 0) / n if n else None, "images": n}


def ade20k_size(height: int, width: int, short: int = ADE20K_SHORT_SIDE) -> tuple[int, int]:
    """ADE20K's evaluation size: the short side to 512, the long side rounded *up* to a multiple of 32."""
    if height < width:
        return short, math.ceil(width / height * short / 32) * 32
    return math.ceil(height / width * short / 32) * 32, short


@register_protocol
class SegmentationProtocol(Protocol):
    task, primary = "seg", "miou"

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
        cv2 = require("cv2", "segmentation evaluation (OpenCV INTER_CUBIC, as the official protocol)")
        rgb = np.asarray(load_rgb(sample.image, upright=False))
        h, w = size or self.protocol_size(sample)
        if rgb.shape[:2] != (h, w):
            rgb = cv2.resize(rgb, dsize=(w, h), interpolation=cv2.INTER_CUBIC)
        p = self.card.preprocess
        x = normalize(rgb, p.mean, p.std).numpy()
        return Item(sample, x, self.dataset.load_label(sample), rgb.shape[:2])

    def run(self, engine: Engine, items: list[Item]) -> list[Any]:
        return _grouped(engine, items, "model", "input", "logits")

    def score(self, tally: Tally, item: Item, raw: np.ndarray, reference: Any | None) -> Any:
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


def annotation_mask(ann: dict[str, Any], height: int, width: int) -> np.ndarray:
    """The ground-truth mask of a COCO annotation (polygons, uncompressed or compressed RLE) as bool [H, W]."""
    mask_utils = require("pycocotools.mask", "SAM evaluation on COCO annotations")
    seg = ann["segmentation"]
    if isinstance(seg, list):  # polygons; pycocotools reads a first polygon of 4 numbers as a box: drop those
        polygons = [p for p in seg if isinstance(p, list) and len(p) >= 6]
        if not polygons:
            return np.zeros((height, width), bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, height, width)
    elif isinstance(seg, dict) and "counts" in seg:
        rle = dict(seg, counts=seg["counts"].encode() if isinstance(seg["counts"], str) else seg["counts"])
    else:
        raise DatasetError(f"annotation {ann.get('id')} has a segmentation of an unknown form")
    mask = mask_utils.decode(rle)
    if mask.shape[:2] != (height, width):
        raise DatasetError(f"annotation {ann.get('id')} is {mask.shape[1]}x{mask.shape[0]}, its image {width}x{height}")
    return mask.astype(bool)


SIZE_BINS = {"small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, math.inf)}  # bounds inclusive (COCO)


@register_protocol
class SamProtocol(Protocol):
    task, primary = "sam", "miou"

    def prepare(self, sample: Sample, size: tuple[int, int] | None) -> Item:
        rgb = load_rgb(sample.image, upright=False)
        x = preprocess(rgb, self.card, size or self.input_size).numpy()
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in sample.annotations], np.float64)
        return Item(sample, x, boxes, (rgb.height, rgb.width))

    def run(self, engine: Engine, items: list[Item]) -> list[Any]:
        embeddings = _grouped(engine, items, "encoder", "input_image", "image_embeddings")
        return [SamHandler.decode_boxes(engine, emb[None], item.original_size, item.truth)
                for emb, item in zip(embeddings, items)]

    def score(self, tally: Tally, item: Item, raw: tuple[np.ndarray, np.ndarray], reference: Any | None) -> Any:
        masks4, iou4 = raw
        h, w = item.original_size
        preds = []
        for k, ann in enumerate(item.sample.annotations):
            token = 1 + int(np.argmax(iou4[k, 1:4]))  # multimask output: the best of tokens 1..3
            low = np.asarray(masks4[k, token], np.float32)[None, None]
            pred = sam_postprocess_masks(low, (h, w))[0, 0] > 0.0
            gt = annotation_mask(ann, h, w)
            iou = 100.0 * np.count_nonzero(pred & gt) / (np.count_nonzero(pred | gt) + 1e-7)
            area = float(ann["area"])
            tally.counts.setdefault("ious", []).append((area, iou))
            if reference is not None:
                tally.agree += float((pred == reference[k]).sum())
                tally.compared += pred.size
            preds.append(pred)
        tally.add("images", 1)
        return preds

    def metrics(self, tally: Tally) -> dict[str, Any]:
        records = tally.counts.get("ious", [])
        ious = np.array([r[1] for r in records])
        out: dict[str, Any] = {"miou": float(ious.mean()) if len(ious) else None}
        for name, (low, high) in SIZE_BINS.items():
            chosen = [iou for area, iou in records if low <= area <= high]
            out[f"miou_{name}"] = float(np.mean(chosen)) if chosen else None
        out["annotations"], out["images"] = len(records), int(tally.counts.get("images", 0))
        return out
