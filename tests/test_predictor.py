"""Predictor: official pre/post-processing per task, ONNX exports vs the PyTorch predictor, SAM state, threads, CLI.

The export builders below are cached per process and shared with test_server.py and test_triton.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from evit_deploy import create_model
from evit_deploy.errors import EvitError
from evit_deploy.export.pipeline import ExportRequest, run_export
from evit_deploy.predict import (
    CITYSCAPES_PALETTE,
    Engine,
    ImageError,
    OptionError,
    Predictor,
    PromptError,
    ade20k_palette,
    decode_png,
    parse_prompt,
    rle_decode,
    rle_encode,
)
from evit_deploy.predict.postprocess import bicubic_matrix, label_map, resize_rows
from evit_deploy.processing import classification_input, resized_input, sam_input
from evit_deploy.samples import sample_photo, sample_photos
from evit_deploy.zoo.labels import class_names

from .helpers import run_cli
from .shared_exports import (
    LIGHT_PROFILE,
    SEG_SIZE,
    build_sam_export,
    sam_coffee_image,
    sam_onnx_predictor,
)


# -- classification ------------------------------------------------------------------------------------------
def test_classification_export_matches_pytorch_and_the_official_pipeline(cls_export):
    folder, ckpt = cls_export
    photos = list(sample_photos().values())
    onnx = Predictor.from_export(folder)(photos)
    torch_pred = Predictor.from_model("efficientvit-b0-r224", ckpt)(photos)
    model = create_model("efficientvit-b0-r224", ckpt)
    names = class_names("imagenet")
    for photo, a, b in zip(photos, onnx, torch_pred):
        with torch.inference_mode():  # independent reference: eval transform (crop 0.95), softmax, topk
            probs = model(classification_input(photo, 224, 0.95)).softmax(-1)[0]
        ref_p, ref_i = probs.topk(5)
        assert a.indices == b.indices == ref_i.tolist()
        assert a.labels == [names[i] for i in ref_i.tolist()]
        np.testing.assert_allclose(b.scores, ref_p.numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(a.scores, ref_p.numpy(), rtol=1e-3, atol=1e-6)
    d = onnx[0].to_dict()
    assert d["task"] == "cls" and len(d["top_k"]) == 5 and d["top_k"][0]["label"] == onnx[0].labels[0]
    assert len({tuple(r.indices) for r in onnx}) > 1  # different photos, different answers


def test_inputs_paths_pil_arrays_and_batches_agree(cls_pred, tmp_path):
    photo = sample_photo("chelsea")
    Image.fromarray(photo).save(tmp_path / "chelsea.png")
    as_path = cls_pred(tmp_path / "chelsea.png")
    as_str = cls_pred(str(tmp_path / "chelsea.png"))
    as_pil = cls_pred(Image.fromarray(photo))
    as_array = cls_pred(photo)
    rgba = cls_pred(np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)]))
    batch = cls_pred([photo, sample_photo("rocket"), photo])
    for r in (as_str, as_pil, as_array, rgba, batch[0], batch[2]):
        assert r.indices == as_path.indices
        np.testing.assert_allclose(r.scores, as_path.scores, rtol=1e-5)
    assert isinstance(batch, list) and len(batch) == 3 and batch[1].indices != as_path.indices
    gray = cls_pred(photo[..., 0])
    assert len(gray.indices) == 5
    with pytest.raises(ImageError, match="uint8"):
        cls_pred(photo.astype(np.float32))
    with pytest.raises(ImageError, match="shape"):
        cls_pred(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageError, match="not found"):
        cls_pred(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="not an image"):
        (tmp_path / "bad.png").write_bytes(b"not a png")
        cls_pred(tmp_path / "bad.png")


def test_static_batch_export_runs_lists(tmp_path, cls_export):
    profile = tmp_path / "static.yaml"
    profile.write_text(LIGHT_PROFILE + "batch: {size: 2, dynamic: false, min: 2, opt: 2, max: 2}\n")
    result = run_export(ExportRequest("efficientvit-b0-r224", str(profile), str(cls_export[1]),
                                      output=str(tmp_path / "static")))
    static = Predictor.from_export(result.folder)
    assert static.engine.static_batch == 2
    photos = list(sample_photos().values())[:3]  # 2 + 1: the last run is padded to the static batch
    for a, b in zip(static(photos), Predictor.from_export(cls_export[0])(photos)):
        assert a.indices == b.indices


def test_classification_options(cls_pred):
    photo = sample_photo("coffee")
    assert len(cls_pred(photo, top_k=3).indices) == 3
    assert len(cls_pred(photo, top_k=1000).indices) == 1000
    for bad in (0, 1001, 2.5, True):
        with pytest.raises(OptionError, match="top_k"):
            cls_pred(photo, top_k=bad)
    with pytest.raises(OptionError, match="does not take points"):
        cls_pred(photo, points=[[1, 2]])
    with pytest.raises(EvitError, match="Segment Anything"):
        cls_pred.set_image(photo)


def test_from_export_takes_an_artifact_file_and_rejects_other_paths(cls_export, cls_pred, tmp_path):
    folder, _ = cls_export
    photo = sample_photo("astronaut")
    assert Predictor.from_export(folder / "model.onnx")(photo).indices == cls_pred(photo).indices
    with pytest.raises(EvitError, match="not an export folder"):
        Predictor.from_export(tmp_path)
    with pytest.raises(EvitError, match="not found"):
        Predictor.from_export(tmp_path / "nothing")


def test_concurrent_calls_from_many_threads_match_sequential(cls_pred):
    photos = list(sample_photos().values()) * 6
    sequential = [cls_pred(p) for p in photos]
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(cls_pred, photos))
        batched = list(pool.map(cls_pred, [photos[i : i + 3] for i in range(0, len(photos), 3)]))
    for a, b in zip(sequential, concurrent):
        assert a.indices == b.indices and np.allclose(a.scores, b.scores, rtol=1e-6)
    assert [r.indices for chunk in batched for r in chunk] == [r.indices for r in sequential]


# -- segmentation --------------------------------------------------------------------------------------------
def test_segmentation_label_map_at_image_size_matches_reference(seg_export):
    folder, ckpt = seg_export
    photo = sample_photo("coffee")  # 400x600, not the export's 128x256
    onnx = Predictor.from_export(folder)(photo)
    torch_result = Predictor.from_model("efficientvit-seg-b0-cityscapes", ckpt, input_size=SEG_SIZE)(photo)
    model = create_model("efficientvit-seg-b0-cityscapes", ckpt)
    with torch.inference_mode():  # reference: bicubic resize to the input size, stride-8 logits → bicubic → argmax
        logits = model(resized_input(photo, SEG_SIZE))
        assert logits.shape[-2:] == (SEG_SIZE[0] // 8, SEG_SIZE[1] // 8)
        ref = F.interpolate(logits, size=(400, 600), mode="bicubic", align_corners=False)[0].argmax(0).numpy()
    assert onnx.label_map.shape == torch_result.label_map.shape == (400, 600)
    assert (torch_result.label_map == ref).all()
    assert (onnx.label_map == ref).mean() >= 0.999
    assert len(np.unique(ref)) > 1
    d = onnx.to_dict()
    assert (decode_png(d["label_map"]["data"]) == onnx.label_map).all()
    assert sum(c["pixels"] for c in d["classes"]) == 400 * 600
    assert d["classes"][0]["label"] == class_names("cityscapes")[d["classes"][0]["index"]]
    colors = np.asarray(onnx.colorize())
    y, x = 200, 300
    assert tuple(colors[y, x]) == tuple(CITYSCAPES_PALETTE[onnx.label_map[y, x]])
    overlay = onnx.overlay(Image.fromarray(photo))
    assert overlay.size == (600, 400)
    assert not np.array_equal(np.asarray(overlay), photo)


def test_palettes():
    assert CITYSCAPES_PALETTE.shape == (19, 3)
    assert tuple(CITYSCAPES_PALETTE[0]) == (128, 64, 128) and tuple(CITYSCAPES_PALETTE[18]) == (119, 11, 32)
    ade = ade20k_palette()
    assert ade.shape == (150, 3) and len({tuple(c) for c in ade}) == 150
    assert (ade == ade20k_palette()).all()


def test_label_map_in_class_chunks_equals_full_argmax():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((150, 16, 32)).astype(np.float32)
    logits[7] = logits[9]  # exact ties go to the lower class id, as argmax
    ref = F.interpolate(torch.from_numpy(logits)[None], size=(123, 257), mode="bicubic", align_corners=False)
    ref = ref[0].argmax(0).numpy()
    for max_elements in (2**25, 123 * 257 * 7, 1):
        out = label_map(logits, (123, 257), max_elements)
        assert out.dtype == np.uint8 and (out == ref).all()


def test_banded_resize_equals_the_dense_bicubic_product():
    rng = np.random.default_rng(1)
    for size_in, size_out in ((16, 128), (64, 512), (16, 123), (40, 17), (7, 7)):
        x = torch.from_numpy(rng.standard_normal((size_in, 37)).astype(np.float32))
        dense = bicubic_matrix(size_in, size_out) @ x
        assert torch.allclose(resize_rows(x, size_out), dense, rtol=1e-6, atol=1e-6)
    logits = rng.standard_normal((19, 16, 32)).astype(np.float32)  # stride 8, as the seg heads give it
    ref = F.interpolate(torch.from_numpy(logits)[None], size=(128, 256), mode="bicubic", align_corners=False)
    assert (label_map(logits, (128, 256)) == ref[0].argmax(0).numpy()).all()


class StubSamEngine(Engine):
    """Encoder: embedding filled with the image's mean; decoder: mask logits = that value (records calls)."""

    def __init__(self, max_batch: int, static_batch: int | None = None) -> None:
        self.max_batch, self.static_batch, self.calls = max_batch, static_batch, []

    def run(self, role, feeds):
        self.calls.append((role, {k: v.shape for k, v in feeds.items()}))
        if role == "encoder":
            means = feeds["input_image"].mean(axis=(1, 2, 3)).astype(np.float32)
            return {"image_embeddings": np.broadcast_to(means[:, None, None, None], (len(means), 256, 64, 64))}
        value = float(feeds["image_embeddings"].mean())
        return {"masks": np.full((1, 4, 256, 256), value, np.float32), "iou_predictions": np.full((1, 4), value)}


