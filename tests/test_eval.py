"""`evit-deploy eval`: tiny datasets fabricated in each layout, metrics checked against independent computations,
ignore labels honoured, every artifact beside PyTorch, dynamic and fixed ADE20K paths, layout mistakes as
one-line errors, and the accuracy gate of `export --eval`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from evit_deploy import create_model
from evit_deploy.errors import EvitError
from evit_deploy.eval import EvalSettings, accuracy_drops, evaluate, read_report
from evit_deploy.eval.datasets import DatasetError, annotation_mask, cityscapes_lut, open_dataset
from evit_deploy.export.pipeline import ExportRequest, run_export
from evit_deploy.processing import preprocess
from evit_deploy.samples import sample_photo
from evit_deploy.tasks.seg import ade20k_size
from evit_deploy.zoo import get_card
from evit_deploy.zoo.labels import class_ids

from .helpers import FAST_ARGS, run_cli
from .shared_exports import SEG_SIZE

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def one_line_exit_2(capsys, args: list[str]) -> str:  # noqa: ANN001
    assert run_cli(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in "\n".join(lines), lines
    return lines[-1]


def seg_logits_to_labels(model: torch.nn.Module, x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PyTorch's per-pixel class at ``size`` (an independent copy of the protocol's last step)."""
    with torch.inference_mode():
        logits = model(torch.from_numpy(x))
    return F.interpolate(logits, size=size, mode="bicubic", align_corners=False).argmax(1)[0].numpy()


def iou_by_sets(preds: list[np.ndarray], labels: list[np.ndarray], classes: int) -> float:
    """mIoU from set operations over all images (union = pred ∪ label over non-ignored pixels)."""
    inter, union = np.zeros(classes), np.zeros(classes)
    for p, t in zip(preds, labels):
        valid = t != 255
        for c in range(classes):
            inter[c] += np.sum((p == c) & (t == c) & valid)
            union[c] += np.sum(((p == c) | (t == c)) & valid)
    return float(100 * (inter[union > 0] / union[union > 0]).mean())


# -- Cityscapes ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory, seg_export):
    """3 images at the export's size; labels = PyTorch's prediction, 300 pixels per image moved to another class
    and 200 set to an ignored id, so the expected mIoU is known exactly."""
    folder, ckpt = seg_export
    root = tmp_path_factory.mktemp("cityscapes")
    model = create_model("efficientvit-seg-b0-cityscapes", ckpt)
    card = get_card("efficientvit-seg-b0-cityscapes")
    train_to_id = {int(t): i for i, t in enumerate(cityscapes_lut()) if t != 255}
    rng = np.random.default_rng(0)
    preds, labels = [], []
    for k, name in enumerate(PHOTOS[:3]):
        city = ("aachen", "bonn")[k % 2]
        image = Image.fromarray(sample_photo(name)).resize((SEG_SIZE[1], SEG_SIZE[0]))
        (root / "leftImg8bit" / "val" / city).mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / "val" / city).mkdir(parents=True, exist_ok=True)
        image.save(root / "leftImg8bit" / "val" / city / f"{city}_{k:06d}_000019_leftImg8bit.png")
        x = preprocess(np.asarray(image), card, SEG_SIZE).numpy()
        pred = seg_logits_to_labels(model, x, SEG_SIZE)
        train = pred.copy()
        flat = rng.permutation(train.size)
        moved, ignored = flat[:300], flat[300:500]
        train.flat[moved] = (train.flat[moved] + 1 + rng.integers(0, 17, 300)) % 19
        ids = np.vectorize(train_to_id.get)(train).astype(np.uint8)
        ids.flat[ignored] = 0  # "unlabeled": ignored in evaluation
        train.flat[ignored] = 255
        Image.fromarray(ids).save(root / "gtFine" / "val" / city / f"{city}_{k:06d}_000019_gtFine_labelIds.png")
        preds.append(pred)
        labels.append(train)
    return root, iou_by_sets(preds, labels, 19)


