"""Evaluation datasets, read in the layouts they ship in (never downloaded), with one-line errors naming the file.

- ``imagenet``: ImageNet val as class folders named by WordNet id (``val/n01440764/*.JPEG``); the class index
  comes from the WordNet id (``models/labels/imagenet.txt``, which is ImageFolder's sorted order on the full
  set, and stays right on a subset of the folders). Or a flat folder of images with ``--labels FILE``
  (lines ``filename,class_index``).
- ``cityscapes``: ``leftImg8bit/val/<city>/*_leftImg8bit.png`` with ``gtFine/val/<city>/*_gtFine_labelIds.png``;
  labelIds → the 19 trainIds (255 = ignored) with the dataset's own table (``cityscapesscripts``).
- ``ade20k``: ``ADEChallengeData2016/images/validation/*.jpg`` with ``annotations/validation/*.png``; 150 classes,
  label 0 ignored (reduce-zero-label).
- ``coco``: an ``instances_*.json`` and its image folder; every annotation with area >= 1 is a box prompt.

Samples are sorted (``--limit N`` takes the first N in that order).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..errors import EvitError
from ..images import is_image_file
from ..optional import require
from ..zoo.labels import class_ids

MAX_LABEL_PIXELS = 64_000_000  # a label PNG larger than this is refused before decoding


class DatasetError(EvitError):
    """A dataset folder that does not have the expected layout."""


@dataclass
class Sample:
    """One evaluation image: its file, the class index (cls), the label file (seg) or the prompts (sam)."""

    image: Path
    label: int | Path | None = None
    annotations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.image.name


class Dataset(ABC):
    """A dataset found at ``root``: its kind, classes and sorted samples (the task specs' protocols name the kinds
    they read)."""

    kind: ClassVar[str]
    num_classes: ClassVar[int] = 0

    def __init__(self, root: Path, samples: list[Sample]) -> None:
        if not samples:
            raise DatasetError(f"{root} holds no {self.kind} images")
        self.root, self.samples = root, samples

    @classmethod
    @abstractmethod
    def find(cls, path: Path) -> Path | None:
        """The dataset root when ``path`` (or a folder inside it) has this layout, else None."""

    @classmethod
    @abstractmethod
    def open(cls, root: Path, labels: Path | None = None) -> Dataset:
        """Read the sample list (raises :class:`DatasetError` naming the offending file)."""

    def load_label(self, sample: Sample) -> np.ndarray:  # segmentation datasets override this
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.kind} at {self.root} ({len(self.samples)} images)"


DATASETS: dict[str, type[Dataset]] = {}


def register_dataset(cls: type[Dataset]) -> type[Dataset]:
    DATASETS[cls.kind] = cls
    return cls


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p) and not p.name.startswith("."))


# ---------------------------------------------------------------------------------------------------- ImageNet


WNID = re.compile(r"n\d{8}")


@register_dataset
class ImageNet(Dataset):
    kind, num_classes = "imagenet", 1000

    @classmethod
    def find(cls, path: Path) -> Path | None:
        for root in (path, path / "val"):
            if root.is_dir() and any(WNID.fullmatch(p.name) for p in root.iterdir() if p.is_dir()):
                return root
        return None

    @classmethod
    def open(cls, root: Path, labels: Path | None = None) -> ImageNet:
        return cls(root, cls._flat(root, labels) if labels else cls._folders(root))

    @classmethod
    def _folders(cls, root: Path) -> list[Sample]:
        index = {wnid: i for i, wnid in enumerate(class_ids("imagenet"))}
        samples = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if folder.name not in index:
                raise DatasetError(f"{folder} is not an ImageNet class folder (expected a WordNet id like n01440764)")
            images = _images(folder)
            if not images:
                raise DatasetError(f"class folder {folder} holds no images")
            samples += [Sample(p, index[folder.name]) for p in images]
        return samples

    @classmethod
    def _flat(cls, root: Path, labels: Path) -> list[Sample]:
        try:
            lines = labels.read_text().splitlines()
        except OSError as exc:
            raise DatasetError(f"cannot read --labels {labels}: {exc.strerror or exc}") from None
        table: dict[str, int] = {}
        for n, line in enumerate(lines, 1):
            if not line.strip() or line.startswith("#"):
                continue
            name, _, value = line.rpartition(",")
            if not name or not value.strip().isdigit() or not 0 <= int(value) < cls.num_classes:
                raise DatasetError(f"{labels}:{n}: expected 'filename,class_index' with 0 <= index < 1000, got "
                                   f"{line[:80]!r}")
            table[name.strip()] = int(value)
        images = _images(root)
        missing = [p for p in images if p.name not in table]
        if missing:
            raise DatasetError(f"image {missing[0]} has no line in {labels}")
        absent = sorted(set(table) - {p.name for p in images})
        if absent:
            raise DatasetError(f"{labels} names {absent[0]}, which is not an image in {root}")
        return [Sample(p, table[p.name]) for p in images]


# -------------------------------------------------------------------------------------------- segmentation


class SegDataset(Dataset):
    """Images with label PNGs of the same size; ``lut`` maps stored label values to class ids (255 = ignore)."""

    lut: np.ndarray

    def load_label(self, sample: Sample) -> np.ndarray:
        path = Path(sample.label)
        try:
            with Image.open(path) as img:
                if img.width * img.height > MAX_LABEL_PIXELS:
                    raise DatasetError(f"label {path} is {img.width}x{img.height}: too large")
                raw = np.asarray(img)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read label {path}: {exc}") from None
        if raw.ndim != 2:
            raise DatasetError(f"label {path} has {raw.ndim} dimensions; a label PNG is one channel of ids")
        with Image.open(sample.image) as img:
            size = (img.height, img.width)
        if raw.shape != size:
            raise DatasetError(f"label {path} is {raw.shape[1]}x{raw.shape[0]} but its image {sample.image.name} is "
                               f"{size[1]}x{size[0]}")
        return self.lut[raw] if raw.dtype == np.uint8 else self.lut[np.clip(raw.astype(np.int64), 0, 255)]

    @classmethod
    def _pairs(cls, images: list[Path], label_of: Any) -> list[Sample]:
        samples = []
        for image in images:
            label = label_of(image)
            if not label.is_file():
                raise DatasetError(f"image {image} has no label file (expected {label})")
            samples.append(Sample(image, label))
        return samples


@register_dataset
class Cityscapes(SegDataset):
    kind, num_classes = "cityscapes", 19

    @classmethod
    def find(cls, path: Path) -> Path | None:
        for root in (path, *path.parents[:3]):
            if (root / "leftImg8bit").is_dir():
                return root
        return None

    @classmethod
    def open(cls, root: Path, labels: Path | None = None) -> Cityscapes:
        images_root, labels_root = root / "leftImg8bit" / "val", root / "gtFine" / "val"
        if not images_root.is_dir():
            raise DatasetError(f"{root} has no leftImg8bit/val folder (the Cityscapes validation images)")
        if not labels_root.is_dir():
            raise DatasetError(f"{root} has no gtFine/val folder (the Cityscapes labels); get gtFine_trainvaltest.zip")
        images = sorted(images_root.glob("*/*_leftImg8bit.png"))
        samples = cls._pairs(images, lambda p: labels_root / p.parent.name / p.name.replace(
            "_leftImg8bit.png", "_gtFine_labelIds.png"))
        dataset = cls(root, samples)
        dataset.lut = cityscapes_lut()
        return dataset


def cityscapes_lut() -> np.ndarray:
    """labelId → trainId (0..18, 255 = ignored), from the dataset's own label table (``cityscapesscripts``)."""
    labels = require("cityscapesscripts.helpers.labels", "evaluating on Cityscapes").labels
    lut = np.full(256, 255, np.uint8)
    for label in labels:
        if 0 <= label.id < 256 and not label.ignoreInEval and 0 <= label.trainId < 255:
            lut[label.id] = label.trainId
    return lut


