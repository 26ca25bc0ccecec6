"""Regression tests of the second hostile pass over export folders (issue 25): an attacker who can write the folder
and recomputes every sha256 in export.json consistently.

1. every external-data location of an ONNX graph must be a declared, hash-checked companion (our check, before
   any runtime sees the file); 2. NaN/Inf outputs are an error for that input in predict, serve and eval;
3. export.json is checked against the model card and the graphs it describes; 4. manifest edge cases."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import external_data_helper, helper, numpy_helper
from PIL import Image

from evit_deploy import runtime
from evit_deploy.artifacts import MANIFEST, ManifestError, read_manifest
from evit_deploy.errors import NonFiniteOutput
from evit_deploy.eval.runner import EvalSettings, evaluate
from evit_deploy.predict import Predictor
from evit_deploy.samples import sample_photo
from evit_deploy.serve import create_app
from evit_deploy.triton import write_repository
from evit_deploy.zoo.labels import class_ids

from .test_export_folder import copy_export, edit_manifest, every_reader, one_line_exit_2


def rehash(folder: Path) -> None:
    """What the attacker does after changing a file: record its new sha256 (and its companions') in export.json."""
    data = json.loads((folder / MANIFEST).read_text())
    for entry in data["artifacts"]:
        entry["sha256"] = hashlib.sha256((folder / entry["path"]).read_bytes()).hexdigest()
        for name in entry.get("companions", {}):
            entry["companions"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / MANIFEST).write_text(json.dumps(data))


def with_external_data(folder: Path, location: str) -> None:
    """Move model.onnx's larger initializers to external data at ``location`` (as written in the graph)."""
    path = folder / "model.onnx"
    model = onnx.load(str(path))
    external_data_helper.convert_model_to_external_data(model, all_tensors_to_one_file=True, location="w2.bin",
                                                        size_threshold=4096)
    onnx.save(model, str(path))  # writes w2.bin beside the graph
    if location != "w2.bin":
        model = onnx.load(str(path), load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save(model, str(path))
    rehash(folder)


# -- 1. external data ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_undeclared_external_data_is_refused_before_any_runtime_opens_the_graph(tmp_path, capsys, monkeypatch):
    folder = copy_export(tmp_path)
    with_external_data(folder, "w2.bin")
    assert (folder / "w2.bin").stat().st_size > 1_000_000
    opened = []
    monkeypatch.setattr("onnxruntime.InferenceSession", lambda *a, **k: opened.append(a))
    with pytest.raises(ManifestError, match="w2.bin, which export.json does not declare"):
        runtime.load(folder)
    with pytest.raises(ManifestError, match="does not declare"):
        runtime.load(folder, verify=False)  # the reference check is not the hash check: it always runs
    assert not opened
    monkeypatch.undo()
    for reader in every_reader(folder):
        with pytest.raises(ManifestError, match="w2.bin"):
            reader()
    assert "w2.bin" in one_line_exit_2(capsys, ["predict", str(folder), str(tmp_path / "none.png")])


@pytest.mark.parametrize("location", ["/tmp/evit-w2.bin", "../w2.bin", "sub/../w2.bin", "./w2.bin"])
def test_external_data_outside_or_not_normalised_is_refused_by_our_check(tmp_path, location):
    folder = copy_export(tmp_path)
    with_external_data(folder, location)
    with pytest.raises(ManifestError, match="not a relative path inside the export folder"):
        runtime.load(folder)


def test_declared_external_data_loads_and_travels_to_triton(tmp_path):
    """The declared companion (model.onnx.data) is the only external file a graph may name; Triton gets it."""
    folder = copy_export(tmp_path)
    model = onnx.load(str(folder / "model.onnx"))
    onnx.save(model, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.onnx.data", size_threshold=4096)
    data = json.loads((folder / MANIFEST).read_text())
    data["artifacts"][0]["companions"] = {"model.onnx.data": ""}
    (folder / MANIFEST).write_text(json.dumps(data))
    rehash(folder)
    x = np.zeros((1, 3, 224, 224), np.float32)
    assert np.isfinite(runtime.load(folder)(x)).all()
    graph = next(m for m in write_repository(folder, tmp_path / "repo") if m.platform == "onnxruntime_onnx")
    assert sorted(p.name for p in (graph.folder / "1").iterdir()) == ["model.onnx", "model.onnx.data"]


# -- 2. NaN/Inf outputs -------------------------------------------------------------------------------------------
def make_nan_graph(folder: Path) -> None:
    """model.onnx's logits replaced by sqrt(-|logits| - 1): NaN everywhere, same names and shapes."""
    path = folder / "model.onnx"
    model = onnx.load(str(path))
    producer = next(n for n in model.graph.node if "logits" in n.output)
    producer.output[list(producer.output).index("logits")] = "logits_raw"
    model.graph.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), "one_nan"))
    model.graph.node.extend([helper.make_node("Abs", ["logits_raw"], ["nan_a"]),
                             helper.make_node("Neg", ["nan_a"], ["nan_n"]),
                             helper.make_node("Sub", ["nan_n", "one_nan"], ["nan_s"]),
                             helper.make_node("Sqrt", ["nan_s"], ["logits"])])
    onnx.save(model, str(path))
    rehash(folder)