@pytest.mark.parametrize("max_batch,static,encoder_batches", [(4, None, [4, 2]), (4, 4, [4, 4])])
def test_sam_batches_images_through_the_encoder_and_prompts_each(max_batch, static, encoder_batches):
    engine = StubSamEngine(max_batch, static)
    predictor = Predictor(engine, "efficientvit-sam-l0")
    shades = [10, 250, 10, 250, 250, 10]
    images = [np.full((40, 60, 3), v, np.uint8) for v in shades]
    results = predictor(images, points=[[30, 20]], box=[0, 0, 60, 40], multimask=False)
    assert [c[1]["input_image"][0] for c in engine.calls if c[0] == "encoder"] == encoder_batches
    decoder_calls = [c[1] for c in engine.calls if c[0] == "decoder"]
    assert len(decoder_calls) == 6 and all(c["image_embeddings"] == (1, 256, 64, 64) for c in decoder_calls)
    assert all(c["point_coords"] == (1, 3, 2) for c in decoder_calls)  # the point + two box corners
    for shade, r in zip(shades, results):  # each image got its own embedding back
        assert r.masks.shape == (1, 40, 60) and r.masks.all() == (shade == 250)
    assert results[0].scores[0] < results[1].scores[0]


def test_rle_roundtrip():
    rng = np.random.default_rng(0)
    for mask in (rng.random((37, 53)) > 0.5, np.ones((4, 5), bool), np.zeros((3, 3), bool)):
        rle = rle_encode(mask)
        assert sum(rle["counts"]) == mask.size and (rle_decode(rle) == mask).all()