@register_dataset
class ADE20K(SegDataset):
    kind, num_classes = "ade20k", 150
    lut = np.concatenate([[255], np.arange(150), np.full(105, 255)]).astype(np.uint8)  # reduce-zero-label

    @classmethod
    def find(cls, path: Path) -> Path | None:
        for root in (path, path / "ADEChallengeData2016", *path.parents[:2]):
            if (root / "images" / "validation").is_dir():
                return root
        return None

    @classmethod
    def open(cls, root: Path, labels: Path | None = None) -> ADE20K:
        images_root, labels_root = root / "images" / "validation", root / "annotations" / "validation"
        if not labels_root.is_dir():
            raise DatasetError(f"{root} has no annotations/validation folder (the ADE20K labels)")
        images = sorted(p for p in images_root.iterdir() if p.suffix.lower() == ".jpg")
        return cls(root, cls._pairs(images, lambda p: labels_root / f"{p.stem}.png"))


# ----------------------------------------------------------------------------------------------------- COCO


@register_dataset
class Coco(Dataset):
    """COCO-style instances: every annotation with area >= 1 is prompted by its ground-truth box (xywh → xyxy)."""

    kind = "coco"

    @classmethod
    def find(cls, path: Path) -> Path | None:
        if path.is_file() and path.suffix == ".json":
            return path
        for folder in (path / "annotations", path):
            found = sorted(folder.glob("instances_*.json")) if folder.is_dir() else []
            if found:
                return found[0] if len(found) == 1 else next((f for f in found if "val" in f.name), found[0])
        return None

    @classmethod
    def open(cls, root: Path, labels: Path | None = None) -> Coco:
        json_path = root
        try:
            doc = json.loads(json_path.read_text())
            images, annotations = doc["images"], doc["annotations"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{json_path} is not a COCO instances file ({type(exc).__name__}: {exc})") from None
        folder = cls._image_folder(json_path)
        by_image: dict[int, list[dict]] = {}
        for ann in annotations:
            if not isinstance(ann, dict) or "bbox" not in ann or "segmentation" not in ann:
                raise DatasetError(f"{json_path}: annotation {str(ann)[:60]} has no bbox or segmentation")
            if float(ann.get("area", 0)) >= 1:
                by_image.setdefault(int(ann["image_id"]), []).append(ann)
        samples = []
        for info in sorted(images, key=lambda i: i["file_name"]):
            anns = by_image.get(int(info["id"]), [])
            if not anns:
                continue
            path = folder / info["file_name"]
            if not path.is_file():
                raise DatasetError(f"{json_path} lists image {info['file_name']}, which is not in {folder}")
            samples.append(Sample(path, None, anns))
        return cls(json_path, samples)

    @staticmethod
    def _image_folder(json_path: Path) -> Path:
        split = json_path.stem.removeprefix("instances_")
        base = json_path.parent.parent if json_path.parent.name == "annotations" else json_path.parent
        for folder in (base / split, base / "images", base):
            if folder.is_dir() and any(is_image_file(p) for p in folder.iterdir()):
                return folder
        raise DatasetError(f"no image folder for {json_path} (looked for {base / split} and {base / 'images'})")

    def describe(self) -> str:
        count = sum(len(s.annotations) for s in self.samples)
        return f"coco at {self.root} ({len(self.samples)} images, {count} box prompts)"


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


# -------------------------------------------------------------------------------------------------- opening


def open_dataset(path: str | Path, kind: str | None = None, labels: str | Path | None = None) -> Dataset:
    """The dataset at ``path``: of ``kind``, or detected from the folder layout."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"--data {path} not found")
    if kind is not None and kind not in DATASETS:
        raise DatasetError(f"unknown dataset kind '{kind}'; known: {', '.join(DATASETS)}")
    if kind == "imagenet" and labels is not None:
        if not path.is_dir():
            raise DatasetError(f"--data {path} must be a folder of images")
        return ImageNet.open(path, Path(labels))
    candidates = [DATASETS[kind]] if kind else list(DATASETS.values())
    for cls in candidates:
        root = cls.find(path)
        if root is not None:
            return cls.open(root, Path(labels) if labels else None)
    if kind:
        raise DatasetError(f"{path} does not have the {kind} layout (see `evit-deploy eval --help`)")
    if labels is not None:
        return ImageNet.open(path, Path(labels))
    raise DatasetError(f"cannot tell the dataset in {path}: expected ImageNet class folders (n01440764/...), "
                       "Cityscapes (leftImg8bit/, gtFine/), ADE20K (images/validation/, annotations/validation/) or "
                       "COCO (annotations/instances_*.json); or pass --dataset")
