"""int8 as explicit quantization: Q/DQ ONNX for the CPU and TensorRT targets, calibrated on --calib, finite with a
pruned attention head, the per-layer sensitivity table, the accuracy-aware fallback and its failure, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from PIL import Image

from evit_deploy import create_model
from evit_deploy.errors import EvitError
from evit_deploy.export.pipeline import ExportRequest, run_export
from evit_deploy.metrics import row_cosines
from evit_deploy.processing import preprocess
from evit_deploy.samples import sample_photo
from evit_deploy.zoo import get_card

from .fakes.quantizer import FakeQuantizer
from .helpers import randomize_, run_cli, zero_query_heads_

B0 = "efficientvit-b0-r224"
SIZE = (128, 128)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """B0 with random weights and one attention head whose queries are all zero (its normaliser is exactly 0)."""
    path = tmp_path_factory.mktemp("ckpt") / "b0.pt"
    torch.save({"state_dict": zero_query_heads_(randomize_(create_model(B0), seed=7)).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> Path:
    from skimage import data

    folder = tmp_path_factory.mktemp("calib")
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        Image.fromarray(sample_photo(name)).save(folder / f"{name}.png")
    Image.fromarray(data.camera()).save(folder / "camera.png")  # grayscale: decoded to RGB like any input
    return folder


@pytest.fixture(scope="module")
def cpu_int8(tmp_path_factory, ckpt, calib):
    out = tmp_path_factory.mktemp("int8") / "out"
    return run_export(ExportRequest(B0, "cpu-ort", str(ckpt), imgsz=SIZE, precision="int8", output=str(out),
                                    calib=str(calib), sensitivity=True))


@pytest.mark.slow
def test_cpu_int8_is_a_qdq_onnx_that_runs_alone_and_stays_close(cpu_int8, ckpt, tmp_path):
    folder = cpu_int8.folder
    graph = onnx.load(str(folder / "model.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") > 20 and ops.count("DequantizeLinear") > 20
    assert "HardSwish" not in ops  # rewritten so that it runs in int8
    points = {numpy_helper.to_array(i).dtype for i in graph.initializer if i.name.endswith("_zero_point")}
    assert np.dtype(np.uint8) in points  # asymmetric uint8 activations (the CPU scheme)
    fp32 = run_export(ExportRequest(B0, "cpu-ort", str(ckpt), imgsz=SIZE, output=str(tmp_path / "fp32"))).folder
    size = (folder / "model.onnx").stat().st_size / (fp32 / "model.onnx").stat().st_size
    assert size <= 0.30
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    card = get_card(B0)
    x = np.concatenate([preprocess(sample_photo(n), card, SIZE).numpy() for n in ("astronaut", "coffee")])
    out = session.run(None, {"input": x})[0]
    with torch.inference_mode():
        ref = create_model(B0, ckpt)(torch.from_numpy(x)).numpy()  # the official numerics, zero-query heads
    assert np.isfinite(out).all() and row_cosines(ref, out).min() >= 0.95
    manifest = json.loads((folder / "export.json").read_text())
    quant = manifest["quantization"]["model"]
    assert quant["scheme"] == "Q/DQ ONNX, cpu scheme" and "5 images from" in quant["calibration"]["images"]
    assert manifest["validation"]["artifacts"][0]["passed"] and manifest["precision"] == "int8"


def test_sensitivity_table_ranks_every_layer(cpu_int8):
    folder = cpu_int8.folder
    table = json.loads((folder / "sensitivity-model.json").read_text())
    layers = table["layers"]
    assert table["probe"] == "alone" and len(layers) > 40
    assert {entry["op"] for entry in layers} <= {"Conv", "MatMul", "Gemm"}
    cosines = [entry["min_cosine"] for entry in layers]
    assert cosines == sorted(cosines) and all(0 < c <= 1.0 + 1e-9 for c in cosines)
    assert "| 1 |" in (folder / "sensitivity-model.md").read_text()
    assert {"sensitivity-model.json", "sensitivity-model.md"} <= set(cpu_int8.manifest.files)


def _float_convs(path: Path) -> int:
    """Convolutions whose weight is not a DequantizeLinear output (left float)."""
    graph = onnx.load(str(path)).graph
    producers = {o: n for n in graph.node for o in n.output}
    return sum(1 for n in graph.node if n.op_type == "Conv" and (producers.get(n.input[1]) is None
                                                                or producers[n.input[1]].op_type != "DequantizeLinear"))


@pytest.mark.slow
def test_fallback_keeps_the_most_sensitive_layers_float_until_within_the_bound(ckpt, calib, tmp_path):
    seen = []

    def drop(candidate: Path) -> float:  # a stand-in metric: 2 points per int8 conv beyond the first 40
        graph = onnx.load(str(candidate)).graph
        convs = sum(1 for n in graph.node if n.op_type == "Conv")
        floats = _float_convs(candidate)
        seen.append(floats)
        return 2.0 * max(0, convs - floats - 40)

    request = ExportRequest(B0, "cpu-ort", str(ckpt), imgsz=SIZE, precision="int8", output=str(tmp_path / "fb"),
                            calib=str(calib), max_drop=1.0, accuracy_drop=drop)
    result = run_export(request)
    fb = result.manifest.quantization["model"]["fallback"]
    counts = [t["float_layers"] for t in fb["tried"]]
    assert counts == sorted(counts) and counts[0] == 0 and fb["drop"] <= 1.0
    assert all(t["drop"] > 1.0 for t in fb["tried"][:-1])
    ranking = [e["layer"] for e in json.loads((result.folder / "sensitivity-model.json").read_text())["layers"]]
    kept = [e["layer"] for e in fb["float_layers"]]
    assert kept == ranking[: len(kept)] and all("sensitivity rank" in e["why"] for e in fb["float_layers"])
    assert fb["measured"] == "measured with eval on the --eval dataset"
    graph = onnx.load(str(result.folder / "model.onnx")).graph
    producers = {o: n for n in graph.node for o in n.output}
    for node in (n for n in graph.node if n.name in set(kept)):  # float weights and float activations
        assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for i in node.input)


def test_unreachable_bound_says_how_close_it_got(tmp_path):
    from evit_deploy.export.quantize.search import LayerSensitivity, fallback

    quantizer = FakeQuantizer(11)
    ranking = [LayerSensitivity(name, op, 0.9 + i / 100, 0.1) for i, (name, op) in enumerate(quantizer.layers)]
    with pytest.raises(EvitError, match=r"cannot reach --max-drop 0.5 \(test\): the best was 1.00 points with 11 of "
                                        r"11 layers float \(most sensitive first: conv0, conv1, conv2, \.\.\.\)"):
        fallback(quantizer, ranking, lambda p: 12 - int(p.read_text()), 0.5, tmp_path / "c.onnx", "test")
    assert [len(b) for b in quantizer.built] == [0, 1, 2, 4, 8, 11]
    result = fallback(quantizer, ranking, lambda p: 12 - int(p.read_text()), 4.0, tmp_path / "c.onnx", "test")
    assert result.float_layers == [f"conv{i}" for i in range(8)] and result.drop == 4.0


@pytest.mark.slow
def test_mobile_ort_int8_keeps_its_fusions_in_the_ort_file(ckpt, calib, tmp_path):
    result = run_export(ExportRequest(B0, "mobile-cpu-ort", str(ckpt), imgsz=SIZE, precision="int8",
                                      output=str(tmp_path / "mob"), calib=str(calib)))
    arts = {a.format: a for a in result.manifest.artifacts}
    assert arts["onnx"].precision == arts["ort"].precision == "int8"
    assert any("ORT_ENABLE_EXTENDED" in n for n in arts["ort"].notes)
    assert all(r.passed for r in result.reports)


def test_bad_int8_input_is_one_line_and_writes_nothing(tmp_path, calib, capsys):
    def fails(args: list[str]) -> str:
        assert run_cli(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)
        return err[-1]

    base = ["export", B0, "-p", "int8", "--imgsz", "128", "-o", str(tmp_path / "x")]
    assert "not found" in fails([*base, "--calib", str(tmp_path / "missing")])
    (tmp_path / "empty").mkdir()
    assert "is empty" in fails([*base, "--calib", str(tmp_path / "empty")])
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("not an image")
    assert "no image files" in fails([*base, "--calib", str(tmp_path / "text")])
    (tmp_path / "two").mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (64, 64)).save(tmp_path / "two" / f"{name}.png")
    assert "needs at least 4" in fails([*base, "--calib", str(tmp_path / "two")])
    assert "does not offer precision 'int8'" in fails(["export", B0, "-t", "cloud-gpu-compiled", "-p", "int8"])
    assert "applies to --precision int8" in fails(["export", B0, "--sensitivity", "-o", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()
