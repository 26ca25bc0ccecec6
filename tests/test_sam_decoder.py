"""Parity tests: evit_deploy.nn.sam_decoder vs. the stock ``segment_anything`` (v1.0) modules."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from evit_deploy.nn import sam_decoder as ours

EMBED = 256
GRID = (64, 64)
IMG = (1024, 1024)


@pytest.fixture(scope="module")
def stock() -> Iterator[dict[str, types.ModuleType]]:
    """Import stock SAM modeling modules without running ``segment_anything/__init__.py`` (torchvision)."""
    try:
        spec = importlib.util.find_spec("segment_anything")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("segment_anything (stock SAM reference) is not installed")
    saved = {
        k: v for k, v in sys.modules.items() if k == "segment_anything" or k.startswith("segment_anything.")
    }
    for k in saved:
        del sys.modules[k]
    pkg = types.ModuleType("segment_anything")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["segment_anything"] = pkg
    try:
        mods = {
            name: importlib.import_module(f"segment_anything.modeling.{name}")
            for name in ("prompt_encoder", "mask_decoder", "transformer")
        }
        yield mods
    finally:
        for k in [k for k in sys.modules if k == "segment_anything" or k.startswith("segment_anything.")]:
            del sys.modules[k]
        sys.modules.update(saved)


def _randomise(module: nn.Module, seed: int) -> None:
    """Give every parameter and floating buffer (incl. norm affines) non-trivial random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]:
            t.copy_(torch.randn(t.shape, generator=gen) * 0.5)


def _set_layernorm_eps(module: nn.Module, eps: float) -> None:
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = eps


def _assert_same_keys(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa.keys()) == list(sb.keys())
    assert [tuple(v.shape) for v in sa.values()] == [tuple(v.shape) for v in sb.values()]


def _assert_equal(x: torch.Tensor, y: torch.Tensor) -> None:
    assert x.shape == y.shape and x.dtype == y.dtype
    assert torch.equal(x, y), f"max abs diff {(x - y).abs().max().item()}"


@pytest.fixture(scope="module")
def prompt_pair(stock: dict[str, types.ModuleType]) -> tuple[nn.Module, nn.Module]:
    ref = (
        stock["prompt_encoder"]
        .PromptEncoder(embed_dim=EMBED, image_embedding_size=GRID, input_image_size=IMG, mask_in_chans=16)
        .eval()
    )
    _randomise(ref, seed=0)
    mine = ours.build_sam_prompt_encoder().eval()
    mine.load_state_dict(ref.state_dict(), strict=True)
    return ref, mine


@pytest.fixture(scope="module")
def decoder_pair(stock: dict[str, types.ModuleType]) -> tuple[nn.Module, nn.Module]:
    ref = (
        stock["mask_decoder"]
        .MaskDecoder(
            transformer_dim=EMBED,
            transformer=stock["transformer"].TwoWayTransformer(
                depth=2, embedding_dim=EMBED, num_heads=8, mlp_dim=2048
            ),
            num_multimask_outputs=3,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        )
        .eval()
    )
    _randomise(ref, seed=1)
    mine = ours.build_sam_mask_decoder().eval()
    mine.load_state_dict(ref.state_dict(), strict=True)
    return ref, mine


def test_state_dict_layout(stock: dict[str, types.ModuleType]) -> None:
    ref_pe = stock["prompt_encoder"].PromptEncoder(
        embed_dim=EMBED, image_embedding_size=GRID, input_image_size=IMG, mask_in_chans=16
    )
    _assert_same_keys(ours.build_sam_prompt_encoder(), ref_pe)
    ref_md = stock["mask_decoder"].MaskDecoder(
        transformer_dim=EMBED,
        transformer=stock["transformer"].TwoWayTransformer(
            depth=2, embedding_dim=EMBED, num_heads=8, mlp_dim=2048
        ),
    )
    _assert_same_keys(ours.build_sam_mask_decoder(), ref_md)