# -- SAM -----------------------------------------------------------------------------------------------------
def _frame(h: int, w: int) -> tuple[int, int]:
    s = 1024 / max(h, w)
    return int(h * s + 0.5), int(w * s + 0.5)


def sam_reference(sam, embedding, size, points=None, labels=None, box=None, multimask=True):
    """The stock predictor (docs/architecture.md §8), written out: prompts → 1024 frame, masks → original size."""
    h, w = size
    fh, fw = _frame(h, w)
    scale = np.array([fw / w, fh / h])
    pc = torch.as_tensor(np.asarray(points, float) * scale, dtype=torch.float32)[None] if points is not None else None
    pl = torch.as_tensor(labels, dtype=torch.int)[None] if points is not None else None
    bx = torch.as_tensor((np.asarray(box, float).reshape(2, 2) * scale).reshape(1, 4), dtype=torch.float32) \
        if box is not None else None
    emb = torch.as_tensor(embedding)
    with torch.inference_mode():
        low, iou = sam.predict_masks(emb, pc, pl, bx, multimask_output=multimask)
        m = F.interpolate(low, (1024, 1024), mode="bilinear", align_corners=False)[..., :fh, :fw]
        m = F.interpolate(m, (h, w), mode="bilinear", align_corners=False)
    return (m[0] > 0).numpy(), iou[0].numpy(), low[0].numpy()


