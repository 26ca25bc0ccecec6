"""cpu-openvino: OpenVINO IR exports (fp32, bf16, int8 with NNCF), the .xml + .bin pair in the manifest, the
runtime backend, --precision auto, the torch.compile baseline, and the one-line errors."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evit_deploy import create_model, runtime
from evit_deploy.artifacts import ManifestError, read_manifest
from evit_deploy.bench.harness import bench_export
from evit_deploy.bench.render import markdown
from evit_deploy.errors import EvitError, MissingDependency
from evit_deploy.export.pipeline import ExportRequest, run_export
from evit_deploy.export.profiles import load_profile
from evit_deploy.export.request import resolve_precision
from evit_deploy.predict import Predictor
from evit_deploy.runtime.cpu import bf16_problem
from evit_deploy.samples import sample_photo

from .helpers import FAST_ARGS, fast_bench, run_cli

pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
pytest.importorskip("nncf", reason="the [openvino] extra is not installed")

B0 = "efficientvit-b0-r224"
NO_BF16 = bf16_problem()


@pytest.fixture(scope="module")
def ov_export(cls_export, tmp_path_factory):
    """export(precision) → folder of B0 (the shared test checkpoint) for a light cpu-openvino, each made once."""
    root = tmp_path_factory.mktemp("openvino")
    (root / "light.yaml").write_text("extends: cpu-openvino\nvalidation: {photos: [astronaut], noise: 0}\n"
                                     "quant: {min_images: 2}\n")
    calib = root / "calib"
    calib.mkdir()
    for name in ("rocket", "chelsea"):
        Image.fromarray(sample_photo(name)).resize((256, 256)).save(calib / f"{name}.png")
    done = {}

    def export(precision: str) -> Path:
        if precision not in done:
            out = root / precision
            run_export(ExportRequest(B0, str(root / "light.yaml"), str(cls_export[1]), precision=precision,
                                     output=str(out), calib=str(calib) if precision == "int8" else None))
            done[precision] = out
        return done[precision]

    return export


def _pytorch(ckpt: Path, x: np.ndarray) -> np.ndarray:
    model = create_model(B0, str(ckpt))
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


def _photo_batch() -> np.ndarray:
    from evit_deploy.processing import preprocess
    from evit_deploy.zoo import get_card

    card = get_card(B0)
    return torch.cat([preprocess(sample_photo(n), card, (224, 224)) for n in ("chelsea", "coffee")]).numpy()


@pytest.mark.slow
def test_fp32_matches_pytorch_and_the_bin_is_a_checked_companion(ov_export, cls_export):
    folder = ov_export("fp32")
    manifest = read_manifest(folder)
    (entry,) = manifest.artifacts
    assert entry.format == "openvino" and entry.path == "model.xml" and entry.precision == "fp32"
    assert set(entry.companions) == {"model.bin"} and len(entry.companions["model.bin"]) == 64
    assert {"model.xml", "model.bin"} <= set(manifest.files)
    # OpenVINO does not apply the precision the IR carries: export.json names what every consumer must pass
    assert entry.load_settings["INFERENCE_PRECISION_HINT"] == "f32" and "load_settings" in entry.notes[-1]
    report = manifest.validation["artifacts"][0]
    assert report["passed"] and report["runtime"]["inference_precision"] == "fp32"
    backend = runtime.load(folder / "model.xml")  # a listed file: checked against the manifest
    x = _photo_batch()
    ours, ref = backend(x), _pytorch(cls_export[1], x)
    assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-4
    assert backend.facts["inference_precision"] == "fp32" and "bf16" not in backend.facts["kernels_by_precision"]
    assert backend(x[:1]).shape == (1, 1000)  # a second batch size compiles its own static shape


@pytest.mark.skipif(NO_BF16 is not None, reason=f"bf16 needs AVX512_BF16/AMX: {NO_BF16}")
def test_bf16_runs_bf16_within_its_tolerance(ov_export, cls_export):
    folder = ov_export("bf16")
    report = read_manifest(folder).validation["artifacts"][0]
    assert report["passed"] and report["precision"] == "bf16"
    assert report["runtime"]["inference_precision"] == "bf16" and report["runtime"]["kernels_by_precision"]["bf16"]
    x = _photo_batch()
    out, ref = runtime.load(folder)(x), _pytorch(cls_export[1], x)
    assert 0 < np.abs(out - ref).max() / np.abs(ref).max() <= load_profile("cpu-openvino").tolerance("bf16").max_rel


@pytest.mark.slow
def test_int8_has_quantized_ops_and_keeps_the_islands_float(ov_export):
    import openvino as ov

    folder = ov_export("int8")
    manifest = read_manifest(folder)
    assert manifest.validation["artifacts"][0]["passed"]
    record = manifest.quantization["model"]
    assert record["scheme"] == "nncf-mixed" and "2 images from" in record["calibration"]["images"]
    model = ov.Core().read_model(str(folder / "model.xml"))
    kinds = {op.get_friendly_name(): op for op in model.get_ops()}
    assert sum(op.get_type_name() == "FakeQuantize" for op in kinds.values()) > 20
    attention = [op for name, op in kinds.items() if "/context_module/main/MatMul" in name]
    assert attention and all(i.get_source_output().get_node().get_type_name() != "FakeQuantize"
                             for op in attention for i in op.inputs())
    facts = runtime.load(folder).facts
    assert facts["kernels_by_precision"].get("u8", 0) + facts["kernels_by_precision"].get("i8", 0) > 20
    assert (folder / "model.bin").stat().st_size < 0.5 * (ov_export("fp32") / "model.bin").stat().st_size


def test_a_layer_left_float_loses_its_fake_quantize(tmp_path):
    import openvino as ov

    from evit_deploy.export.quantize.openvino_nncf import OpenVinoInt8

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Hardswish(), torch.nn.Conv2d(8, 8, 1),
                              torch.nn.Hardswish(), torch.nn.Conv2d(8, 4, 1)).eval()
    onnx_path = tmp_path / "net.onnx"
    torch.onnx.export(net, (torch.randn(1, 3, 16, 16),), str(onnx_path), dynamo=False, input_names=["input"])
    inputs = [np.random.default_rng(i).standard_normal((1, 3, 16, 16), dtype=np.float32) for i in range(4)]
    quantizer = OpenVinoInt8(ov.convert_model(str(onnx_path)), onnx_path, inputs, "minmax")
    layers = [name for name, _ in quantizer.candidates()]
    assert layers == ["/0/Conv", "/2/Conv", "/4/Conv"]

    def quantized(path: Path) -> set[str]:
        model = ov.Core().read_model(str(path))
        return {op.get_friendly_name().removesuffix("/WithoutBiases") for op in model.get_ops()
                if any(i.get_source_output().get_node().get_type_name() == "FakeQuantize" for i in op.inputs())}

    assert set(layers) <= quantized(quantizer.build(tmp_path / "all"))
    assert quantized(quantizer.build(tmp_path / "fallback", float_layers=("/2/Conv",))) >= {"/0/Conv", "/4/Conv"}
    assert "/2/Conv" not in quantized(tmp_path / "fallback.xml")
    assert quantized(quantizer.build(tmp_path / "probe", only=("/2/Conv",))) == {"/2/Conv"}
    assert "NNCF" in quantizer.describe() and "minmax activation ranges on 4 images" in quantizer.describe()
    with pytest.raises(EvitError, match="minmax or percentile"):
        OpenVinoInt8(ov.convert_model(str(onnx_path)), onnx_path, inputs, "entropy")


@pytest.mark.slow
def test_missing_swapped_or_corrupt_bin_is_refused(ov_export, tmp_path):
    src = ov_export("fp32")
    swapped = shutil.copytree(src, tmp_path / "swapped")
    shutil.copyfile(ov_export("int8") / "model.bin", swapped / "model.bin")
    with pytest.raises(ManifestError, match="companion of model.xml .* swapped, modified or is corrupt"):
        runtime.load(swapped)
    missing = shutil.copytree(src, tmp_path / "missing")
    (missing / "model.bin").unlink()
    for target in (missing, missing / "model.xml"):
        with pytest.raises(ManifestError, match="companion of model.xml missing"):
            runtime.load(target)
    loose = tmp_path / "loose"  # no manifest: the backend's own checks
    loose.mkdir()
    shutil.copyfile(src / "model.xml", loose / "model.xml")
    with pytest.raises(EvitError, match="model.bin is missing beside it"):
        runtime.load(loose / "model.xml")
    (loose / "model.bin").write_bytes(b"\0" * 64)
    with pytest.raises(EvitError, match="not a valid IR, or model.bin is not its weights") as exc:
        runtime.load(loose / "model.xml")
    (loose / "model.xml").write_text("<net><layers>")  # a truncated .xml
    with pytest.raises(EvitError, match="not a valid IR") as exc:
        runtime.load(loose / "model.xml")
    assert "\n" not in str(exc.value)
    data = json.loads((src / "export.json").read_text())
    del data["artifacts"][0]["companions"]
    unlisted = shutil.copytree(src, tmp_path / "unlisted")
    (unlisted / "export.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="must list exactly model.bin"):
        read_manifest(unlisted)


def test_auto_and_a_precision_this_cpu_cannot_run(monkeypatch, ov_export, capsys):
    profile = load_profile("cpu-openvino")
    chosen, note = resolve_precision(profile, None)  # auto is the default
    assert chosen == ("fp32" if NO_BF16 else "bf16") and "auto chose" in note
    monkeypatch.setattr("evit_deploy.export.request.precision_problem",
                        lambda p: "this CPU cannot run bf16: no AVX512_BF16" if p == "bf16" else None)
    assert resolve_precision(profile, "auto")[0] == "fp32"
    with pytest.raises(EvitError, match="cannot export bf16 .*no AVX512_BF16.*--precision auto"):
        resolve_precision(profile, "bf16")
    assert run_cli(["export", B0, "-t", "cpu-openvino", "-p", "bf16", "-o", "never"]) == 2
    assert "cannot export bf16" in capsys.readouterr().err

@pytest.mark.skipif(NO_BF16 is not None, reason=f"exporting bf16 needs AVX512_BF16/AMX: {NO_BF16}")
def test_a_bf16_artifact_on_a_cpu_without_bf16(monkeypatch, ov_export, tmp_path):
    folder = ov_export("bf16")  # exported on this CPU, which has bf16; then "moved" to one without it
    monkeypatch.setattr("evit_deploy.runtime.openvino_backend.bf16_supported", lambda core, device: False)
    with pytest.raises(EvitError, match="OpenVINO cannot run bf16 on this CPU.*--precision fp32"):
        runtime.load(folder)  # asked for bf16 explicitly: refused
    xml = (folder / "model.xml").read_text()
    assert '<PRECISION_CHOICE value="bf16" />' in xml
    loose = tmp_path / "auto"  # the same IR as --precision auto writes it (the choice is in its rt_info)
    loose.mkdir()
    (loose / "model.xml").write_text(xml.replace('PRECISION_CHOICE value="bf16"', 'PRECISION_CHOICE value="auto"'))
    shutil.copyfile(folder / "model.bin", loose / "model.bin")
    with pytest.warns(RuntimeWarning, match="no native bf16: runs f32"):
        backend = runtime.load(loose / "model.xml")
    assert backend.facts["inference_precision"] == "fp32" and "precision_fallback" in backend.facts


def test_openvino_missing_is_one_line(monkeypatch, ov_export, capsys, tmp_path):
    folder = ov_export("fp32")  # exported first (with openvino), whichever test ran before
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    with pytest.raises(MissingDependency, match=r"needs the \[openvino\] extra") as exc:
        runtime.load(folder)
    assert "\n" not in str(exc.value) and "pip install 'evit-deploy[openvino]'" in str(exc.value)
    assert run_cli(["bench", "run", str(folder), *FAST_ARGS, "-o", str(tmp_path / "never-bench")]) == 2
    assert "[openvino] extra" in capsys.readouterr().err and not (tmp_path / "never-bench").exists()


@pytest.mark.slow
def test_predictor_eval_and_bench_take_it(ov_export, cls_export, tmp_path, capsys):
    from evit_deploy.eval import EvalSettings, evaluate

    folder = ov_export("fp32")
    result = Predictor.from_export(folder)(sample_photo("chelsea"))
    assert len(result.labels) == 5
    flat = tmp_path / "imagenet"  # two photos labelled with PyTorch's top-1
    flat.mkdir()
    top = _pytorch(cls_export[1], _photo_batch()).argmax(1)
    for name in ("chelsea", "coffee"):
        Image.fromarray(sample_photo(name)).save(flat / f"{name}.JPEG", quality=95)
    (tmp_path / "labels.txt").write_text(f"chelsea.JPEG,{top[0]}\ncoffee.JPEG,{top[1]}\n")
    report = evaluate(folder, EvalSettings(str(flat), "imagenet", str(tmp_path / "labels.txt"), str(cls_export[1])))
    pytorch, ours = report["results"]
    assert ours["metrics"]["top1"] == pytorch["metrics"]["top1"] and ours["agreement_with_pytorch"] == 1.0
    report = bench_export(folder, fast_bench(threads=2))
    rows = {r.format: r for r in report.rows}
    assert set(rows) == {"pytorch-eager", "openvino"} and rows["openvino"].ratio_to_eager > 0
    assert rows["openvino"].precision == "fp32" and rows["openvino"].settings["inference_precision"] == "fp32"
    assert rows["openvino"].settings["performance_hint"] == "LATENCY"  # the production setting, recorded
    assert "| openvino | openvino | fp32 | 1 |" in markdown(report)
    assert run_cli(["bench", str(folder), "--baselines", "compile", "-o", str(tmp_path / "never-bench")]) == 2
    assert "--baselines takes eager, compile" in capsys.readouterr().err and not (tmp_path / "never-bench").exists()
