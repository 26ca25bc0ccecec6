"""Export through profiles: validated ONNX artifacts, export.json, atomic writes, NaN safety, bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from evit_deploy import create_model, runtime
from evit_deploy.artifacts import read_manifest
from evit_deploy.errors import EvitError
from evit_deploy.export.pipeline import ExportRequest, ValidationFailed, run_export, validate_export
from evit_deploy.export.profiles import ProfileError, load_profile
from evit_deploy.processing import classification_input
from evit_deploy.samples import sample_photo

from .helpers import randomize_, run_cli, zero_query_heads_


def save_ckpt(model: torch.nn.Module, path: Path) -> Path:
    torch.save({"state_dict": model.state_dict()}, path)
    return path


def ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def write_profile(tmp_path: Path, text: str, name: str = "custom.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_cls_export_matches_pytorch_independently(cls_export):
    folder, ckpt = cls_export  # the session's shared B0 export (tests/shared_exports.py)
    onnx_path = folder / "model.onnx"
    photos = [classification_input(sample_photo(n), 224) for n in ("astronaut", "coffee")]
    x = torch.cat([*photos, torch.randn(1, 3, 224, 224)])
    with torch.inference_mode():
        ref = create_model("efficientvit-b0-r224", weights=ckpt)(x).numpy()
    out = ort_run(onnx_path, x.numpy())  # dynamic batch: 3, exported with 1
    assert np.isfinite(out).all() and np.isfinite(ref).all()
    assert rel_err(out, ref) <= 1e-4
    assert (out.argmax(1) == ref.argmax(1)).all()


def test_manifest_describes_the_export(cls_export):
    folder, ckpt = cls_export
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["model"] == "efficientvit-b0-r224" and manifest["target"] == "light"
    assert manifest["profile"]["name"] == "light" and manifest["profile"]["batch"]["dynamic"] is True
    assert {"torch", "onnx", "onnxruntime", "evit-deploy"} <= set(manifest["versions"])
    (artifact,) = manifest["artifacts"]
    assert artifact["format"] == "onnx" and artifact["role"] == "model" and artifact["layout"] == "NCHW"
    assert artifact["inputs"] == [{"name": "input", "shape": ["batch", 3, 224, 224], "dtype": "float32"}]
    assert artifact["outputs"][0]["name"] == "logits" and artifact["precision"] == "fp32"
    import hashlib

    assert artifact["sha256"] == hashlib.sha256((folder / artifact["path"]).read_bytes()).hexdigest()
    (report,) = manifest["validation"]["artifacts"]
    assert report["passed"] and report["outputs"]["logits"]["max_rel"] <= 1e-4
    assert report["agreement"]["value"] == 1.0 and any(s.startswith("photo:") for s in report["samples"])
    assert manifest["weights"]["file"] == ckpt.name and manifest["preprocessing"]["embedded"] is False
    assert not list(folder.parent.glob(f".{folder.name}.tmp-*"))


def test_runtime_load_and_validate_command(cls_export, capsys):
    folder, ckpt = cls_export
    backend = runtime.load(folder)
    assert backend.inputs[0].name == "input" and backend.inputs[0].shape[0] == "batch"
    out = backend(np.zeros((2, 3, 224, 224), np.float32))
    assert isinstance(out, np.ndarray) and out.shape == (2, 1000)
    assert run_cli(["validate", str(folder), "--weights", str(ckpt)]) == 0
    assert "pass" in capsys.readouterr().out
    with pytest.raises(EvitError, match="pass it with --weights"):
        validate_export(folder)


@pytest.mark.slow
def test_attention_with_zero_normaliser_survives_both_exporters(tmp_path):
    """The naive form loses +1e-15 under the dynamo exporter (NaN); the deploy form must not."""
    pytest.importorskip("onnxscript")
    model = zero_query_heads_(randomize_(create_model("efficientvit-b0-r224"), seed=2))
    ckpt = save_ckpt(model, tmp_path / "zq.pt")
    x = classification_input(sample_photo("chelsea"), 224)
    with torch.inference_mode():
        ref = model(x).numpy()
    assert np.isfinite(ref).all()
    for exporter in ("torchscript", "dynamo"):
        profile = write_profile(tmp_path, f"extends: cpu-ort\nonnx: {{exporter: {exporter}}}\n", f"{exporter}.yaml")
        result = run_export(ExportRequest("efficientvit-b0-r224", str(profile), str(ckpt),
                                          output=str(tmp_path / exporter)))
        out = ort_run(result.folder / "model.onnx", x.numpy())
        assert np.isfinite(out).all() and rel_err(out, ref) <= 1e-4, exporter


@pytest.mark.slow
def test_validation_gate_rejects_nan_and_leaves_nothing(tmp_path):
    """Without the deploy transform the dynamo exporter's graph gives NaN: the gate must refuse it."""
    pytest.importorskip("onnxscript")
    ckpt = save_ckpt(zero_query_heads_(randomize_(create_model("efficientvit-b0-r224"), seed=2)), tmp_path / "z.pt")
    naive = write_profile(tmp_path, "extends: cpu-ort\ntransforms: []\nonnx: {exporter: dynamo}\n")
    out = tmp_path / "naive"
    with pytest.raises(ValidationFailed, match="non-finite"):
        run_export(ExportRequest("efficientvit-b0-r224", str(naive), str(ckpt), output=str(out)))
    assert not out.exists() and not list(tmp_path.glob(".naive.tmp-*"))