@pytest.fixture(scope="module")
def sam_case():
    photo = sample_photo("coffee")
    sam = create_model("efficientvit-sam-l0")
    with torch.inference_mode():
        embedding = sam.image_encoder(sam_input(photo, 512)).numpy()
    onnx, pt = sam_onnx_predictor(), Predictor.from_model("efficientvit-sam-l0")
    return {"photo": photo, "sam": sam, "embedding": embedding, "onnx": onnx, "image": sam_coffee_image(),
            "torch": pt, "torch_image": pt.set_image(photo)}


POINT_PROMPTS = [([[300, 200]], [1]), ([[300, 200], [120, 90], [500, 350]], [1, 0, 1])]


@pytest.mark.slow
@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("points,labels", POINT_PROMPTS)
def test_sam_point_prompts_match_the_pytorch_predictor(sam_case, points, labels, multimask):
    photo, sam = sam_case["photo"], sam_case["sam"]
    emb_rel = np.abs(sam_case["image"].embedding - sam_case["embedding"]).max() / np.abs(sam_case["embedding"]).max()
    assert emb_rel < 1e-4
    ref_masks, ref_iou, ref_low = sam_reference(sam, sam_case["embedding"], photo.shape[:2], points, labels,
                                                multimask=multimask)
    onnx = sam_case["onnx"].predict_masks(points, labels, multimask=multimask, image=sam_case["image"])
    assert onnx.masks.shape == (3 if multimask else 1, 400, 600) and onnx.masks.dtype == bool
    assert np.abs(onnx.low_res_logits - ref_low).max() <= 1e-4 * np.abs(ref_low).max()
    np.testing.assert_allclose(onnx.scores, ref_iou, atol=1e-4)
    assert (onnx.masks == ref_masks).mean() >= 0.9995
    assert 0 < onnx.masks[onnx.best].sum() < onnx.masks[0].size
    # the PyTorch-backed Predictor is the stock predictor exactly
    assert np.array_equal(sam_case["torch_image"].embedding, sam_case["embedding"])
    pt = sam_case["torch"].predict_masks(points, labels, multimask=multimask, image=sam_case["torch_image"])
    assert (pt.masks == ref_masks).all() and np.array_equal(pt.scores, ref_iou)


