"""The zoo reproduces the official checkpoints' state_dict contract, sizes and norm settings."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import evit_deploy
from evit_deploy.errors import EvitError, UnknownModelError
from evit_deploy.nn.layers import LayerNorm2d
from evit_deploy.zoo import all_cards, get_card, list_models, meta_model
from evit_deploy.zoo.stats import ModelStats, count_macs, count_params, model_stats, shipped_counts

MANIFESTS = Path(__file__).parent / "data" / "manifests"
ALL = sorted(p.stem for p in MANIFESTS.glob("*.json"))

EXPECTED_NAMES = (
    ["efficientvit-b0-r224"]
    + [f"efficientvit-b{v}-r{r}" for v in (1, 2, 3) for r in (224, 256, 288)]
    + ["efficientvit-l1-r224"]
    + [f"efficientvit-l{v}-r{r}" for v in (2, 3) for r in (224, 256, 288, 320, 384)]
    + [f"efficientvit-seg-{v}-cityscapes" for v in ("b0", "b1", "b2", "b3", "l1", "l2")]
    + [f"efficientvit-seg-{v}-ade20k" for v in ("b1", "b2", "b3", "l1", "l2")]
    + [f"efficientvit-sam-{v}" for v in ("l0", "l1", "l2", "xl0", "xl1")]
)


def manifest(name: str) -> dict:
    return json.loads((MANIFESTS / f"{name}.json").read_text())


def test_zoo_has_exactly_the_official_names():
    assert len(ALL) == 37
    assert sorted(list_models()) == sorted(EXPECTED_NAMES) == ALL
    assert len(list_models("cls")) == 21
    assert len(list_models("seg")) == 11
    assert len(list_models("sam")) == 5
    assert evit_deploy.list_models("sam") == [n for n in list_models() if n.startswith("efficientvit-sam-")]


@pytest.mark.parametrize("name", ALL)
def test_state_dict_matches_official_manifest(name):
    ours = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in meta_model(name).state_dict().items()]
    ref = [tuple(entry) for entry in manifest(name)["state_dict"]]
    assert [tuple(e) for e in ours] == ref  # keys, order, shapes and dtypes


def _rounding_tolerance(value: float) -> float:
    """One unit of the last digit the published figure was written with (9.1 → 0.1, 24 → 1)."""
    text = repr(value)
    decimals = len(text.split(".")[1]) if "." in text and not text.endswith(".0") else 0
    return 10.0**-decimals


@pytest.mark.parametrize("name", ALL)
def test_params_and_macs_match_reference_and_published(name, tmp_path, monkeypatch):
    ref = manifest(name)
    card = get_card(name)
    params = count_params(name)
    if card.task == "sam":
        encoder_params = sum(p.numel() for p in meta_model(name).image_encoder.parameters())
        assert encoder_params == ref["image_encoder_params"]
    else:
        assert params == ref["num_params"]
    macs = count_macs(name)
    assert round(macs / 1e9, 4) == pytest.approx(ref["macs_G_measured"], abs=1e-4)
    # what ships with the cards (models/counts.json) is this fresh count: `models` and the demo read it
    assert shipped_counts()[name] == {"input_size": list(card.input_size), "params": params, "macs": macs}
    assert model_stats(name) == ModelStats(params, macs, tuple(card.input_size))
    published = card.published
    if "params_M" in published:
        assert abs(params / 1e6 - published["params_M"]) < _rounding_tolerance(published["params_M"])
    if "macs_G" in published:
        assert abs(macs / 1e9 - published["macs_G"]) < _rounding_tolerance(published["macs_G"])


@pytest.mark.parametrize("name", ALL)
def test_norm_eps_and_activations(name):
    ref = manifest(name)
    model = meta_model(name)
    encoder = model.image_encoder if get_card(name).task == "sam" else model
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
            assert module.eps == ref["norm_eps"], module
    acts = Counter(
        "GELU(approximate=tanh)" if isinstance(m, nn.GELU) and m.approximate == "tanh" else type(m).__name__
        for m in encoder.modules()
        if isinstance(m, (nn.ReLU, nn.Hardswish, nn.GELU, nn.ReLU6, nn.SiLU))
    )
    assert dict(acts) == ref["activations"]
    eps = {m.eps for m in encoder.modules() if hasattr(m, "kernel_func")}
    assert eps == set(ref["attention_eps"])


def test_sam_keeps_stock_decoder_layernorm2d_eps():
    model = meta_model("efficientvit-sam-l0")
    assert isinstance(model.image_encoder.norm, LayerNorm2d) and model.image_encoder.norm.eps == 1e-6
    stock_ln2d = [m for m in model.mask_decoder.modules() if type(m).__name__ == "SamLayerNorm2d"]
    assert stock_ln2d and all(m.eps == 1e-6 for m in stock_ln2d)
    transformer_ln = [m for m in model.mask_decoder.transformer.modules() if isinstance(m, nn.LayerNorm)]
    assert len(transformer_ln) == 9 and all(m.eps == 1e-6 for m in transformer_ln)


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError, match="did you mean .*efficientvit-b1-r224"):
        get_card("efficientvit-b1")
    with pytest.raises(UnknownModelError, match="evit-deploy models"):
        get_card("resnet50")
    with pytest.raises(EvitError, match="unknown task"):
        list_models("detection")


def test_rounding_tolerance_helper():
    assert _rounding_tolerance(9.1) == pytest.approx(0.1)
    assert _rounding_tolerance(24) == 1
    assert _rounding_tolerance(117.0) == 1
    assert math.isclose(_rounding_tolerance(0.52), 0.01)


def test_cards_are_declarative_and_complete():
    for name in ALL:
        card = get_card(name)
        assert card.checkpoint.endswith(".pt") and card.checkpoint.startswith("efficientvit_")
        assert card.input_size == tuple(manifest(name)["input_shape"][2:])
        assert card.norm_eps == manifest(name)["norm_eps"]
        if card.task != "sam":
            assert card.num_classes == manifest(name)["num_classes"]


def test_meta_model_is_cheap_and_on_meta():
    model = meta_model("efficientvit-l3-r384")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert torch.device("meta") == next(model.parameters()).device


def test_every_card_has_a_preprocess_block_that_processing_implements():
    from evit_deploy.processing import RESIZE_RULES, preprocess
    from evit_deploy.samples import sample_photo

    assert set(RESIZE_RULES) == {"shorter-side-crop", "exact", "long-side-pad"}
    rules = {name: (c.task, c.preprocess.resize, c.preprocess.interpolation) for name, c in all_cards().items()}
    assert {r for r in rules.values()} == {("cls", "shorter-side-crop", "bicubic"), ("seg", "exact", "bicubic"),
                                           ("sam", "long-side-pad", "bilinear")}
    crops = {name: all_cards()[name].preprocess.crop_ratio for name in rules if rules[name][0] == "cls"}
    assert {n for n, c in crops.items() if c == 0.95} == {"efficientvit-b0-r224", *(f"efficientvit-b1-r{r}"
                                                                                    for r in (224, 256, 288))}
    assert all(c == 1.0 for n, c in crops.items() if n.startswith(("efficientvit-b2", "efficientvit-l")))
    sam = all_cards()["efficientvit-sam-l0"].preprocess  # SAM's (123.675, 116.28, 103.53) / 255 etc.
    assert np.allclose(sam.mean, np.array([123.675, 116.28, 103.53]) / 255, atol=1e-12)
    assert np.allclose(sam.std, np.array([58.395, 57.12, 57.375]) / 255, atol=1e-12)
    photo = sample_photo("rocket")  # 427x640: the SAM encoder input is padded at the bottom
    x = preprocess(photo, all_cards()["efficientvit-sam-l0"])
    assert x.shape == (1, 3, 512, 512) and float(x[0, :, -1].abs().max()) == 0.0
    assert preprocess(photo, all_cards()["efficientvit-b1-r224"], (224, 320)).shape == (1, 3, 224, 320)


def test_bad_preprocess_blocks_are_refused():
    from evit_deploy.processing import Preprocess

    for bad in ({"resize": "squash"}, {"resize": "exact", "crop_ratio": 0}, {"resize": "exact", "colour": 1},
                {"resize": "exact", "interpolation": "lanczos"}):
        with pytest.raises(EvitError, match="preprocess"):
            Preprocess.from_dict(bad, "card x")