@pytest.mark.slow
def test_rerun_replaces_and_failed_run_keeps_previous(tmp_path):
    out = tmp_path / "exp"
    run_export(ExportRequest("efficientvit-b0-r224", "cpu-ort", output=str(out)))
    (out / "model.onnx").write_bytes(b"an artifact of the previous export, changed")  # still the export's file
    run_export(ExportRequest("efficientvit-b0-r224", "cpu-ort", output=str(out)))  # a previous export: replaced
    assert (out / "export.json").is_file() and read_manifest(out).artifacts[0].path == "model.onnx"
    (out / "notes.txt").write_text("the user's")
    with pytest.raises(EvitError, match="refusing to replace"):
        run_export(ExportRequest("efficientvit-b0-r224", "cpu-ort", output=str(out)))
    assert (out / "notes.txt").read_text() == "the user's"
    (out / "notes.txt").unlink()
    strict = write_profile(tmp_path, "extends: cpu-ort\nvalidation: {tolerances: {fp32: {max_rel: 1.0e-30}}}\n")
    before = (out / "export.json").read_text()
    with pytest.raises(ValidationFailed, match="max relative error"):
        run_export(ExportRequest("efficientvit-b0-r224", str(strict), output=str(out)))
    assert (out / "export.json").read_text() == before
    assert not list(tmp_path.glob(".exp.tmp-*"))


@pytest.mark.slow
def test_segmentation_export_and_bilinear_transform_effect(tmp_path):
    profile = write_profile(tmp_path, "extends: cpu-ort\ntransforms: [attention-deploy, bicubic-to-bilinear]\n")
    result = run_export(ExportRequest("efficientvit-seg-b0-cityscapes", str(profile), imgsz=(128, 256),
                                      output=str(tmp_path / "seg")))
    manifest = result.manifest.to_dict()
    assert manifest["artifacts"][0]["outputs"][0]["shape"] == ["batch", 19, 16, 32]
    (report,) = manifest["validation"]["artifacts"]
    assert report["agreement"]["metric"] == "per-pixel argmax agreement" and report["agreement"]["value"] > 0.999
    (effect,) = manifest["validation"]["transform_effect"]
    assert effect["outputs"]["logits"]["max_abs"] > 0  # bilinear really differs from bicubic, and it is reported
    assert "bicubic-to-bilinear" in manifest["transforms"]


@pytest.mark.slow
def test_mobile_profile_writes_ort_format_and_int8(tmp_path):
    result = run_export(ExportRequest("efficientvit-b0-r224", "mobile-cpu-ort", precision="int8-dynamic",
                                      output=str(tmp_path / "mob")))
    formats = {a["format"]: a for a in result.manifest.to_dict()["artifacts"]}
    assert set(formats) == {"onnx", "ort"} and formats["ort"]["precision"] == "int8-dynamic"
    assert formats["onnx"]["inputs"][0]["shape"] == [1, 3, 224, 224]  # static
    backend = runtime.load(result.folder)
    assert backend.path.suffix == ".ort"
    assert all(r["passed"] for r in result.manifest.to_dict()["validation"]["artifacts"])