@pytest.mark.parametrize("multimask", [True, False])
def test_sam_box_prompts_match_the_pytorch_predictor(sam_case, multimask):
    """Box only and points + box, through PyTorch and through the ONNX decoder (corners as labels 2, 3; the
    graph omits the padding token for boxes, as the stock prompt encoder does)."""
    sam, size = sam_case["sam"], sam_case["photo"].shape[:2]
    box, point = [100, 80, 450, 330], [[300, 200]]
    ref_masks, ref_iou, ref_low = sam_reference(sam, sam_case["embedding"], size, box=box, multimask=multimask)
    both_masks, both_iou, both_low = sam_reference(sam, sam_case["embedding"], size, point, [1], box, multimask)
    pt = sam_case["torch"].predict_masks(box=box, multimask=multimask, image=sam_case["torch_image"])
    assert (pt.masks == ref_masks).all() and np.array_equal(pt.scores, ref_iou)
    pt_both = sam_case["torch"].predict_masks(point, [1], box, multimask=multimask, image=sam_case["torch_image"])
    assert (pt_both.masks == both_masks).all()

    for (pts, labels), masks, iou, low in (((None, None), ref_masks, ref_iou, ref_low),
                                          ((point, [1]), both_masks, both_iou, both_low)):
        onnx = sam_case["onnx"].predict_masks(pts, labels, box, multimask=multimask, image=sam_case["image"])
        assert np.abs(onnx.low_res_logits - low).max() <= 1e-4 * np.abs(low).max()
        np.testing.assert_allclose(onnx.scores, iou, atol=1e-4)
        assert (onnx.masks == masks).mean() >= 0.9995


@pytest.mark.slow
def test_sam_state_explicit_images_and_one_shot_predict(sam_case):
    onnx = Predictor.from_export(build_sam_export())
    coffee = sam_case["photo"]
    with pytest.raises(EvitError, match="set_image"):
        onnx.predict_masks(points=[[10, 10]])
    astronaut = onnx.set_image(sample_photo("astronaut"))
    a = onnx.predict_masks(points=[[250, 250]])
    b = onnx.predict_masks(points=[[250, 250]], image=sam_case["image"])  # explicit image wins over the current
    assert b.masks.shape[1:] == coffee.shape[:2] and a.masks.shape[1:] == (512, 512)
    assert (onnx.predict_masks(points=[[250, 250]], image=astronaut).masks == a.masks).all()
    one_shot = onnx.predict(coffee, points=[[250, 250]])
    assert (one_shot.masks == b.masks).all() and np.array_equal(one_shot.scores, b.scores)
    with ThreadPoolExecutor(4) as pool:  # concurrent prompts on shared, explicit images
        jobs = [pool.submit(onnx.predict_masks, [[250, 250]], None, None, True, img)
                for img in (astronaut, sam_case["image"]) * 3]
        results = [j.result() for j in jobs]
    for i, r in enumerate(results):
        assert (r.masks == (a if i % 2 == 0 else b).masks).all()
    d = b.to_dict()
    assert d["best"] == b.best and len(d["masks"]) == 3
    assert (rle_decode(d["masks"][1]["rle"]) == b.masks[1]).all()
    assert d["prompt"] == {"points": [[250.0, 250.0]], "point_labels": [1], "box": None}
    onnx.reset_image()
    with pytest.raises(EvitError, match="set_image"):
        onnx.predict_masks(points=[[10, 10]])