def test_layernorm2d_not_nn_layernorm() -> None:
    pe = ours.build_sam_prompt_encoder()
    md = ours.build_sam_mask_decoder()
    for m in (pe.mask_downscaling[1], pe.mask_downscaling[4], md.output_upscaling[1]):
        assert isinstance(m, ours.SamLayerNorm2d) and not isinstance(m, nn.LayerNorm)
        assert m.eps == 1e-6
    _set_layernorm_eps(md, 1e-3)  # zoo-style overwrite must not touch the channel norm
    assert md.output_upscaling[1].eps == 1e-6
    norms = [m for m in md.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 * 4 + 1 and all(m.eps == 1e-3 for m in norms)


def _prompt_cases() -> dict[
    str, tuple[tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None, torch.Tensor | None]
]:
    gen = torch.Generator().manual_seed(2)
    coords = torch.rand(2, 3, 2, generator=gen) * 1023
    labels = torch.tensor([[1, 0, -1], [1, 1, 0]])
    boxes = torch.tensor([[10.0, 20.0, 500.5, 700.25], [0.0, 0.0, 1023.0, 1023.0]])
    masks = torch.randn(2, 1, 4 * GRID[0], 4 * GRID[1], generator=gen)
    return {
        "points_only": ((coords, labels), None, None),
        "points_box": ((coords, labels), boxes, None),
        "box_only": (None, boxes, None),
        "mask_only": (None, None, masks),
        "points_box_mask": ((coords, labels), boxes, masks),
        "nothing": (None, None, None),
    }


@pytest.mark.parametrize("case", list(_prompt_cases()))
def test_prompt_encoder_parity(prompt_pair: tuple[nn.Module, nn.Module], case: str) -> None:
    ref, mine = prompt_pair
    points, boxes, masks = _prompt_cases()[case]
    with torch.no_grad():
        ref_sparse, ref_dense = ref(points=points, boxes=boxes, masks=masks)
        my_sparse, my_dense = mine(points=points, boxes=boxes, masks=masks)
        _assert_equal(my_sparse, ref_sparse)
        _assert_equal(my_dense, ref_dense)
        _assert_equal(mine.get_dense_pe(), ref.get_dense_pe())
    expected_tokens = {"points_only": 4, "points_box": 5, "box_only": 2, "points_box_mask": 5}.get(case, 0)
    assert my_sparse.shape == (1 if case == "nothing" else 2, expected_tokens, EMBED)


@pytest.mark.parametrize("eps", [None, 1e-6])
@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("n_prompts", [1, 3])
def test_mask_decoder_parity(
    decoder_pair: tuple[nn.Module, nn.Module],
    prompt_pair: tuple[nn.Module, nn.Module],
    n_prompts: int,
    multimask: bool,
    eps: float | None,
) -> None:
    ref, mine = decoder_pair
    pe_ref, pe_mine = prompt_pair
    if eps is not None:
        _set_layernorm_eps(ref, eps)
        _set_layernorm_eps(mine, eps)
    try:
        gen = torch.Generator().manual_seed(3 + n_prompts)
        image_emb = torch.randn(1, EMBED, *GRID, generator=gen)
        coords = torch.rand(n_prompts, 2, 2, generator=gen) * 1023
        labels = torch.ones(n_prompts, 2, dtype=torch.int64)
        with torch.no_grad():
            sparse, dense = pe_ref(points=(coords, labels), boxes=None, masks=None)
            image_pe = pe_ref.get_dense_pe()
            ref_masks, ref_iou = ref(image_emb, image_pe, sparse, dense, multimask)
            my_masks, my_iou = mine(image_emb, pe_mine.get_dense_pe(), sparse, dense, multimask)
        n_out = 3 if multimask else 1
        assert my_masks.shape == (n_prompts, n_out, 4 * GRID[0], 4 * GRID[1])
        assert my_iou.shape == (n_prompts, n_out)
        _assert_equal(my_masks, ref_masks)
        _assert_equal(my_iou, ref_iou)
    finally:
        _set_layernorm_eps(ref, 1e-5)
        _set_layernorm_eps(mine, 1e-5)
