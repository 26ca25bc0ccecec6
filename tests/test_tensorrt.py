"""TensorRT targets: cloud-gpu-trt (engine built where TensorRT is, skipped with the reason elsewhere),
jetson-orin-trt (build bundle: trtexec script, README, the Q/DQ int8 ONNX), build plans, sidecar checks,
the build-engine command and the runtime backend's errors.

Everything here runs without TensorRT. Tests that need it are skipped with ``pytest.importorskip``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from evit_deploy import runtime
from evit_deploy.artifacts import read_manifest
from evit_deploy.errors import EvitError
from evit_deploy.export.pipeline import ExportRequest, run_export, validate_export
from evit_deploy.export.profiles import TrtSettings, load_profile
from evit_deploy.export.trt import rebuild as trt_rebuild
from evit_deploy.export.trt.builder import build_engine
from evit_deploy.export.trt.bundle import trtexec_args
from evit_deploy.export.trt.onnx_layers import select_fp32_layers, value_types
from evit_deploy.export.trt.plan import (
    EnginePlan,
    batch_range,
    input_shapes,
    make_plan,
    read_plans,
    use_strongly_typed,
)
from evit_deploy.export.trt.rebuild import folder_plans
from evit_deploy.runtime.trt_common import check_compatibility, tensorrt_problem

from .fakes.tensorrt import fake_tensorrt
from .fakes.tools import fake_trtexec
from .helpers import run_cli

MODEL = "efficientvit-b0-r224"
SIZE = (128, 128)
NO_TRT = tensorrt_problem()
needs_no_trt = pytest.mark.skipif(NO_TRT is None, reason="TensorRT and a CUDA GPU are usable here: no skip path")


def export(tmp: Path, target: str, precision: str, **kwargs) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights, bundled calibration photos
        return run_export(ExportRequest(MODEL, target, imgsz=SIZE, precision=precision, output=str(tmp), **kwargs))


@pytest.fixture(scope="module")
def cloud_fp16(tmp_path_factory):
    return export(tmp_path_factory.mktemp("cloud") / "out", "cloud-gpu-trt", "fp16")


@pytest.fixture(scope="module")
def jetson_fp16(tmp_path_factory):
    return export(tmp_path_factory.mktemp("jetson") / "out", "jetson-orin-trt", "fp16")


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(0)
    for i, size in enumerate(((160, 120), (96, 200), (120, 120), (200, 96))):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def jetson_int8(tmp_path_factory, calib_dir):
    return export(tmp_path_factory.mktemp("jetson8") / "out", "jetson-orin-trt", "int8", calib=str(calib_dir))


def onnx_nodes(path: Path) -> dict[str, onnx.NodeProto]:
    return {n.name: n for n in onnx.load(str(path)).graph.node}


# --------------------------------------------------------------------------------------------- cloud-gpu-trt


@needs_no_trt
def test_cloud_fp16_export_writes_validated_onnx_and_says_why_no_engine(cloud_fp16):
    manifest = json.loads((cloud_fp16.folder / "export.json").read_text())
    (artifact,) = manifest["artifacts"]
    assert artifact["format"] == "onnx" and artifact["precision"] == "fp16" and artifact["path"] == "model.onnx"
    assert artifact["inputs"][0]["dtype"] == "float32" and artifact["outputs"][0]["dtype"] == "float32"
    (report,) = manifest["validation"]["artifacts"]
    assert report["passed"] and report["precision"] == "fp16" and report["artifact"] == "model.onnx"
    (skipped,) = manifest["skipped"]
    assert skipped.startswith("trt-engine skipped for model: TensorRT is not installed on this host (import tensorrt")
    assert "model.onnx" in skipped and "`evit-deploy build-engine`" in skipped and "trtexec" in skipped
    assert cloud_fp16.skipped == manifest["skipped"]
    assert not list(cloud_fp16.folder.glob("*.engine"))


def test_cloud_plan_has_profile_shapes_and_fp32_islands(cloud_fp16):
    plan = read_plans(cloud_fp16.folder)["model"]
    assert plan.precision == "fp16" and plan.engine == "model.engine" and plan.strongly_typed == "auto"
    assert plan.shapes == {"input": {"min": [1, 3, 128, 128], "opt": [1, 3, 128, 128], "max": [16, 3, 128, 128]}}
    assert plan.workspace_mb == 4096 and plan.timing_cache == "timing.cache" and plan.dla_core is None
    nodes = onnx_nodes(cloud_fp16.folder / "model.onnx")
    types = value_types(cloud_fp16.folder / "model.onnx")
    ops = {nodes[layer.node].op_type for layer in plan.fp32_layers}
    assert {"MatMul", "Div", "Clip", "LayerNormalization", "Cast"} <= ops and "Conv" not in ops
    for layer in plan.fp32_layers:  # real node names, every output declared float32 in the mixed graph
        assert list(nodes[layer.node].output) == layer.outputs and all(types[o] == 1 for o in layer.outputs)
    args = trtexec_args(plan)
    assert "--minShapes=input:1x3x128x128" in args and "--maxShapes=input:16x3x128x128" in args
    assert "--optShapes=input:1x3x128x128" in args and "--shapes=input:1x3x128x128" in args


def test_build_folder_registers_engines_in_export_json(cloud_fp16, tmp_path, monkeypatch):
    """build-engine's bookkeeping with the TensorRT build itself replaced by a stub."""
    folder = tmp_path / "copy"
    shutil.copytree(cloud_fp16.folder, folder)

    def fake_build(folder, plan, timing_cache=None, step=None):  # noqa: ANN001
        (folder / plan.engine).write_bytes(b"engine")
        return {"engine": plan.engine, "precision": plan.precision, "typing": "stub", "strongly_typed": True,
                "tensorrt_version": "10.12.0", "gpu_name": "NVIDIA L4", "compute_capability": "8.9",
                "build_seconds": 1.0, "shapes": plan.shapes, "inputs": [{"name": "input", "shape": ["batch", 3, 128,
                128], "dtype": "float32"}], "outputs": [{"name": "logits", "shape": ["batch", 1000],
                "dtype": "float32"}], "timing_cache": "timing.cache"}

    monkeypatch.setattr(trt_rebuild, "build_engine", fake_build)
    monkeypatch.setattr(trt_rebuild, "import_tensorrt", lambda purpose: None)
    for _ in range(2):  # a rebuild replaces the entry
        trt_rebuild.build_folder(folder)
    manifest = json.loads((folder / "export.json").read_text())
    engines = [a for a in manifest["artifacts"] if a["format"] == "trt-engine"]
    assert len(engines) == 1 and engines[0]["path"] == "model.engine" and engines[0]["precision"] == "fp16"
    assert engines[0]["sha256"] and any("NVIDIA L4" in n for n in engines[0]["notes"])
    assert not list(folder.glob(".export.json.*"))
    with pytest.raises(EvitError, match="no engine plan for role 'encoder'"):
        trt_rebuild.build_folder(folder, role="encoder")
    monkeypatch.undo()
    if NO_TRT:  # the folder now prefers the engine, which needs TensorRT
        with pytest.raises(EvitError, match="needs TensorRT"):
            runtime.load(folder)