def test_cityscapes_metric_matches_an_independent_computation(seg_export, cityscapes, tmp_path, capsys):
    (folder, ckpt), (data, expected) = seg_export, cityscapes
    out = tmp_path / "report"
    assert run_cli(["eval", str(folder), "--data", str(data), "-w", str(ckpt), "-o", str(out), "--batch", "2"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["model"] == "efficientvit-seg-b0-cityscapes"
    assert report["dataset"] == {"kind": "cityscapes", "path": str(data), "images": 3, "limit": None,
                                 "available": 3}
    assert report["published"] == {"miou": 75.653}
    pytorch, onnx = report["results"]
    assert pytorch["backend"] == "pytorch" and pytorch["agreement_with_pytorch"] is None
    assert onnx["format"] == "onnx" and onnx["artifact"] == "model.onnx" and onnx["agreement_with_pytorch"] > 0.999
    for row in (pytorch, onnx):
        assert set(row) >= {"backend", "format", "precision", "artifact", "metrics", "agreement_with_pytorch",
                            "images_per_s", "protocol_deviations"}
        assert row["protocol_deviations"] == [] and row["images_per_s"] > 0
    assert pytorch["metrics"]["miou"] == pytest.approx(expected, abs=1e-9)
    assert abs(onnx["metrics"]["miou"] - expected) < 0.2
    assert set(pytorch["metrics"]["per_class_iou"]) >= {"road", "sky", "bicycle"}
    assert "mIoU %" in capsys.readouterr().out
    assert "| road |" in (out / "eval.md").read_text()


def test_cityscapes_layout_mistakes_name_the_file(cityscapes, seg_export, tmp_path, capsys):
    data = tmp_path / "cs"
    shutil.copytree(cityscapes[0], data)
    label = next((data / "gtFine").rglob("*.png"))
    Image.open(label).resize((64, 32)).save(label)
    err = one_line_exit_2(capsys, ["eval", str(seg_export[0]), "--data", str(data), "-w", str(seg_export[1]),
                                   "-o", str(tmp_path / "r")])
    assert label.name in err and "64x32" in err
    label.unlink()
    assert "has no label file" in one_line_exit_2(capsys, ["eval", str(seg_export[0]), "--data", str(data)])
    shutil.rmtree(data / "gtFine")
    assert "gtFine/val" in one_line_exit_2(capsys, ["eval", str(seg_export[0]), "--data", str(data)])
    (tmp_path / "empty").mkdir()
    assert "cannot tell the dataset" in one_line_exit_2(capsys, ["eval", "efficientvit-b0-r224", "--data",
                                                                 str(tmp_path / "empty")])
    assert not (tmp_path / "r").exists()


# -- ImageNet -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def imagenet(tmp_path_factory, cls_export):
    """4 photos in WordNet-id folders: 3 labelled with PyTorch's top-1, one with another class."""
    folder, ckpt = cls_export
    model = create_model("efficientvit-b0-r224", ckpt)
    card = get_card("efficientvit-b0-r224")
    root = tmp_path_factory.mktemp("imagenet") / "val"
    wnids = class_ids("imagenet")
    truth = {}
    for k, name in enumerate(PHOTOS):
        with torch.inference_mode():
            top = int(model(preprocess(sample_photo(name), card)).argmax())
        label = top if k < 3 else (top + 1) % 1000
        (root / wnids[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(sample_photo(name)).save(root / wnids[label] / f"{name}.JPEG", quality=95)
        truth[name] = label
    return root, truth


def test_imagenet_class_folders_and_flat_labels(cls_export, imagenet, tmp_path):
    import torch

    (folder, ckpt), (root, truth) = cls_export, imagenet
    before = torch.get_num_threads()
    report = evaluate(folder, EvalSettings(str(root.parent), weights=str(ckpt), batch=3, threads=before + 1))
    assert torch.get_num_threads() == before  # the PyTorch row's threads are the run's, not the process's after it
    pytorch, onnx = report["results"]
    assert report["dataset"]["kind"] == "imagenet" and report["dataset"]["images"] == 4
    assert pytorch["metrics"]["top1"] == pytest.approx(75.0) and pytorch["metrics"]["top5"] >= 75.0
    assert onnx["metrics"]["top1"] == pytest.approx(75.0) and onnx["agreement_with_pytorch"] == 1.0
    flat = tmp_path / "flat"
    flat.mkdir()
    lines = []
    for image in sorted(root.rglob("*.JPEG")):
        shutil.copy(image, flat / image.name)
        lines.append(f"{image.name},{truth[image.stem]}")
    (tmp_path / "labels.txt").write_text("\n".join(lines) + "\n")
    limited = evaluate(folder, EvalSettings(str(flat), "imagenet", str(tmp_path / "labels.txt"), str(ckpt),
                                            limit=2, pytorch=False))
    (row,) = limited["results"]
    assert limited["dataset"]["images"] == 2 and limited["dataset"]["limit"] == 2  # astronaut, chelsea: sorted
    assert row["metrics"]["top1"] == 100.0 and row["agreement_with_pytorch"] is None


def test_imagenet_layout_mistakes(cls_export, imagenet, tmp_path):
    root = tmp_path / "val"
    shutil.copytree(imagenet[0], root)
    (root / "cats").mkdir()
    with pytest.raises(DatasetError, match="cats is not an ImageNet class folder"):
        open_dataset(root)
    (root / "cats").rmdir()
    (tmp_path / "labels.txt").write_text("astronaut.JPEG,3\n")
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(next(root.rglob("chelsea.JPEG")), flat)
    with pytest.raises(DatasetError, match="chelsea.JPEG has no line"):
        open_dataset(flat, "imagenet", tmp_path / "labels.txt")
    with pytest.raises(EvitError, match="is evaluated on cityscapes"):
        evaluate("efficientvit-seg-b0-cityscapes", EvalSettings(str(root)))


# -- ADE20K: dynamic and fixed input sizes ----------------------------------------------------------------------------
def test_ade20k_size_rule():
    assert ade20k_size(375, 500) == (512, 704) and ade20k_size(480, 640) == (512, 704)
    assert ade20k_size(683, 512) == (704, 512) and ade20k_size(256, 256) == (512, 512)


@pytest.fixture(scope="module")
def ade20k(tmp_path_factory):
    root = tmp_path_factory.mktemp("ade") / "ADEChallengeData2016"
    (root / "images" / "validation").mkdir(parents=True)
    (root / "annotations" / "validation").mkdir(parents=True)
    rng = np.random.default_rng(3)
    for k, (name, size) in enumerate(zip(PHOTOS[:2], ((96, 128), (160, 96)))):
        Image.fromarray(sample_photo(name)).resize(size).save(root / "images" / "validation" / f"ADE_val_{k}.jpg")
        label = rng.integers(0, 151, (size[1], size[0])).astype(np.uint8)
        Image.fromarray(label).save(root / "annotations" / "validation" / f"ADE_val_{k}.png")
    return root


@pytest.mark.slow
def test_ade20k_dynamic_and_fixed_size_artifacts(ade20k, tmp_path):
    light = tmp_path / "light.yaml"
    light.write_text("extends: cpu-ort\nvalidation: {photos: [astronaut], noise: 0}\n")
    dynamic = tmp_path / "dynamic.yaml"
    dynamic.write_text(f"extends: {light}\ndynamic_hw: true\n")
    name = "efficientvit-seg-b1-ade20k"
    fixed = run_export(ExportRequest(name, str(light), imgsz=(128, 128), output=str(tmp_path / "fixed"))).folder
    dyn = run_export(ExportRequest(name, str(dynamic), imgsz=(128, 128), output=str(tmp_path / "dyn"))).folder
    shutil.copy(fixed / "model.onnx", dyn / "fixed.onnx")  # both forms in one report (listed in the manifest)
    manifest = json.loads((dyn / "export.json").read_text())
    entry = json.loads((fixed / "export.json").read_text())["artifacts"][0] | {"path": "fixed.onnx"}
    manifest["artifacts"].append(entry)
    manifest["files"].append("fixed.onnx")
    (dyn / "export.json").write_text(json.dumps(manifest))
    report = evaluate(dyn, EvalSettings(str(ade20k.parent)))
    pytorch, dynamic_row, fixed_row = report["results"]
    assert report["dataset"]["kind"] == "ade20k" and report["protocol"]["input_size"] == "per image"
    assert dynamic_row["protocol_deviations"] == [] and dynamic_row["agreement_with_pytorch"] > 0.999
    assert abs(dynamic_row["metrics"]["miou"] - pytorch["metrics"]["miou"]) < 1.0
    assert "fixed input size 128x128" in fixed_row["protocol_deviations"][0]
    assert fixed_row["metrics"]["miou"] is not None and fixed_row["agreement_with_pytorch"] is not None
    assert all(v is None or 0 <= v <= 100 for v in pytorch["metrics"]["per_class_iou"].values())


# -- COCO (SAM box prompts) -------------------------------------------------------------------------------------------
def polygon(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    (root / "val2017").mkdir()
    (root / "annotations").mkdir()
    images, annotations = [], []
    for k, name in enumerate(("coffee", "chelsea")):
        photo = Image.fromarray(sample_photo(name))
        photo.save(root / "val2017" / f"{k:012d}.jpg", quality=95)
        images.append({"id": k + 1, "file_name": f"{k:012d}.jpg", "width": photo.width, "height": photo.height})
    boxes = [(1, (100, 80, 110, 90)), (1, (200, 150, 232, 182)), (2, (50, 60, 150, 110)), (2, (10, 10, 260, 200))]
    for i, (image_id, (x0, y0, x1, y1)) in enumerate(boxes):
        area = float((x1 - x0) * (y1 - y0))
        annotations.append({"id": i + 1, "image_id": image_id, "bbox": [x0, y0, x1 - x0, y1 - y0], "area": area,
                            "segmentation": [polygon(x0, y0, x1, y1)], "iscrowd": 0, "category_id": 1})
    annotations.append({"id": 99, "image_id": 1, "bbox": [0, 0, 1, 1], "area": 0.5, "segmentation": [],
                        "iscrowd": 0, "category_id": 1})  # area < 1: skipped, as the official evaluation does
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}))
    return root, annotations[:4]


def test_coco_box_prompts_match_the_predictor(sam_export, coco):
    from evit_deploy.predict import Predictor

    root, annotations = coco
    report = evaluate(sam_export, EvalSettings(str(root)))
    assert report["dataset"]["kind"] == "coco" and report["dataset"]["images"] == 2
    pytorch, onnx = report["results"]
    assert pytorch["metrics"]["annotations"] == 4 and onnx["agreement_with_pytorch"] > 0.99
    predictor = Predictor.from_model("efficientvit-sam-l0")  # the zoo's random weights, as the export's
    photos = [sample_photo(name) for name in ("coffee", "chelsea")]
    encoded = [predictor.set_image(photo) for photo in photos]
    ious = []
    for ann in annotations:
        x, y, w, h = ann["bbox"]
        photo = photos[ann["image_id"] - 1]
        result = predictor.predict_masks(box=[x, y, x + w, y + h], image=encoded[ann["image_id"] - 1])
        best = result.masks[int(np.argmax(result.scores))]
        gt = annotation_mask(ann, photo.shape[0], photo.shape[1])
        ious.append(100 * np.count_nonzero(best & gt) / (np.count_nonzero(best | gt) + 1e-7))
    # All prompts of an image go through the decoder in one batch here; a pixel at a mask edge may flip.
    assert pytorch["metrics"]["miou"] == pytest.approx(np.mean(ious), abs=0.05)
    areas = [a["area"] for a in annotations]  # 100, 1024, 5000, 47500: 1024 is both small and medium (inclusive)
    assert pytorch["metrics"]["miou_small"] == pytest.approx(np.mean([ious[i] for i in (0, 1)]), abs=0.05)
    assert pytorch["metrics"]["miou_medium"] == pytest.approx(np.mean([ious[i] for i in (1, 2)]), abs=0.05)
    assert pytorch["metrics"]["miou_large"] == pytest.approx(ious[3], abs=0.05) and areas[1] == 32**2


def test_coco_masks_from_every_annotation_form():
    from pycocotools import mask as mask_utils

    square = np.zeros((20, 30), np.uint8)
    square[5:10, 4:12] = 1
    compressed = mask_utils.encode(np.asfortranarray(square))
    uncompressed = {"size": [20, 30], "counts": [int(c) for c in
                                                 _runs(np.asfortranarray(square).reshape(-1, order="F"))]}
    for seg in (compressed | {"counts": compressed["counts"].decode()}, uncompressed):
        assert (annotation_mask({"id": 1, "segmentation": seg}, 20, 30) == square.astype(bool)).all()
    tiny_first = annotation_mask({"id": 2, "segmentation": [[1, 1, 2, 2], polygon(4, 5, 12, 10)]}, 20, 30)
    assert tiny_first.sum() > 0  # a first polygon of 4 numbers is dropped, not read as a box


def _runs(flat: np.ndarray) -> list[int]:
    counts, value, run = [], 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    return [*counts, run]


# -- the accuracy gate of export --eval, and bench --eval ---------------------------------------------------------
@pytest.mark.slow
def test_export_eval_records_accuracy_and_gates_on_the_drop(cls_export, imagenet, tmp_path, monkeypatch, capsys):
    ckpt, root = cls_export[1], imagenet[0]
    light = tmp_path / "light.yaml"
    light.write_text("extends: cpu-ort\nvalidation: {photos: [astronaut], noise: 0}\n")
    out = tmp_path / "gated"
    assert run_cli(["export", "efficientvit-b0-r224", "-t", str(light), "-w", str(ckpt), "-o", str(out),
                    "--eval", str(root), "--max-drop", "0.5"]) == 0
    accuracy = json.loads((out / "export.json").read_text())["validation"]["accuracy"]
    assert accuracy["metric"] == "top1" and [r["top1"] for r in accuracy["results"]] == [75.0, 75.0]

    import evit_deploy.eval.runner as runner

    real = runner.evaluate

    def worse(target, settings, progress=runner._no_progress):  # noqa: ANN001
        report = real(target, settings, progress)
        report["results"][1]["metrics"]["top1"] -= 25.0  # as if the artifact lost one image of four
        return report

    monkeypatch.setattr(runner, "evaluate", worse)
    err = one_line_exit_2(capsys, ["export", "efficientvit-b0-r224", "-t", str(light), "-w", str(ckpt), "-o",
                                   str(tmp_path / "refused"), "--eval", str(root), "--max-drop", "0.5"])
    assert "loses 25.00 points of top1" in err and not (tmp_path / "refused").exists()
    assert not list(tmp_path.glob(".refused.*"))
    assert "--max-drop needs --eval" in one_line_exit_2(capsys, ["export", "efficientvit-b0-r224", "--max-drop",
                                                                 "1"])


@pytest.mark.slow
def test_bench_takes_measured_accuracy_from_an_eval_json(cls_export, imagenet, tmp_path):
    (folder, ckpt), (root, _) = cls_export, imagenet
    assert run_cli(["eval", str(folder), "--data", str(root), "-w", str(ckpt), "-o", str(tmp_path / "ev")]) == 0
    evaluation = read_report(tmp_path / "ev")
    assert accuracy_drops(evaluation) == [("model.onnx", 0.0)]
    assert run_cli(["bench", "run", str(folder), "-w", str(ckpt), *FAST_ARGS, "--eval",
                    str(tmp_path / "ev" / "eval.json"), "-o", str(tmp_path / "b")]) == 0
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["sections"]["accuracy"] == {"metric": "top1", "dataset": "imagenet", "images": 4,
                                  "by_artifact": {"pytorch": 75.0, "model.onnx": 75.0}}
    assert "Measured top1 on 4 images of imagenet" in (tmp_path / "b" / "report.md").read_text()
