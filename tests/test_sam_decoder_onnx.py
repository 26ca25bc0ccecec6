"""SamOnnxDecoder: parity with the PyTorch SAM predictor and ONNX export (TorchScript and dynamo exporters)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from evit_deploy import create_model
from evit_deploy.nn.sam_onnx_decoder import SamOnnxDecoder, decoder_example_inputs
from evit_deploy.tasks import task_spec

DECODER = task_spec("sam").graph("decoder")  # the decoder graph's I/O names and dynamic axes, as the spec declares
DECODER_INPUT_NAMES, DECODER_OUTPUT_NAMES = DECODER.input_names, DECODER.output_names
DECODER_DYNAMIC_AXES = {name: dict(axes) for name, axes in DECODER.dynamic_axes.items()}


def _randomise_(module: nn.Module, gen: torch.Generator, scale: float = 0.2) -> None:
    """Perturb every parameter / floating buffer so embeddings and tokens are non-trivial."""
    with torch.no_grad():
        for t in list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]:
            t.add_(torch.randn(t.shape, generator=gen) * scale)


@pytest.fixture(scope="module")
def sam() -> nn.Module:
    model = create_model("efficientvit-sam-l0").eval()
    gen = torch.Generator().manual_seed(1234)
    _randomise_(model.prompt_encoder, gen)
    _randomise_(model.mask_decoder, gen)
    return model


def _prompts(p: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    coords = torch.rand((p, n, 2), generator=gen) * 1023.0
    labels = torch.randint(0, 2, (p, n), generator=gen).to(torch.float32)
    labels[:, 0] = 1.0  # at least one foreground point, and a mix of 0/1 for N > 1
    if n > 1:
        labels[:, -1] = 0.0
    return coords, labels


def _embedding(seed: int = 7) -> torch.Tensor:
    return torch.randn((1, 256, 64, 64), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("p", [1, 3])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_matches_pytorch_predictor(sam: nn.Module, p: int, n: int) -> None:
    emb = _embedding()
    coords, labels = _prompts(p, n, seed=10 * p + n)
    with torch.no_grad():
        masks, iou = SamOnnxDecoder(sam)(emb, coords, labels)
    assert masks.shape == (p, 4, 256, 256) and iou.shape == (p, 4)
    ref_multi = sam.predict_masks(emb, coords, labels, multimask_output=True)
    ref_single = sam.predict_masks(emb, coords, labels, multimask_output=False)
    torch.testing.assert_close(masks[:, 1:], ref_multi[0], rtol=0, atol=0)
    torch.testing.assert_close(iou[:, 1:], ref_multi[1], rtol=0, atol=0)
    torch.testing.assert_close(masks[:, 0:1], ref_single[0], rtol=0, atol=0)
    torch.testing.assert_close(iou[:, 0:1], ref_single[1], rtol=0, atol=0)
    assert masks.abs().max() > 1e-3  # non-trivial outputs


def test_int_labels_match_float(sam: nn.Module) -> None:
    emb = _embedding()
    coords, labels = _prompts(2, 3, seed=5)
    dec = SamOnnxDecoder(sam)
    with torch.no_grad():
        a = dec(emb, coords, labels)
        b = dec(emb, coords, labels.to(torch.int64))
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_box_prompts_match_the_stock_box_path(sam: nn.Module) -> None:
    """Labels 2/3 are box corners: no padding token, exactly like ``predict_masks(boxes=...)``, also with points."""
    emb = _embedding()
    boxes = torch.tensor([[100.0, 200.0, 600.0, 700.0], [10.0, 20.0, 1000.0, 900.0]])
    coords, labels = boxes.reshape(2, 2, 2), torch.tensor([[2.0, 3.0], [2.0, 3.0]])
    points, point_labels = torch.tensor([[[300.0, 400.0]], [[50.0, 60.0]]]), torch.tensor([[1.0], [0.0]])
    dec = SamOnnxDecoder(sam)
    with torch.no_grad():
        masks, iou = dec(emb, coords, labels)
        ref_masks, ref_iou = sam.predict_masks(emb, boxes=boxes, multimask_output=True)
        both, _ = dec(emb, torch.cat([points, coords], 1), torch.cat([point_labels, labels], 1))
        ref_both, _ = sam.predict_masks(emb, points, point_labels, boxes=boxes, multimask_output=True)
    # Relative to the output scale: the positional-encoding matmul sees other shapes than the stock path's, so
    # rounding differs by an ulp here and there, which random weights amplify (the padding token would be ~0.4).
    for got, want in ((masks[:, 1:], ref_masks), (iou[:, 1:], ref_iou), (both[:, 1:], ref_both)):
        assert (got - want).abs().max() <= 1e-4 * want.abs().max()


def test_example_inputs_deterministic() -> None:
    a, b = decoder_example_inputs(2, 3), decoder_example_inputs(2, 3)
    assert [tuple(t.shape) for t in a] == [(1, 256, 64, 64), (2, 3, 2), (2, 3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def _export_and_check(sam: nn.Module, path: Path, dynamo: bool) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    dec = SamOnnxDecoder(sam).eval()
    example, dynamic_axes = decoder_example_inputs(), DECODER_DYNAMIC_AXES
    if dynamo:
        # torch.export specialises size-1 example dims (so P >= 2), and torch.onnx's dynamic_axes ->
        # dynamic_shapes conversion pairs entries with inputs positionally, so list every input in order.
        example = decoder_example_inputs(num_prompts=2, num_points=2)
        dynamic_axes = {"image_embeddings": {}, **DECODER_DYNAMIC_AXES}
    start = time.perf_counter()
    torch.onnx.export(
        dec, example, str(path), dynamo=dynamo, opset_version=17,
        input_names=list(DECODER_INPUT_NAMES), output_names=list(DECODER_OUTPUT_NAMES),
        dynamic_axes=dynamic_axes,
    )
    print(f"export (dynamo={dynamo}) took {time.perf_counter() - start:.2f}s")
    opset = next(o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx"))
    # The dynamo exporter emits opset 18 and keeps it when down-conversion to 17 fails (it does in torch 2.13).
    assert opset == 17 if not dynamo else opset in (17, 18)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert list(sess.get_inputs()[1].shape[:2]) == ["prompts", "points"]
    assert [i.name for i in sess.get_inputs()] == list(DECODER_INPUT_NAMES)
    assert [o.name for o in sess.get_outputs()] == list(DECODER_OUTPUT_NAMES)
    emb = _embedding(3)
    box = (torch.tensor([[[100.0, 150.0], [600.0, 700.0]]]), torch.tensor([[2.0, 3.0]]))
    for p, n in [(2, 4), (1, 1), (1, "box")]:
        coords, labels = box if n == "box" else _prompts(p, n, seed=100 + 10 * p + n)
        with torch.no_grad():
            ref = dec(emb, coords, labels)
        out = sess.run(None, {"image_embeddings": emb.numpy(), "point_coords": coords.numpy(),
                              "point_labels": labels.numpy()})
        for got, want in zip(out, ref):
            want = want.numpy()
            assert got.shape == want.shape
            err = float(np.abs(got - want).max()) / max(float(np.abs(want).max()), 1e-6)
            # fp32 rounding that the random weights amplify: 0.95e-4 with PyTorch on 2 threads, 1.004e-4 on 1
            # (another reduction order), so the bound is 2e-4; a wrong graph is off by orders of magnitude
            assert err <= 2e-4, f"relative max abs error {err:.3g} for P={p}, N={n}"
        if n == "box":  # the graph dropped the padding token, as the stock box path does
            with torch.no_grad():
                stock, _ = sam.predict_masks(emb, boxes=box[0].reshape(1, 4), multimask_output=True)
            assert np.abs(out[0][:, 1:] - stock.numpy()).max() <= 1e-4 * np.abs(stock.numpy()).max()


@pytest.mark.slow
def test_onnx_export_torchscript(sam: nn.Module, tmp_path: Path) -> None:
    _export_and_check(sam, tmp_path / "decoder.onnx", dynamo=False)


@pytest.mark.slow
def test_onnx_export_dynamo(sam: nn.Module, tmp_path: Path) -> None:
    if importlib.util.find_spec("onnxscript") is None:
        pytest.skip("onnxscript is not installed (needed by the dynamo exporter)")
    _export_and_check(sam, tmp_path / "decoder_dynamo.onnx", dynamo=True)
