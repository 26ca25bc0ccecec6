"""Forward behaviour of the built modules: shapes, attention numerics, checkpoints through create_model."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from evit_deploy import CheckpointError, RandomWeightsWarning, create_model
from evit_deploy.checkpoint import save_state_dict
from evit_deploy.nn.blocks import LiteMLA
from evit_deploy.processing import classification_input
from evit_deploy.samples import sample_photo

from .helpers import randomize_


def reference_attention(qkv: torch.Tensor, dim: int, eps: float = 1e-15) -> torch.Tensor:
    """The attention function written independently, in float64: Σ_m v_m (k_m·q_n) / (Σ_m k_m·q_n + eps)."""
    b, c, h, w = qkv.shape
    x = qkv.double().reshape(b, c // (3 * dim), 3 * dim, h * w)
    q, k, v = x[:, :, :dim].relu(), x[:, :, dim : 2 * dim].relu(), x[:, :, 2 * dim :]
    scores = torch.einsum("bhdm,bhdn->bhmn", k, q)  # [keys m, queries n]
    out = torch.einsum("bhdm,bhmn->bhdn", v, scores) / (scores.sum(dim=2, keepdim=True) + eps)
    return out.reshape(b, -1, h, w)


@pytest.mark.parametrize("hw", [(4, 4), (5, 5), (8, 12)])
def test_both_attention_paths_compute_the_reference_function(hw):
    torch.manual_seed(0)
    mla = LiteMLA(64, 64, dim=16)
    qkv = torch.randn(2, 3 * 64 * 2, *hw)
    ref = reference_attention(qkv, 16)
    torch.testing.assert_close(mla.relu_linear_att(qkv).double(), ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mla.relu_quadratic_att(qkv).double(), ref, rtol=1e-4, atol=1e-5)


def test_branch_rule_linear_iff_tokens_exceed_dim(monkeypatch):
    mla = LiteMLA(64, 64, dim=16).eval()
    calls = []
    monkeypatch.setattr(mla, "relu_linear_att", lambda t: calls.append("linear") or t[:, : t.shape[1] // 3])
    monkeypatch.setattr(mla, "relu_quadratic_att", lambda t: calls.append("quad") or t[:, : t.shape[1] // 3])
    mla.proj = torch.nn.Identity()
    for hw, expected in [((4, 4), "quad"), ((4, 5), "linear"), ((2, 8), "quad"), ((1, 17), "linear")]:
        mla(torch.randn(1, 64, *hw))
        assert calls.pop() == expected, hw


def test_zero_query_head_gives_finite_output_equal_to_reference():
    torch.manual_seed(1)
    mla = LiteMLA(64, 64, dim=16).eval()
    with torch.no_grad():
        mla.qkv.conv.weight[0:16] = 0  # head 0's query rows: ReLU(q) = 0 for every token
    x = torch.randn(1, 64, 8, 8)
    qkv = mla.qkv(x)
    qkv = torch.cat([qkv] + [op(qkv) for op in mla.aggreg], dim=1)
    out = mla.relu_linear_att(qkv)
    assert torch.isfinite(out).all()
    assert torch.equal(out[:, :16], torch.zeros_like(out[:, :16]))  # 0 / (0 + eps) = 0
    torch.testing.assert_close(out.double(), reference_attention(qkv, 16), rtol=1e-4, atol=1e-5)


def test_classifier_forward_shape_and_quadratic_branch():
    model = create_model("efficientvit-b0-r224")
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 224, 224)).shape == (2, 1000)
        out = model(torch.randn(1, 3, 64, 64))  # stage4 is 2x2 = 4 tokens ≤ 16: quadratic path
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


@pytest.mark.parametrize("name,hw,classes", [
    ("efficientvit-seg-b0-cityscapes", (256, 512), 19),
    ("efficientvit-seg-b1-ade20k", (160, 224), 150),
    ("efficientvit-seg-l1-cityscapes", (128, 256), 19),
])
def test_segmentation_logits_are_at_stride_8(name, hw, classes):
    model = create_model(name)
    with torch.inference_mode():
        out = model(torch.randn(2, 3, *hw))
    assert out.shape == (2, classes, hw[0] // 8, hw[1] // 8)


@pytest.mark.slow
def test_sam_parts_and_shapes():
    model = create_model("efficientvit-sam-l0")
    with torch.inference_mode():
        emb = model.image_encoder(torch.randn(1, 3, 512, 512))
        assert emb.shape == (1, 256, 64, 64)
        coords = torch.tensor([[[500.0, 375.0], [200.0, 100.0]]])
        labels = torch.tensor([[1, 0]])
        masks, iou = model.predict_masks(emb, coords, labels, multimask_output=True)
    assert masks.shape == (1, 3, 256, 256) and iou.shape == (1, 3)
    assert hasattr(model, "prompt_encoder") and hasattr(model, "mask_decoder")


def test_random_weights_are_deterministic_and_warn():
    with pytest.warns(RandomWeightsWarning, match="efficientvit_b0_r224.pt"):
        a = create_model("efficientvit-b0-r224")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = create_model("efficientvit-b0-r224")
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not a.training and next(a.parameters()).dtype == torch.float32


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["plain", "wrapped", "module-prefix", "safetensors"])
def test_official_format_checkpoint_round_trip(tmp_path, fmt):
    source = randomize_(create_model("efficientvit-b0-r224"), seed=3)
    state = source.state_dict()
    path = tmp_path / ("ckpt.safetensors" if fmt == "safetensors" else "ckpt.pt")
    if fmt == "plain":
        torch.save(state, path)
    elif fmt == "wrapped":
        torch.save({"state_dict": state, "epoch": 300}, path)
    elif fmt == "module-prefix":
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    else:
        save_state_dict(state, path)
    loaded = create_model("efficientvit-b0-r224", weights=path)
    x = classification_input(sample_photo("astronaut"), 224)
    with torch.inference_mode():
        assert torch.equal(loaded(x), source(x))
        assert not torch.equal(loaded(x), create_model("efficientvit-b0-r224")(x))


@pytest.mark.slow
def test_checkpoint_errors_through_create_model(tmp_path):
    good = tmp_path / "b0.pt"
    torch.save(create_model("efficientvit-b0-r224").state_dict(), good)
    with pytest.raises(CheckpointError, match="not found"):
        create_model("efficientvit-b0-r224", weights=tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        create_model("efficientvit-b0-r224", weights=truncated)
    with pytest.raises(CheckpointError, match="look like efficientvit-b0-r224") as info:
        create_model("efficientvit-seg-b0-cityscapes", weights=good)
    assert "\n" not in str(info.value) and "missing" in str(info.value)


@pytest.mark.parametrize("scale,hw", [(2, (1, 1)), (2, (7, 5)), (3, (4, 6)), (4, (16, 32))])
def test_bicubic_as_conv_equals_interpolate(scale, hw):
    from evit_deploy.nn.layers import bicubic_upsample_as_conv

    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(scale))
    ref = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    torch.testing.assert_close(bicubic_upsample_as_conv(x, scale), ref, rtol=0, atol=2e-5)


@pytest.mark.parametrize(
    "name,hw", [("efficientvit-seg-b0-cityscapes", (128, 256)), ("efficientvit-sam-l0", (512, 512))]
)
@pytest.mark.slow
def test_exact_export_transforms_keep_the_function(name, hw):
    from evit_deploy.export.transforms import apply_transforms

    model = randomize_(create_model(name), seed=4)
    transformed = copy.deepcopy(model)
    changed = apply_transforms(transformed, ["attention-deploy", "bicubic-as-conv"], "fp32")
    assert changed["bicubic-as-conv"].startswith(("2 ", "3 "))  # seg: 2 resizes, SAM neck: 3
    x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref, out = model(x), transformed(x)
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()
