"""The SAM side of the comparisons: segment-anything's image encoder built without torchvision, exported as an
``encoder`` graph with EfficientViT-SAM's I/O names, validated by the gate, measured by bench; and the ONNX
exporter's handling of graphs over 2 GB (SAM-ViT-H's 2.5 GB of weights).

A tiny recipe (2 blocks, width 64) goes through the same builder as SAM-ViT-B/L/H, so the test stays fast; the
real recipes are checked against the paper's counts in test_compare.py."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from evit_deploy import runtime
from evit_deploy.bench.harness import bench_export
from evit_deploy.compare.builders import SAM_MODELING, sam_modeling
from evit_deploy.compare.cards import CompetitorCard, competitors, paper_tables
from evit_deploy.compare.subjects import competitor_subject
from evit_deploy.export.exporters.onnx import gather_external_data
from evit_deploy.export.pipeline import ExportRequest, run_export

from .helpers import FAST_ARGS, fast_bench, run_cli
from .shared_exports import export_root

TINY = {**competitors()["sam-vit-b"].recipe, "embed_dim": 64, "depth": 2, "num_heads": 2, "global_attn_indexes": [1]}


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory):
    """A tiny SAM encoder exported for the light cpu-ort profile at 128x128: (folder, card)."""
    card = CompetitorCard("sam-tiny", "sam", "segment-anything", TINY, {})
    out = tmp_path_factory.mktemp("sam") / "sam-tiny"
    subject = competitor_subject(card, paper_tables()["sam"])
    result = run_export(ExportRequest(subject.name, str(export_root() / "light.yaml"), imgsz=(128,),
                                      output=str(out)), subject=subject)
    return result.folder, card


def test_sam_encoder_builds_without_the_package_init():
    """segment_anything's __init__ imports torchvision: the builder imports its modeling package privately."""
    modeling = sam_modeling()
    assert modeling.__name__ in (SAM_MODELING, "segment_anything.modeling")
    assert hasattr(modeling, "ImageEncoderViT")


def test_sam_competitor_exports_validates_and_measures(tiny_sam, monkeypatch, tmp_path):
    folder, card = tiny_sam
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["model"] == "sam-tiny-sam" and manifest["task"] == "sam"
    (artifact,) = manifest["artifacts"]
    assert artifact["role"] == "encoder" and artifact["inputs"][0]["name"] == "input_image"
    assert artifact["outputs"][0]["name"] == "image_embeddings" and artifact["outputs"][0]["shape"][1:] == [256, 8, 8]
    (gate,) = manifest["validation"]["artifacts"]
    assert gate["passed"] and gate["agreement"]["metric"] == "min embedding cosine"

    # bench and validate find the competitor from its manifest's name (its card goes to the PyTorch worker).
    monkeypatch.setitem(competitors(), "sam-tiny", CompetitorCard("sam-tiny", "sam", "segment-anything", TINY,
                                                                  {"sam": competitors()["sam-vit-b"].rows["sam"]}))
    # torch.compile's row on a model small enough to compile in seconds: compiled in its worker before timing
    report = bench_export(folder, fast_bench(baselines=["eager", "compile"]))
    assert report.measured == "image encoder only" and report.model == "sam-tiny-sam"
    assert [(r.format, r.status in ("ok", "unsettled")) for r in report.rows] == [
        ("pytorch-eager", True), ("pytorch-compile", True), ("onnx", True)]
    compiled = report.row(format="pytorch-compile")
    assert compiled.settings["compile_s"] > 0 and compiled.ratio_to_eager > 0
    assert "compile_s" in report.to_json() and "torch.compile(backend='inductor'" in report.to_json()
    assert all(r.model == "sam-tiny-sam" for r in report.rows)
    assert run_cli(["validate", str(folder)]) == 0
    assert run_cli(["bench", "run", str(folder), *FAST_ARGS, "-o", str(tmp_path / "rep")]) == 0


def test_graphs_over_2gb_keep_their_weights_in_one_data_file(tmp_path):
    """torch.onnx.export writes a graph over 2 GB with one external file per tensor; the exporter gathers them into
    <graph>.data (here forced on a small graph), which ONNX Runtime runs."""
    w1, w2 = (np.random.default_rng(i).standard_normal((32, 32)).astype(np.float32) for i in range(2))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    path = tmp_path / "model.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path),
                    save_as_external_data=True, all_tensors_to_one_file=False, size_threshold=0)
    written = sorted(p for p in tmp_path.iterdir() if p != path)
    assert len(written) == 2
    note = gather_external_data(path, written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.data"] and "model.onnx.data" in note
    x = np.ones((1, 32), np.float32)
    out = runtime.open_file(path).run({"x": x})
    assert np.allclose(np.asarray(out["y"]), x @ w1 @ w2, atol=1e-5)
