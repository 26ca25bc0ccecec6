"""TFLite export of the segmentation and SAM tasks through mobile-cpu-tflite (apart from test_tflite.py so that
the test workers share the long exports evenly)."""

from __future__ import annotations

from importlib.util import find_spec

import numpy as np
import pytest
import torch

if find_spec("litert_torch") is None or find_spec("ai_edge_litert") is None or find_spec("ai_edge_quantizer") is None:
    pytest.skip("the [tflite] extra (litert-torch, ai-edge-litert, ai-edge-quantizer) is not installed",
                allow_module_level=True)

from evit_deploy import create_model, runtime  # noqa: E402
from evit_deploy.export.pipeline import ExportRequest, run_export  # noqa: E402
from evit_deploy.processing import resized_input  # noqa: E402
from evit_deploy.runtime.litert_backend import op_details  # noqa: E402
from evit_deploy.samples import sample_photo  # noqa: E402

from .test_tflite import TARGET, interpreter, rel_err  # noqa: E402


def test_segmentation_keeps_bicubic_as_conv(tmp_path):
    name = "efficientvit-seg-b0-cityscapes"
    result = run_export(ExportRequest(name, TARGET, imgsz=(128, 256), output=str(tmp_path / "seg")))
    manifest = result.manifest.to_dict()
    (artifact,) = manifest["artifacts"]
    assert artifact["outputs"] == [{"name": "logits", "shape": [1, 19, 16, 32], "dtype": "float32"}]
    (report,) = manifest["validation"]["artifacts"]
    assert report["agreement"]["metric"] == "per-pixel argmax agreement" and report["agreement"]["value"] >= 0.999
    assert "bicubic-as-conv" in manifest["transforms"] and manifest["validation"]["transform_effect"] is None
    it = interpreter(result.folder / "model.tflite")
    assert not [op for op in op_details(it) if op["op_name"].startswith("RESIZE")]  # bicubic kept, as conv
    model = create_model(name)  # untransformed, real bicubic interpolation
    x = resized_input(sample_photo("coffee"), (128, 256))
    with torch.inference_mode():
        ref = model(x).numpy()
    out = it.get_signature_runner()(input=x.numpy())["logits"]
    assert rel_err(out, ref) <= 1e-3 and (out.argmax(1) == ref.argmax(1)).mean() >= 0.999


def test_sam_encoder_to_tflite_decoder_stays_onnx(tmp_path):
    light = tmp_path / "light.yaml"
    light.write_text(f"extends: {TARGET}\nvalidation: {{photos: [astronaut], noise: 0}}\n")
    result = run_export(ExportRequest("efficientvit-sam-l0", str(light), output=str(tmp_path / "sam")))
    arts = {a["role"]: a for a in result.manifest.to_dict()["artifacts"]}
    assert arts["encoder"]["format"] == "tflite" and arts["encoder"]["path"] == "encoder.tflite"
    assert arts["encoder"]["inputs"] == [{"name": "input_image", "shape": [1, 3, 512, 512], "dtype": "float32"}]
    assert arts["encoder"]["outputs"][0]["name"] == "image_embeddings"
    assert arts["decoder"]["format"] == "onnx" and arts["decoder"]["precision"] == "fp32"
    assert any("stays onnx" in n for n in arts["decoder"]["notes"])
    assert all(r["passed"] for r in result.manifest.to_dict()["validation"]["artifacts"])
    encoder = runtime.load(result.folder, role="encoder")
    decoder = runtime.load(result.folder, role="decoder")
    assert type(encoder).__name__ == "LiteRtBackend" and decoder.path.suffix == ".onnx"
    emb = encoder(np.zeros((1, 3, 512, 512), np.float32))
    assert emb.shape == (1, 256, 64, 64) and np.isfinite(emb).all()
    out = decoder(emb, np.full((1, 2, 2), 300.0, np.float32), np.ones((1, 2), np.float32))
    assert out["masks"].shape[-2:] == (256, 256) and np.isfinite(out["masks"]).all()
