"""Triton model repository: config.pbtxt parsed and checked against export.json; the Python-backend pipeline run
with a stand-in for Triton (BLS requests checked against the configs, graphs run with ONNX Runtime)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from evit_deploy.errors import EvitError
from evit_deploy.predict import Predictor
from evit_deploy.samples import sample_photo
from evit_deploy.triton import write_repository

from .fakes.triton import FakeTriton, load_pipeline
from .helpers import run_cli
from .shared_exports import LIGHT_PROFILE, build_cls_export, build_sam_export, sam_coffee_image, sam_onnx_predictor
from .triton_config import one, read_config


def _shape(spec: dict) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in spec["shape"]]


def check_graph_model(folder: Path, entry: dict, manifest: dict, batched: bool) -> dict:
    """The config of one graph model agrees with its export.json artifact entry."""
    config = read_config(folder)
    assert one(config, "name") == folder.name
    assert one(config, "platform") == "onnxruntime_onnx"
    model_file = folder / "1" / one(config, "default_model_filename")
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() == entry["sha256"]
    max_batch = one(config, "max_batch_size")
    assert max_batch == (manifest["profile"]["batch"]["max"] if batched else 0)
    for kind in ("input", "output"):
        specs = entry[kind + "s"]
        assert [one(t, "name") for t in config[kind]] == [s["name"] for s in specs]
        for tensor, spec in zip(config[kind], specs):
            assert one(tensor, "data_type") == {"float32": "TYPE_FP32"}[spec["dtype"]]
            want = _shape(spec)[1:] if batched else _shape(spec)
            assert tensor["dims"] == want
    if batched:
        dyn = one(config, "dynamic_batching")
        assert one(dyn, "max_queue_delay_microseconds") == 5000
        assert all(b <= max_batch for b in dyn.get("preferred_batch_size", []))
    else:
        assert "dynamic_batching" not in config
    group = one(config, "instance_group")
    assert one(group, "kind") == "KIND_CPU" and one(group, "count") >= 1
    return config


def check_pipeline_model(folder: Path) -> dict:
    config = read_config(folder)
    assert one(config, "backend") == "python" and one(config, "max_batch_size") >= 1
    inputs = {one(t, "name"): t for t in config["input"]}
    assert one(inputs["IMAGE"], "data_type") == "TYPE_STRING" and inputs["IMAGE"]["dims"] == [1]
    assert one(inputs["OPTIONS"], "optional") is True
    assert [one(t, "name") for t in config["output"]] == ["RESULT"]
    assert "dynamic_batching" in config
    assert (folder / "1" / "model.py").is_file() and (folder / "1" / "pipeline.json").is_file()
    return config


# -- structure -----------------------------------------------------------------------------------------------
def test_classification_repository(tmp_path):
    folder = build_cls_export()[0]
    manifest = json.loads((folder / "export.json").read_text())
    models = write_repository(folder, tmp_path / "repo")
    assert [m.name for m in models] == ["efficientvit-b0-r224", "efficientvit-b0-r224-model"]
    check_pipeline_model(tmp_path / "repo" / "efficientvit-b0-r224")
    config = check_graph_model(tmp_path / "repo" / "efficientvit-b0-r224-model", manifest["artifacts"][0], manifest,
                               batched=True)
    assert config["input"][0]["dims"] == [3, 224, 224] and config["output"][0]["dims"] == [1000]
    readme = (tmp_path / "repo" / "efficientvit-b0-r224" / "README.md").read_text()
    assert "tritonserver --model-repository" in readme and "efficientvit-b0-r224" in readme
    with pytest.raises(EvitError, match="exists"):
        write_repository(folder, tmp_path / "repo")
    assert len(write_repository(folder, tmp_path / "repo", overwrite=True, instances=2)) == 2
    assert one(one(read_config(tmp_path / "repo" / "efficientvit-b0-r224-model"), "instance_group"), "count") == 2


@pytest.mark.slow
def test_sam_repository_batches_the_encoder_not_the_decoder(tmp_path):
    folder = build_sam_export()
    manifest = json.loads((folder / "export.json").read_text())
    write_repository(folder, tmp_path / "repo")
    check_pipeline_model(tmp_path / "repo" / "efficientvit-sam-l0")
    by_role = {a["role"]: a for a in manifest["artifacts"]}
    enc = check_graph_model(tmp_path / "repo" / "efficientvit-sam-l0-encoder", by_role["encoder"], manifest, True)
    dec = check_graph_model(tmp_path / "repo" / "efficientvit-sam-l0-decoder", by_role["decoder"], manifest, False)
    assert enc["input"][0]["dims"] == [3, 512, 512] and enc["output"][0]["dims"] == [256, 64, 64]
    assert [t["dims"] for t in dec["input"]] == [[1, 256, 64, 64], [-1, -1, 2], [-1, -1]]


def test_static_batch_export_has_no_dynamic_batching(tmp_path):
    from evit_deploy.export.pipeline import ExportRequest, run_export

    profile = tmp_path / "static.yaml"
    profile.write_text(LIGHT_PROFILE + "batch: {size: 1, dynamic: false, min: 1, opt: 1, max: 1}\n")
    result = run_export(ExportRequest("efficientvit-b0-r224", str(profile), output=str(tmp_path / "static")))
    write_repository(result.folder, tmp_path / "repo")
    manifest = result.manifest.to_dict()
    config = check_graph_model(tmp_path / "repo" / "efficientvit-b0-r224-model", manifest["artifacts"][0], manifest,
                               batched=False)
    assert config["input"][0]["dims"] == [1, 3, 224, 224]


def test_tensorrt_plans_and_gpu_instances(tmp_path):
    folder = tmp_path / "trt-export"
    shutil.copytree(build_cls_export()[0], folder)
    manifest = json.loads((folder / "export.json").read_text())
    (folder / "model.plan").write_bytes(b"serialized engine")
    plan = dict(manifest["artifacts"][0], format="trt-engine", path="model.plan",
                sha256=hashlib.sha256(b"serialized engine").hexdigest())
    manifest["artifacts"].append(plan)
    (folder / "export.json").write_text(json.dumps(manifest))
    write_repository(folder, tmp_path / "repo")
    config = read_config(tmp_path / "repo" / "efficientvit-b0-r224-model")
    assert one(config, "platform") == "tensorrt_plan" and one(config, "default_model_filename") == "model.plan"
    assert one(one(config, "instance_group"), "kind") == "KIND_GPU"
    assert (tmp_path / "repo" / "efficientvit-b0-r224-model" / "1" / "model.plan").read_bytes() == b"serialized engine"
    write_repository(folder, tmp_path / "repo2", platform="onnxruntime_onnx", kind="cpu")
    config = read_config(tmp_path / "repo2" / "efficientvit-b0-r224-model")
    assert one(config, "platform") == "onnxruntime_onnx" and one(one(config, "instance_group"), "kind") == "KIND_CPU"
    with pytest.raises(EvitError, match="no model artifact for Triton platform"):
        write_repository(build_cls_export()[0], tmp_path / "repo3", platform="tensorrt_plan")


def test_cli_triton(tmp_path, capsys):
    folder = str(build_cls_export()[0])
    assert run_cli(["triton", folder, "--repo", str(tmp_path / "r"), "--instances", "3"]) == 0
    assert "tritonserver --model-repository" in capsys.readouterr().out
    assert run_cli(["triton", folder, "--repo", str(tmp_path / "r")]) == 2
    assert "--force" in capsys.readouterr().err
    assert run_cli(["triton", folder, "--repo", str(tmp_path / "r"), "--force", "--name", "b0"]) == 0
    assert (tmp_path / "r" / "b0" / "config.pbtxt").is_file() and (tmp_path / "r" / "b0-model").is_dir()


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_pipeline_model_classification_matches_predictor(tmp_path, monkeypatch):
    folder = build_cls_export()[0]
    write_repository(folder, tmp_path / "repo")
    fake = FakeTriton(tmp_path / "repo")
    model = load_pipeline(tmp_path / "repo", "efficientvit-b0-r224", fake, monkeypatch)
    names = ["chelsea", "rocket", "coffee"]
    requests = [
        {"IMAGE": np.array([[png(sample_photo(n))] for n in names[:2]], dtype=object),
         "OPTIONS": np.array([[b'{"top_k": 3}'], [b'{"top_k": 2}']], dtype=object)},
        {"IMAGE": np.array([[png(sample_photo("coffee"))]], dtype=object)},
        {"IMAGE": np.array([[b"not an image"]], dtype=object)},
        {"IMAGE": np.array([[png(sample_photo("coffee"))]], dtype=object), "OPTIONS": np.array([[b"{"]], dtype=object)},
    ]
    responses = model.execute(requests)
    assert len(responses) == 4 and len(fake.calls) == 1  # three good images, one BLS call with batch 3
    assert fake.calls[0] == ("efficientvit-b0-r224-model", {"input": (3, 3, 224, 224)})
    predictor = Predictor.from_export(folder)
    results = [json.loads(v[0]) for v in responses[0].output_tensors[0].as_numpy()]
    for result, name, k in zip(results, names[:2], (3, 2)):
        want = predictor(sample_photo(name), top_k=k).to_dict()
        assert [t["index"] for t in result["top_k"]] == [t["index"] for t in want["top_k"]]
        np.testing.assert_allclose([t["score"] for t in result["top_k"]], [t["score"] for t in want["top_k"]],
                                   rtol=1e-5)
    coffee = json.loads(responses[1].output_tensors[0].as_numpy()[0, 0])
    assert coffee["model"] == "efficientvit-b0-r224" and len(coffee["top_k"]) == 5
    assert responses[2].has_error() and "not an image" in responses[2].error().message()
    assert responses[3].has_error() and "JSON" in responses[3].error().message()


def test_repository_written_by_an_older_version_still_loads(tmp_path, monkeypatch):
    """Older versions wrote a model.py importing ``evit_deploy.predict.triton_backend``; the shim keeps it working."""
    write_repository(build_cls_export()[0], tmp_path / "repo")
    model_py = tmp_path / "repo" / "efficientvit-b0-r224" / "1" / "model.py"
    text = model_py.read_text()
    assert "from evit_deploy.triton.backend import TritonPythonModel" in text
    model_py.write_text(text.replace("evit_deploy.triton.backend", "evit_deploy.predict.triton_backend"))
    model = load_pipeline(tmp_path / "repo", "efficientvit-b0-r224", FakeTriton(tmp_path / "repo"), monkeypatch)
    (response,) = model.execute([{"IMAGE": np.array([[png(sample_photo("coffee"))]], dtype=object)}])
    assert not response.has_error() and json.loads(response.output_tensors[0].as_numpy()[0, 0])["task"] == "cls"


@pytest.mark.slow
def test_pipeline_model_sam_matches_predictor(tmp_path, monkeypatch):
    write_repository(build_sam_export(), tmp_path / "repo")
    fake = FakeTriton(tmp_path / "repo")
    model = load_pipeline(tmp_path / "repo", "efficientvit-sam-l0", fake, monkeypatch)
    options = {"points": [[300, 200]], "box": [100, 80, 450, 330], "multimask": True}
    responses = model.execute([{"IMAGE": np.array([[png(sample_photo("coffee"))]], dtype=object),
                                "OPTIONS": np.array([[json.dumps(options).encode()]], dtype=object)}])
    assert [c[0] for c in fake.calls] == ["efficientvit-sam-l0-encoder", "efficientvit-sam-l0-decoder"]
    assert fake.calls[1][1]["point_coords"] == (1, 3, 2)  # the point and the two box corners
    result = json.loads(responses[0].output_tensors[0].as_numpy()[0, 0])
    want = sam_onnx_predictor().predict_masks(options["points"], None, options["box"], image=sam_coffee_image())
    assert result["best"] == want.best and len(result["masks"]) == 3
    assert result["masks"] == want.to_dict()["masks"]


# -- the python platform (graphs run by our runtime inside the Python backend) ---------------------------------
def test_python_platform_repository(tmp_path):
    folder = build_cls_export()[0]
    manifest = json.loads((folder / "export.json").read_text())
    models = write_repository(folder, tmp_path / "repo", platform="python", threads=1)
    assert [m.platform for m in models] == ["python", "python"]
    graph = tmp_path / "repo" / "efficientvit-b0-r224-model"
    config = read_config(graph)
    assert one(config, "backend") == "python" and "platform" not in config
    assert "default_model_filename" not in config  # the Python backend runs 1/model.py
    assert one(config, "max_batch_size") == manifest["profile"]["batch"]["max"] and "dynamic_batching" in config
    assert one(one(config, "instance_group"), "kind") == "KIND_CPU"
    settings = json.loads((graph / "1" / "graph.json").read_text())
    entry = manifest["artifacts"][0]
    assert settings["file"] == Path(entry["path"]).name and settings["threads"] == 1 and settings["batched"]
    assert settings["sha256"] == {Path(entry["path"]).name: entry["sha256"]}
    assert hashlib.sha256((graph / "1" / settings["file"]).read_bytes()).hexdigest() == entry["sha256"]
    assert "evit_deploy.triton.graph_backend" in (graph / "1" / "model.py").read_text()


def test_platform_follows_the_servers_backends(tmp_path):
    folder = build_cls_export()[0]
    only_python = write_repository(folder, tmp_path / "a", backends={"python"})
    assert [m.platform for m in only_python] == ["python", "python"]
    full = write_repository(folder, tmp_path / "b", backends={"python", "onnxruntime"})
    assert full[1].platform == "onnxruntime_onnx"
    with pytest.raises(EvitError, match="no onnxruntime backend"):
        write_repository(folder, tmp_path / "c", platform="onnxruntime_onnx", backends={"python"})
    assert not (tmp_path / "c").exists()


def test_python_graph_model_batches_the_requests_it_is_given(tmp_path, monkeypatch):
    folder = build_cls_export()[0]
    write_repository(folder, tmp_path / "repo", platform="python")
    model = load_pipeline(tmp_path / "repo", "efficientvit-b0-r224-model", FakeTriton(tmp_path / "repo"),
                             monkeypatch)
    runs = []
    original = model.backend.run
    monkeypatch.setattr(model.backend, "run", lambda feeds: runs.append(feeds["input"].shape) or original(feeds))
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((n, 3, 224, 224)).astype(np.float32) for n in (2, 1, 3)]
    responses = model.execute([{"input": b} for b in batches] + [{"input": batches[0][:, :, :100]}])
    assert runs[0] == (6, 3, 224, 224)  # the three well-formed requests ran as one batch
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch, response in zip(batches, responses):
        (logits,) = [t.as_numpy() for t in response.output_tensors]
        np.testing.assert_allclose(logits, session.run(None, {"input": batch})[0], rtol=1e-4, atol=1e-5)
    assert responses[3].has_error() and "shape" in responses[3].error().message()


def test_python_graph_model_refuses_a_changed_graph(tmp_path, monkeypatch):
    write_repository(build_cls_export()[0], tmp_path / "repo", platform="python")
    graph = tmp_path / "repo" / "efficientvit-b0-r224-model" / "1" / "model.onnx"
    graph.write_bytes(graph.read_bytes() + b"\0")
    with pytest.raises(EvitError, match="sha256"):
        load_pipeline(tmp_path / "repo", "efficientvit-b0-r224-model", FakeTriton(tmp_path / "repo"), monkeypatch)


def test_a_stub_that_misreads_numpy_2_is_a_load_error(tmp_path, monkeypatch):
    """A stand-in for a stub built with pybind11 < 2.12 under numpy 2: the arrays it builds repeat their first
    element (what the bundled tritonserver 2.51 stub does); our models refuse to load on it."""
    from evit_deploy.triton.stub_check import check_numpy_exchange

    fake = FakeTriton(tmp_path)
    good = fake.module.Tensor

    class MisreadingTensor(good):
        def as_numpy(self) -> np.ndarray:
            flat = self._array.reshape(-1)
            return np.full_like(flat, flat[0]).reshape(self._array.shape)

    fake.module.Tensor = MisreadingTensor
    if int(np.__version__.split(".")[0]) >= 2:
        with pytest.raises(EvitError, match=r"misreads numpy .* it read \[0\.0, 0\.0, 0\.0, 0\.0\].*numpy<2"):
            check_numpy_exchange(fake.module)
    fake.module.Tensor = good
    check_numpy_exchange(fake.module)  # a sound stub passes


def test_error_line_of_a_triton_log():
    from evit_deploy.triton.server import error_line

    log = ['I1206 18:52:55.4 18017 server.cc:1] "started"',
           'E1206 18:52:55.4 18017 server.cc:241] "CudaDriverHelper has not been initialized."',
           "E1206 18:53:06.2 18017 model_lifecycle.cc:654] \"failed to load 'm-model' version 1: Internal: bad\"",
           "error: creating server: Internal - failed to load all models"]
    assert error_line(log) == "failed to load 'm-model' version 1: Internal: bad"
    assert error_line(log[:2] + log[3:]) == "creating server: Internal - failed to load all models"
    assert error_line(log[:1]) is None


def test_openvino_platform_passes_the_load_settings_and_refuses_what_it_cannot_pin(tmp_path):
    """Triton's OpenVINO backend: the IR's load_settings become its parameters (OpenVINO ignores the precision an
    IR carries); an f32 IR is refused in one line, since that backend cannot be told to run f32."""
    from evit_deploy.artifacts import ArtifactEntry, TensorSpec
    from evit_deploy.errors import EvitError
    from evit_deploy.triton.configs import openvino_parameters

    def entry(hint):  # noqa: ANN001, ANN202
        return ArtifactEntry("openvino", "model", "model.xml", "bf16", "NCHW", [TensorSpec("input", ("batch", 3, 8, 8),
                             "float32")], [], load_settings={"INFERENCE_PRECISION_HINT": hint,
                                                             "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"})

    assert openvino_parameters(entry("bf16"), 2) == {"HINT_BF16": "YES", "PERFORMANCE_HINT": "LATENCY",
                                                     "NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": "2"}
    with pytest.raises(EvitError, match="cannot be told to run f32.*--platform python"):
        openvino_parameters(entry("f32"), 2)