@pytest.fixture(scope="module")
def nan_export(tmp_path_factory) -> Path:
    folder = copy_export(tmp_path_factory.mktemp("nan"))
    make_nan_graph(folder)
    return folder


def test_nan_outputs_are_an_error_for_the_input_in_predict(nan_export, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(sample_photo("coffee")).save(photo)
    predictor = Predictor.from_export(nan_export)
    with pytest.raises(NonFiniteOutput, match="not finite"):
        predictor(str(photo))
    line = one_line_exit_2(capsys, ["predict", str(nan_export), str(photo), "-o", str(tmp_path / "out")])
    assert "photo.png" in line and "not finite" in line
    assert not (tmp_path / "out" / "photo.json").exists()  # never a result


def test_nan_outputs_are_a_5xx_for_that_request_and_the_server_stays_healthy(nan_export):
    photo = Image.fromarray(sample_photo("coffee"))
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    with TestClient(create_app(nan_export, max_batch=2)) as client:
        for _ in range(2):
            r = client.post("/v1/predict", content=buffer.getvalue(), headers={"content-type": "image/png"})
            assert r.status_code == 500 and "not finite" in r.json()["error"], r.text
            assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200
        assert 'reason="non_finite"' in client.get("/metrics").text


def test_nan_outputs_stop_eval_with_one_line_naming_the_image(nan_export, tmp_path, capsys):
    root = tmp_path / "val" / class_ids("imagenet")[0]
    root.mkdir(parents=True)
    Image.fromarray(sample_photo("coffee")).save(root / "coffee.JPEG")
    with pytest.raises(NonFiniteOutput, match=r"model.onnx gave a non-finite output .*/coffee.JPEG"):
        evaluate(nan_export, EvalSettings(str(tmp_path / "val"), pytorch=False))
    line = one_line_exit_2(capsys, ["eval", str(nan_export), "--data", str(tmp_path / "val"), "--no-pytorch",
                                    "-o", str(tmp_path / "report")])
    assert "coffee.JPEG" in line


# -- 3. the manifest against the card and the graphs -----------------------------------------------------------------
@pytest.mark.parametrize("changes, message", [
    ({"model": "efficientvit-seg-b0-cityscapes"}, "is a 'seg' model"),
    ({"model": "efficientvit-seg-b0-cityscapes", "task": "seg"}, "logits"),
    ({"model": "efficientvit-sam-l0", "task": "sam"}, "has the graphs encoder, decoder"),
    ({"input_size": [256, 256]}, "does not fit efficientvit-b0-r224's input"),
])
def test_a_manifest_naming_another_model_is_refused_in_one_line(tmp_path, capsys, changes, message):
    folder = copy_export(tmp_path)
    edit_manifest(folder, **changes)
    with pytest.raises(ManifestError, match=message):
        read_manifest(folder)
    for args in (["predict", str(folder), str(tmp_path / "none.png")], ["validate", str(folder)],
                 ["bench", str(folder), "--budget-s", "1"]):
        assert message.split("'")[0] in one_line_exit_2(capsys, args)


def test_graph_outputs_must_be_those_the_manifest_records(tmp_path):
    folder = copy_export(tmp_path)
    data = json.loads((folder / MANIFEST).read_text())
    data["artifacts"][0]["outputs"][0]["name"] = "scores"  # passes the card check only if the card agreed...
    (folder / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="outputs must be logits"):
        runtime.load(folder)
    model = onnx.load(str(folder / "model.onnx"))  # ...so rename the graph's output instead: the graph disagrees
    data["artifacts"][0]["outputs"][0]["name"] = "logits"
    (folder / MANIFEST).write_text(json.dumps(data))
    for node in model.graph.node:
        node.output[:] = ["probs" if o == "logits" else o for o in node.output]
    model.graph.output[0].name = "probs"
    onnx.save(model, str(folder / "model.onnx"))
    rehash(folder)
    with pytest.raises(ManifestError, match="output 'logits' is no such output"):
        runtime.load(folder)


def test_preprocessing_must_be_the_cards_and_old_folders_without_it_load(tmp_path, capsys):
    folder = copy_export(tmp_path)
    data = json.loads((folder / MANIFEST).read_text())
    assert data["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    data["preprocessing"]["mean"] = [0.5, 0.5, 0.5]
    (folder / MANIFEST).write_text(json.dumps(data))
    line = one_line_exit_2(capsys, ["predict", str(folder), str(tmp_path / "none.png")])
    assert "'preprocessing.mean'" in line and "the card's is what runs" in line
    del data["preprocessing"]  # a folder written before the block existed (or by a reader who drops it)
    (folder / MANIFEST).write_text(json.dumps(data))
    assert read_manifest(folder).model == "efficientvit-b0-r224"


# -- 4. manifest edge cases ------------------------------------------------------------------------------------------
def test_a_deeply_nested_manifest_is_one_line(tmp_path, capsys):
    folder = copy_export(tmp_path)
    (folder / MANIFEST).write_text("[" * 100_000)
    assert "nested too deeply" in one_line_exit_2(capsys, ["predict", str(folder), str(tmp_path / "x.png")])


def test_a_manifest_symlinked_out_of_the_folder_is_refused(tmp_path, capsys):
    folder = copy_export(tmp_path)
    outside = tmp_path / "elsewhere.json"
    shutil.move(folder / MANIFEST, outside)
    (folder / MANIFEST).symlink_to(outside)
    with pytest.raises(ManifestError, match="outside the export folder"):
        read_manifest(folder)
    assert "outside the export folder" in one_line_exit_2(capsys, ["predict", str(folder), str(tmp_path / "x")])
    inside = folder / "real.json"  # a link that stays inside is followed like an artifact's
    shutil.move(outside, inside)
    (folder / MANIFEST).unlink()
    (folder / MANIFEST).symlink_to(inside.name)
    assert read_manifest(folder).model == "efficientvit-b0-r224"


def test_duplicate_artifact_entries_are_refused_by_every_reader(tmp_path):
    folder = copy_export(tmp_path)
    data = json.loads((folder / MANIFEST).read_text())
    first = dict(data["artifacts"][0], sha256="0" * 64)
    data["artifacts"] = [first, data["artifacts"][0]]
    (folder / MANIFEST).write_text(json.dumps(data))
    for reader in every_reader(folder):
        with pytest.raises(ManifestError, match="lists model.onnx again"):
            reader()


def test_schema_true_is_not_schema_1(tmp_path):
    folder = copy_export(tmp_path)
    edit_manifest(folder, schema=True)
    with pytest.raises(ManifestError, match="'schema' must be an integer, not bool"):
        read_manifest(folder)


@pytest.mark.parametrize("kind, message", [("fifo", "is a FIFO"), ("folder", "is a folder")])
def test_an_artifact_that_is_not_a_file_is_named_for_what_it_is(tmp_path, capsys, kind, message):
    folder = copy_export(tmp_path)
    (folder / "model.onnx").unlink()
    if kind == "fifo":
        os.mkfifo(folder / "model.onnx")
    else:
        (folder / "model.onnx").mkdir()
    with pytest.raises(ManifestError, match=message):
        runtime.load(folder)
    assert message in one_line_exit_2(capsys, ["predict", str(folder), str(tmp_path / "x.png")])


def test_a_manifest_that_is_a_fifo_is_named_for_what_it_is(tmp_path):
    folder = copy_export(tmp_path)
    (folder / MANIFEST).unlink()
    os.mkfifo(folder / MANIFEST)
    with pytest.raises(ManifestError, match="is a FIFO"):
        read_manifest(folder)
