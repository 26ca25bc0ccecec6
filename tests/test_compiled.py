"""cloud-gpu-compiled: the packaged PyTorch GPU engine. Its build and run need a CUDA GPU (skipped here)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evit_deploy import runtime
from evit_deploy.errors import EvitError
from evit_deploy.export.pipeline import ExportRequest, run_export
from evit_deploy.host import cuda_available

cuda = pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU (none on this host)")


def _light_profile(tmp_path):
    path = tmp_path / "compiled.yaml"
    path.write_text("extends: cloud-gpu-compiled\nvalidation: {photos: [astronaut], noise: 1}\n")
    return str(path)


@pytest.mark.slow
@pytest.mark.skipif(cuda_available(), reason="checks the CPU-host behaviour")
def test_without_gpu_the_fp16_onnx_is_written_and_the_engine_step_is_skipped(tmp_path):
    result = run_export(ExportRequest("efficientvit-b0-r224", _light_profile(tmp_path), imgsz=(128,),
                                      output=str(tmp_path / "out")))
    assert [a["format"] for a in result.manifest.to_dict()["artifacts"]] == ["onnx"]
    assert result.manifest.to_dict()["artifacts"][0]["precision"] == "fp16"
    (reason,) = result.manifest.to_dict()["skipped"]
    assert reason.startswith("torch-compiled skipped") and "no CUDA GPU" in reason


def test_backend_refuses_packages_it_cannot_run(tmp_path):
    pt2 = tmp_path / "model.pt2"
    pt2.write_bytes(b"not a program")
    with pytest.raises(EvitError, match="not a compiled package"):
        runtime.load(pt2)
    sidecar = {"gpu": "NVIDIA Z999", "compute_capability": "42.0", "torch": "0.0", "cuda": "0", "mode": "default",
               "precision": "fp16", "cache": "model.cache", "inputs": [], "outputs": []}
    (tmp_path / "model.pt2.json").write_text(json.dumps(sidecar))
    expected = "built for gpu NVIDIA Z999" if cuda_available() else "runs on a CUDA GPU"
    with pytest.raises(EvitError, match=expected):
        runtime.load(pt2)


@cuda
def test_compiled_engine_on_gpu_matches_pytorch(tmp_path):
    result = run_export(ExportRequest("efficientvit-b0-r224", _light_profile(tmp_path), output=str(tmp_path / "g")))
    formats = {a["format"]: a for a in result.manifest.to_dict()["artifacts"]}
    assert formats["torch-compiled"]["precision"] == "fp16" and not result.manifest.to_dict()["skipped"]
    backend = runtime.load(result.folder / formats["torch-compiled"]["path"])
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    out = backend(x)
    ref = runtime.load(result.folder / formats["onnx"]["path"])(x)
    assert np.isfinite(out).all() and np.abs(out - ref).max() <= 1e-2 * np.abs(ref).max()