def test_sam_exports_encoder_and_decoder_with_official_names(sam_export):
    arts = {a.role: a.to_dict() for a in read_manifest(sam_export).artifacts}
    assert [i["name"] for i in arts["encoder"]["inputs"]] == ["input_image"]
    assert [o["name"] for o in arts["encoder"]["outputs"]] == ["image_embeddings"]
    assert arts["encoder"]["outputs"][0]["shape"][1:] == [256, 64, 64]
    assert [i["name"] for i in arts["decoder"]["inputs"]] == ["image_embeddings", "point_coords", "point_labels"]
    assert [o["name"] for o in arts["decoder"]["outputs"]] == ["masks", "iou_predictions"]
    decoder = runtime.load(sam_export, role="decoder")
    emb = runtime.load(sam_export, role="encoder")(np.zeros((1, 3, 512, 512), np.float32))
    for n_points in (1, 4):  # dynamic prompt count
        out = decoder(emb, np.full((1, n_points, 2), 300.0, np.float32), np.ones((1, n_points), np.float32))
        assert out["masks"].shape[-2:] == (256, 256) and np.isfinite(out["masks"]).all()


def test_bad_inputs_are_clean_errors(tmp_path):
    with pytest.raises(ProfileError, match="valid targets: .*cpu-ort"):
        load_profile("gpu-magic")
    bad_yaml = write_profile(tmp_path, "extends: cpu-ort\nonnx: {opset: 17\n", "bad.yaml")
    with pytest.raises(ProfileError, match=r"bad.yaml:\d+:\d+: invalid YAML"):
        load_profile(str(bad_yaml))
    unknown = write_profile(tmp_path, "extends: cpu-ort\nbatchsize: 4\n", "unknown.yaml")
    with pytest.raises(ProfileError, match=r"unknown key 'batchsize' \(.*unknown.yaml:2\)"):
        load_profile(str(unknown))
    with pytest.raises(EvitError, match="multiples of 32"):
        run_export(ExportRequest("efficientvit-b0-r224", imgsz=(200, 224), output=str(tmp_path / "x")))
    with pytest.raises(EvitError, match="does not offer precision 'fp16'"):
        run_export(ExportRequest("efficientvit-b0-r224", precision="fp16", output=str(tmp_path / "x")))
    coreml = write_profile(tmp_path, "extends: cpu-ort\nformats: [coreml]\n", "coreml.yaml")
    with pytest.raises(EvitError, match="unknown artifact format 'coreml'"):
        run_export(ExportRequest("efficientvit-b0-r224", str(coreml), output=str(tmp_path / "x")))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(EvitError, match="is a file, not a folder"):
        run_export(ExportRequest("efficientvit-b0-r224", output=str(blocker / "sub" / "out")))
    assert not (tmp_path / "x").exists()
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(EvitError, match="not a valid model"):
        runtime.load(corrupt)


def test_validate_detects_corrupted_artifact(cls_export, tmp_path, capsys):
    import shutil

    folder, ckpt = cls_export
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    (copy / "model.onnx").write_bytes(bytes(data))
    code = run_cli(["validate", str(copy), "--weights", str(ckpt)])
    err = capsys.readouterr().err
    assert code == 2 and "corrupt" in err and err.count("\n") == 1


@pytest.mark.slow
def test_cli_profiles_and_export(tmp_path, capsys):
    assert run_cli(["profiles", "show", "mobile-cpu-ort", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["formats"] == ["onnx", "ort"] and shown["onnx"]["opset"] == 17  # inherited from cpu-ort
    code = run_cli(["export", "efficientvit-b0-r224", "--target", "nope", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "valid targets" in err and "Traceback" not in err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = run_cli(["export", "efficientvit-b0-r224", "--imgsz", "160", "-o", str(tmp_path / "o")])
    assert code == 0 and (tmp_path / "o" / "export.json").is_file()
    assert json.loads((tmp_path / "o" / "export.json").read_text())["input_size"] == [160, 160]


def test_validation_records_the_providers_really_used(tmp_path):
    request = ExportRequest("efficientvit-b0-r224", "mobile-cpu-ort", imgsz=(96,), output=str(tmp_path / "m"))
    result = run_export(request)
    profile_providers = result.manifest.to_dict()["profile"]["runtime"]["providers"]
    assert profile_providers[0] == "XnnpackExecutionProvider"
    for report in result.manifest.to_dict()["validation"]["artifacts"]:
        used = report["runtime"]["providers"]
        assert report["runtime"]["backend"] == "onnxruntime" and set(used) <= set(ort.get_available_providers())
