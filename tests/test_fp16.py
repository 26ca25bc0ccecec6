"""fp16 that does not break: the mixed-precision deployment form and its ONNX, run with ONNX Runtime on CPU."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from evit_deploy import create_model
from evit_deploy.export.exporters.onnx import torch_to_onnx
from evit_deploy.export.pipeline import ExportRequest, run_export
from evit_deploy.export.precision import fold_batchnorm_, mixed_fp16
from evit_deploy.export.transforms import apply_transforms
from evit_deploy.nn.blocks import LiteMLA
from evit_deploy.tasks import ExportUnit

from .helpers import randomize_, zero_query_heads_


def _onnx(module, x, path: Path) -> ort.InferenceSession:
    unit = ExportUnit("model", module, ("input",), ("output",), (x,))
    torch_to_onnx(unit, path, 17, "torchscript")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_batchnorm_folding_is_exact():
    model = randomize_(create_model("efficientvit-b0-r224"), seed=6)
    folded = copy.deepcopy(model)
    assert fold_batchnorm_(folded) == 26  # every BatchNorm of B0 sits in a ConvLayer
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        ref, out = model(x), folded(x)
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


class _NaiveFp16Attention(LiteMLA):
    """The attention computed entirely in fp16 (what an engine does if it ignores the fp32 islands)."""

    def relu_linear_att(self, qkv: torch.Tensor) -> torch.Tensor:
        b, _, h, w = qkv.shape
        q, k, v = self._split(qkv)
        v = torch.nn.functional.pad(v, (0, 0, 0, 1), mode="constant", value=1)
        out = torch.matmul(torch.matmul(v, k.transpose(-1, -2)), q)
        return torch.reshape(out[:, :, :-1] / self._normaliser(out[:, :, -1:]), (b, -1, h, w))


def test_fp32_islands_keep_large_attention_sums_finite(tmp_path):
    """4096 tokens with q, k, v ≈ 20: Σ_m k_m·q_n ≈ 2.6e7 overflows fp16 (65504) unless computed in fp32."""
    torch.manual_seed(0)
    mla = LiteMLA(32, 32, dim=16).eval()
    with torch.no_grad():
        mla.qkv.conv.weight.copy_(torch.rand(96, 32, 1, 1) * 2.5)  # q, k, v ≈ 20 for inputs in [0, 1]
    apply_transforms(mla, ["attention-deploy"], "fp16")
    x = torch.rand(1, 32, 64, 64)
    with torch.inference_mode():
        ref = mla(x).numpy()
    mixed, _ = mixed_fp16(mla)
    out = _onnx(mixed, x, tmp_path / "mixed.onnx").run(None, {"input": x.numpy()})[0]
    assert np.isfinite(ref).all() and np.isfinite(out).all()
    assert np.abs(out - ref).max() <= 1e-2 * np.abs(ref).max()

    with torch.inference_mode():
        assert torch.isfinite(mixed(x)).all()
        naive = _NaiveFp16Attention(32, 32, dim=16).eval()
        naive.load_state_dict(mla.state_dict())
        apply_transforms(naive, ["attention-deploy"], "fp16")
        # Computed with fp16 storage (PyTorch; ONNX Runtime's CPU EP would silently upcast fp16 MatMuls):
        assert not torch.isfinite(mixed_fp16(naive)[0](x)).all()  # the trap the islands avoid


def test_mixed_onnx_declares_islands_with_casts(tmp_path):
    model = create_model("efficientvit-b0-r224")
    apply_transforms(model, ["attention-deploy", "bicubic-as-conv"], "fp16")
    mixed, note = mixed_fp16(model)
    x = torch.randn(1, 3, 128, 128)
    _onnx(mixed, x, tmp_path / "m.onnx")
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(tmp_path / "m.onnx"))).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    types |= {i.name: i.data_type for i in graph.initializer}
    fp16, fp32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    assert types[graph.input[0].name] == fp32 and types[graph.output[0].name] == fp32
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs and all(types.get(n.input[1]) == fp16 for n in convs)  # the bulk is fp16
    divs = [n for n in graph.node if n.op_type == "Div"]
    assert divs and all(types.get(n.input[0]) == fp32 for n in divs)  # attention division in fp32
    matmuls = [n for n in graph.node if n.op_type == "MatMul" and "context_module" in n.name]
    assert matmuls and all(types.get(n.input[0]) == fp32 for n in matmuls)  # attention sums in fp32
    assert sum(n.op_type == "Cast" for n in graph.node) >= 2 * len(divs)
    assert "BatchNorms folded" in note and not any(n.op_type == "BatchNormalization" for n in graph.node)


@pytest.mark.parametrize("name,hw", [
    ("efficientvit-seg-b0-cityscapes", (512, 1024)),  # 2k tokens at stride 16
    ("efficientvit-b1-r224", (224, 224)),
])
@pytest.mark.slow
def test_fp16_export_is_finite_and_within_1e2(tmp_path, name, hw):
    model = zero_query_heads_(randomize_(create_model(name), seed=8))
    ckpt = tmp_path / "w.pt"
    torch.save(model.state_dict(), ckpt)
    profile = tmp_path / "gpu-onnx.yaml"
    profile.write_text("extends: cloud-gpu-trt\nformats: [onnx]\nvalidation: {photos: [astronaut], noise: 1}\n")
    result = run_export(ExportRequest(name, str(profile), str(ckpt), imgsz=hw, precision="fp16",
                                      output=str(tmp_path / "out")))
    (artifact,) = result.manifest.to_dict()["artifacts"]
    assert artifact["precision"] == "fp16" and artifact["inputs"][0]["dtype"] == "float32"
    session = ort.InferenceSession(str(result.folder / "model.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ref = model(x).numpy()
    out = session.run(None, {"input": x.numpy()})[0]
    assert np.isfinite(out).all()
    assert np.abs(out - ref).max() <= 1e-2 * np.abs(ref).max()