@pytest.mark.parametrize("kwargs,message", [
    ({}, "needs a prompt"),
    ({"points": [[1, 2, 3]]}, r"shape \[N, 2\]"),
    ({"points": [[1, 2], [3, 4]], "point_labels": [1]}, "one label per point"),
    ({"points": [[1, 2]], "point_labels": [2]}, "foreground"),
    ({"points": [[1, float("nan")]]}, "finite"),
    ({"points": [[700, 2]]}, "inside the 600x400 image"),
    ({"points": [[-1, 2]]}, "inside"),
    ({"box": [1, 2, 3]}, r"\[x0, y0, x1, y1\]"),
    ({"box": [50, 50, 10, 60]}, "x0 <= x1"),
    ({"points": [[1, 2]] * 65}, "at most 64"),
    ({"points": "abc"}, "numbers"),
    ({"points": [[1, 2]], "multimask": "yes"}, "multimask"),
])
def test_sam_prompt_validation(kwargs, message):
    with pytest.raises(PromptError, match=message):
        parse_prompt((400, 600), **kwargs)


def test_sam_prompt_accepts_single_point_and_box_only():
    p = parse_prompt((400, 600), points=[10, 20])
    assert p.points.shape == (1, 2) and p.labels.tolist() == [1] and p.box is None
    p = parse_prompt((400, 600), box=(0, 0, 600, 400), multimask=False)
    assert p.points.shape == (0, 2) and p.box.tolist() == [0, 0, 600, 400] and not p.multimask


# -- command line, lazy export -------------------------------------------------------------------------------
def test_cli_predict_segmentation_and_sam(seg_export, sam_case, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("chelsea", "coffee"):
        Image.fromarray(sample_photo(name)).save(images / f"{name}.png")
    out = tmp_path / "seg-out"
    assert run_cli(["predict", str(seg_export[0]), str(images), "--output", str(out)]) == 0
    records = json.loads((out / "predictions.json").read_text())
    assert [Path(r["image"]).name for r in records] == ["chelsea.png", "coffee.png"]
    expected = Predictor.from_export(seg_export[0])(images / "coffee.png")
    labels = np.asarray(Image.open(out / "coffee.labels.png"))
    assert (labels == expected.label_map).all()
    assert Image.open(out / "coffee.png").size == (600, 400)
    assert json.loads((out / "coffee.json").read_text())["classes"] == expected.to_dict()["classes"]

    sam_out = tmp_path / "sam-out"
    code = run_cli(["predict", str(build_sam_export()), str(images / "coffee.png"), "-o", str(sam_out),
                    "--points", "300,200", "--points", "120,90,0", "--single-mask"])
    assert code == 0
    record = json.loads((sam_out / "coffee.json").read_text())
    expected = sam_case["onnx"].predict_masks([[300, 200], [120, 90]], [1, 0], multimask=False,
                                              image=sam_case["image"])  # coffee.png holds the same pixels
    assert record["prompt"]["point_labels"] == [1, 0] and len(record["masks"]) == 1
    assert (rle_decode(record["masks"][0]["rle"]) == expected.masks[0]).all()
    assert (sam_out / "coffee.png").is_file()


@pytest.mark.slow
def test_cli_predict_errors(seg_export, tmp_path, capsys):
    assert run_cli(["predict", str(seg_export[0]), str(tmp_path / "missing.png")]) == 2
    assert "image not found" in capsys.readouterr().err
    Image.fromarray(sample_photo("coffee")).save(tmp_path / "c.png")
    assert run_cli(["predict", str(build_sam_export()), str(tmp_path / "c.png"), "-o", str(tmp_path / "o"),
                    "--points", "1,2,3,4"]) == 2
    assert run_cli(["predict", str(build_sam_export()), str(tmp_path / "c.png"), "-o", str(tmp_path / "o"),
                    "--points", "900,20"]) == 2
    assert "inside the 600x400 image" in capsys.readouterr().err
    assert run_cli(["predict", "no-such-model-or-folder", str(tmp_path / "c.png")]) == 2


def test_predictor_is_a_lazy_top_level_export():
    import evit_deploy

    assert evit_deploy.Predictor is Predictor
    code = "import sys, evit_deploy; print('evit_deploy.predict' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