def test_plans_derive_from_export_json_without_trt_build_json(cloud_fp16, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(cloud_fp16.folder, folder)
    (folder / "trt_build.json").unlink()
    derived = folder_plans(folder, read_manifest(folder))["model"]
    recorded = read_plans(cloud_fp16.folder)["model"]
    assert derived.to_dict() == recorded.to_dict()


# ------------------------------------------------------------------------------------------- jetson-orin-trt


@pytest.mark.slow
def test_jetson_fp16_bundle_is_complete(jetson_fp16):
    folder = jetson_fp16.folder
    manifest = jetson_fp16.manifest.to_dict()
    formats = [(a["format"], a["path"], a["precision"]) for a in manifest["artifacts"]]
    assert formats == [("onnx", "model.onnx", "fp16"), ("trt-bundle", "build_engine.sh", "fp16")]
    assert [r["artifact"] for r in manifest["validation"]["artifacts"]] == ["model.onnx"]  # the .sh is not run
    _, reports = validate_export(folder)  # re-validation skips it too
    assert [(r.artifact, r.passed) for r in reports] == [("model.onnx", True)]
    assert manifest["skipped"] == []
    script = folder / "build_engine.sh"
    assert script.stat().st_mode & stat.S_IXUSR
    subprocess.run(["bash", "-n", str(script)], check=True)
    readme = (folder / "README.md").read_text()
    assert "bash build_engine.sh" in readme and "evit-deploy build-engine" in readme and "TensorRT 10.3" in readme

    plan = read_plans(folder)["model"]
    args = trtexec_args(plan)
    assert args[:3] == ["trtexec", "--onnx=model.onnx", "--saveEngine=model.engine"]
    assert "--fp16" in args and "--precisionConstraints=obey" in args and "--stronglyTyped" not in args
    assert "--memPoolSize=workspace:2048M" in args and "--timingCacheFile=timing.cache" in args
    assert not any(a.startswith(("--minShapes", "--shapes", "--useDLACore")) for a in args)  # static batch 1
    precisions = next(a for a in args if a.startswith("--layerPrecisions="))[len("--layerPrecisions="):]
    output_types = next(a for a in args if a.startswith("--layerOutputTypes="))[len("--layerOutputTypes="):]
    entries = precisions.split(",")
    assert entries[0] == "*:fp16" and output_types.split(",")[0] == "*:fp16"
    names = [e.rsplit(":", 1)[0] for e in entries[1:]]
    assert all(e.endswith(":fp32") for e in entries[1:]) and len(names) == len(plan.fp32_layers) > 10
    nodes = onnx_nodes(folder / "model.onnx")
    types = value_types(folder / "model.onnx")
    assert all(n in nodes and all(types[o] == 1 for o in nodes[n].output) for n in names)
    assert any(nodes[n].op_type == "Div" and "context_module" in n for n in names)


def test_jetson_script_runs_the_planned_trtexec_command(jetson_fp16, tmp_path):
    folder = tmp_path / "bundle"
    shutil.copytree(jetson_fp16.folder, folder)
    fake = fake_trtexec(tmp_path)
    env = {**os.environ, "TRTEXEC": str(fake)}
    subprocess.run(["bash", str(folder / "build_engine.sh")], check=True, env=env, capture_output=True)
    recorded = (tmp_path / "args.txt").read_text().splitlines()
    assert recorded == trtexec_args(read_plans(folder)["model"])[1:]
    done = subprocess.run(["bash", str(folder / "build_engine.sh"), "encoder"], env=env, capture_output=True)
    assert done.returncode == 0  # an unknown role builds nothing
    missing = subprocess.run(["bash", str(folder / "build_engine.sh")], capture_output=True, text=True,
                             env={**os.environ, "TRTEXEC": str(tmp_path / "nope"), "PATH": "/usr/bin:/bin"})
    assert missing.returncode == 2 and "trtexec not found" in missing.stderr


def test_runtime_load_of_trt_exports_picks_the_onnx(jetson_fp16, cloud_fp16):
    for result in (jetson_fp16, cloud_fp16):
        if any(a["format"] == "trt-engine" for a in result.manifest.to_dict()["artifacts"]):
            continue  # built on a TensorRT host: the engine is the deployable artifact there
        backend = runtime.load(result.folder)
        assert backend.name == "onnxruntime" and backend.path.name == "model.onnx"
        out = backend(np.zeros((1, 3, *SIZE), np.float32))
        assert out.shape == (1, 1000) and np.isfinite(out).all()


@pytest.mark.slow
def test_jetson_int8_bundle_builds_the_qdq_onnx_as_written(jetson_int8):
    import onnx
    from onnx import numpy_helper

    folder = jetson_int8.folder
    manifest = jetson_int8.manifest.to_dict()
    arts = {a["format"]: a for a in manifest["artifacts"]}
    assert arts["onnx"]["precision"] == "int8" and arts["trt-bundle"]["precision"] == "int8"
    graph = onnx.load(str(folder / "model.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "HardSwish" in ops  # TensorRT fuses HardSwish itself
    zero_points = [numpy_helper.to_array(i) for i in graph.initializer if i.name.endswith("zero_point")]
    assert zero_points and all((z == 0).all() and z.dtype == np.int8 for z in zero_points if z.dtype != np.int32)
    quant = manifest["quantization"]["model"]
    assert quant["scheme"] == "Q/DQ ONNX, tensorrt scheme" and "4 images from" in quant["calibration"]["images"]
    assert not (folder / "calibration").exists()  # no calibrator, no calibration data on the device
    plan = read_plans(folder)["model"]
    args = trtexec_args(plan)
    assert {"--int8", "--fp16", "--precisionConstraints=obey"} <= set(args)
    assert not any(a.startswith("--calib") for a in args)
    precisions = next(a for a in args if a.startswith("--layerPrecisions="))
    assert "*:" not in precisions  # int8: only the float islands are constrained
    nodes = onnx_nodes(folder / "model.onnx")
    kept = {nodes[layer.node].op_type for layer in plan.fp32_layers}
    assert {"MatMul", "Div", "Clip", "LayerNormalization"} <= kept
    assert not kept & {"Conv", "Gemm", "QuantizeLinear", "DequantizeLinear"}

    script = folder / "build_engine.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    env = {**os.environ, "TRTEXEC": str(fake_trtexec(folder.parent))}
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert "--int8" in (folder.parent / "args.txt").read_text().split()


# ----------------------------------------------------------------------------------------- pure plan pieces


def test_select_fp32_layers_follows_helper_layers():
    layers = [
        ("conv", ["x"], ["a"]),  # fp16 compute
        ("cast", ["a"], ["a32"]),  # Cast into the island (declared float32)
        ("pad", ["a32", "one"], ["(Unnamed Layer* 7) [Padding]_output"]),  # parser helper inside the island
        ("pad_1", ["(Unnamed Layer* 7) [Padding]_output"], ["p"]),
        ("const_only", ["one"], ["(Unnamed Layer* 8)_output"]),  # fed by a constant alone: left alone
        ("helper_after_fp16", ["a"], ["(Unnamed Layer* 9)_output"]),  # helper fed by fp16: left alone
        ("shape", [], []),  # no float output
    ]
    onnx_tensors = {"x", "a", "a32", "p", "one"}
    assert select_fp32_layers(layers, {"a32", "p"}, onnx_tensors, {"one"}) == ["cast", "pad", "pad_1"]
    assert select_fp32_layers(layers, {"a32", "p"}, onnx_tensors) == ["cast", "pad_1"]


def test_shapes_batch_ranges_and_dynamic_prompt_axes():
    settings = load_profile("cloud-gpu-trt").batch
    assert batch_range(settings, 1, True) == (1, 1, 16)
    assert batch_range(settings, 16, True) == (1, 16, 17)  # --batch 16 (ADE20K, SAM): opt 16, gate runs 17
    assert batch_range(settings, 1, False) == (1, 1, 1)
    dynamic, static = input_shapes([
        {"name": "image_embeddings", "shape": [1, 256, 64, 64]},
        {"name": "point_coords", "shape": ["prompts", "points", 2]},
    ], (1, 1, 16))
    assert set(dynamic) == {"point_coords"} and dynamic["point_coords"]["max"] == [16, 16, 2]
    assert static == {"image_embeddings": [1, 256, 64, 64], "point_coords": [1, 2, 2]}
    with pytest.raises(EvitError, match="dynamic dimension 'height'"):
        input_shapes([{"name": "x", "shape": [1, 3, "height", 64]}], (1, 1, 1))


def test_trtexec_flags_for_fp32_and_dla(cloud_fp16):
    onnx_path = cloud_fp16.folder / "model.onnx"
    inputs = [{"name": "input", "shape": [1, 3, 128, 128]}]
    fp32 = make_plan(onnx_path, "model", "fp32", inputs, TrtSettings(), (1, 1, 1))
    args = trtexec_args(fp32)
    assert "--noTF32" in args and not any("Precision" in a or a == "--fp16" for a in args)
    dla = make_plan(onnx_path, "model", "fp16", inputs, TrtSettings(dla_core=1, timing_cache=False), (1, 1, 1))
    args = trtexec_args(dla)
    assert args[-2:] == ["--useDLACore=1", "--allowGPUFallback"] and not any("timingCache" in a for a in args)
    with pytest.raises(EvitError, match="DLA runs fp16 and int8 only"):
        make_plan(onnx_path, "model", "fp32", inputs, TrtSettings(dla_core=0), (1, 1, 1))
    with pytest.raises(EvitError, match="strongly_typed must be one of"):
        make_plan(onnx_path, "model", "fp16", inputs, TrtSettings(strongly_typed="yes"), (1, 1, 1))
    plan = EnginePlan.from_dict(dla.to_dict())
    assert plan == dla and shlex.join(trtexec_args(plan))


def test_strongly_typed_choice_by_tensorrt_version():
    assert use_strongly_typed("auto", "fp16", "10.3.0.30") is False  # JetPack 6: builder flags
    assert use_strongly_typed("auto", "fp16", "10.12.0.36") is True
    assert use_strongly_typed("auto", "fp32", "11.0.0") is True
    assert use_strongly_typed("always", "fp16", "10.3.0") is True
    assert use_strongly_typed("auto", "int8", "10.8.0") is False  # Q/DQ with builder flags on 10.3..10.11
    assert use_strongly_typed("auto", "int8", "11.1.0") is True  # TensorRT 11: the Q/DQ network as typed
    with pytest.raises(EvitError, match="strongly typed networks only"):
        use_strongly_typed("never", "fp16", "11.0.0")


# ----------------------------------------------------------------------------------- sidecar and runtime


def test_sidecar_mismatch_is_refused_with_a_reason():
    sidecar = {"tensorrt_version": "10.3.0.30", "gpu_name": "Orin", "compute_capability": "8.7"}
    assert check_compatibility(sidecar, {"tensorrt_version": "10.3.0.26", "gpu_name": "orin",
                                         "compute_capability": "8.7"}) is None
    reason = check_compatibility(sidecar, {"tensorrt_version": "10.8.0.43", "gpu_name": "Orin",
                                           "compute_capability": "8.7"})
    assert "built with TensorRT 10.3.0.30" in reason and "10.8.0.43" in reason and "rebuild" in reason
    reason = check_compatibility(sidecar, {"tensorrt_version": "10.3.0", "gpu_name": "NVIDIA A100-SXM4-80GB",
                                           "compute_capability": "8.0"})
    assert "compute capability 8.7" in reason and "NVIDIA A100-SXM4-80GB (compute capability 8.0)" in reason
    l4 = {"tensorrt_version": "10.12.0", "gpu_name": "NVIDIA L4", "compute_capability": "8.9"}
    reason = check_compatibility(l4, {**l4, "gpu_name": "NVIDIA GeForce RTX 4090"})
    assert "built for NVIDIA L4" in reason and "RTX 4090" in reason
    assert check_compatibility(l4, {"tensorrt_version": None, "gpu_name": None, "compute_capability": None}) is None


@needs_no_trt
def test_engine_without_tensorrt_is_a_clear_error(tmp_path):
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"\x00" * 64)
    with pytest.raises(EvitError, match=r"needs TensorRT \(import tensorrt failed: .+\)"):
        runtime.load(engine)
    (tmp_path / "y.plan").write_bytes(b"\x00" * 64)
    with pytest.raises(EvitError, match="running y.plan needs TensorRT"):
        runtime.load(tmp_path / "y.plan")


@needs_no_trt
def test_build_engine_command_without_tensorrt(jetson_fp16, tmp_path, capsys):
    code = run_cli(["build-engine", str(jetson_fp16.folder)])
    err = capsys.readouterr().err
    assert code == 2 and "needs TensorRT (import tensorrt failed" in err and err.count("\n") == 1
    assert not list(jetson_fp16.folder.glob("*.engine"))
    code = run_cli(["build-engine", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "not an export folder" in err and err.count("\n") == 1


def test_trt_profiles_resolve():
    cloud, jetson = load_profile("cloud-gpu-trt"), load_profile("jetson-orin-trt")
    assert cloud.formats == ["onnx", "trt-engine"] and jetson.formats == ["onnx", "trt-bundle"]
    assert cloud.trt.strongly_typed == "auto" and jetson.trt.workspace_mb == 2048
    assert jetson.batch.dynamic is False and cloud.batch.max == 16


# ------------------------------------------------ the TensorRT calls, against a recording stand-in module


def test_build_calls_with_builder_flags_and_fp32_constraints(jetson_fp16, tmp_path, monkeypatch):
    folder = tmp_path / "bundle"
    shutil.copytree(jetson_fp16.folder, folder)
    trt = fake_tensorrt("10.3.0.30")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    plan = read_plans(folder)["model"]
    sidecar = build_engine(folder, plan)
    net, config = trt.last.network, trt.last.config
    assert net.flags == 0 and {trt.BuilderFlag.FP16, trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS} <= config.flags
    assert config.pools == {"workspace": 2048 << 20} and not config.profiles  # static shapes: no profile
    marked = [layer for layer in net.layers if layer.precision is trt.float32]
    islands = {layer.node for layer in plan.fp32_layers}
    helpers = {layer.name for layer in marked} - islands
    assert islands <= {layer.name for layer in marked} and helpers  # the Pads' helper layers too
    assert all(name.endswith("/Pad_1") for name in helpers)
    assert all(set(layer.output_types.values()) == {trt.float32} for layer in marked)
    assert sidecar["strongly_typed"] is False and sidecar["fp32_layers"] == len(marked)
    assert sidecar["tensorrt_version"] == "10.3.0.30" and sidecar["inputs"][0]["name"] == "input"
    assert (folder / "model.engine").read_bytes() == b"ENGINE"
    assert json.loads((folder / "model.engine.json").read_text()) == sidecar
    assert (folder / "timing.cache").read_bytes() == b"timing:"


def test_build_calls_strongly_typed_and_fp32(cloud_fp16, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "cloud"
    shutil.copytree(cloud_fp16.folder, folder)
    trt = fake_tensorrt("10.12.0.36")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    assert run_cli(["build-engine", str(folder)]) == 0
    assert "built model.engine (fp16, strongly typed" in " ".join(capsys.readouterr().out.split())
    net, config = trt.last.network, trt.last.config
    assert net.flags == 1 << 5 and trt.BuilderFlag.FP16 not in config.flags
    assert not any(layer.precision for layer in net.layers)  # the ONNX carries the types
    (profile,) = config.profiles
    assert profile.shapes["input"] == ([1, 3, 128, 128], [1, 3, 128, 128], [16, 3, 128, 128])
    manifest = json.loads((folder / "export.json").read_text())
    assert [a["format"] for a in manifest["artifacts"]] == ["onnx", "trt-engine"]
    fp32 = make_plan(folder / "model.onnx", "model", "fp32", [{"name": "input", "shape": [1, 3, 128, 128]}],
                     TrtSettings(timing_cache=False), (1, 1, 1))
    build_engine(folder, fp32)
    assert trt.BuilderFlag.TF32 not in trt.last.config.flags and trt.BuilderFlag.FP16 not in trt.last.config.flags


# ------------------------------------------------------------------------------------ on a TensorRT host


def test_engine_builds_and_matches_the_onnx_on_a_tensorrt_host(cloud_fp16, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed here (needs an NVIDIA GPU host)")
    if NO_TRT:
        pytest.skip(NO_TRT)
    folder = tmp_path / "copy"
    shutil.copytree(cloud_fp16.folder, folder)
    (sidecar,) = trt_rebuild.build_folder(folder)
    assert sidecar["precision"] == "fp16" and (folder / "model.engine.json").is_file()
    engine = runtime.load(folder)
    assert engine.name == "tensorrt"
    x = np.random.default_rng(0).standard_normal((3, 3, *SIZE)).astype(np.float32)
    ref = runtime.load(folder / "model.onnx")(x)
    out = engine(x)
    assert np.isfinite(out).all() and np.abs(out - ref).max() / np.abs(ref).max() < 1e-2
