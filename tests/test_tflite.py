"""TFLite export through mobile-cpu-tflite (fp32, fp16, int8-dynamic, int8), the LiteRT backend, bad input."""

from __future__ import annotations

import json
import sys
import warnings
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import torch

if find_spec("litert_torch") is None or find_spec("ai_edge_litert") is None or find_spec("ai_edge_quantizer") is None:
    pytest.skip("the [tflite] extra (litert-torch, ai-edge-litert, ai-edge-quantizer) is not installed",
                allow_module_level=True)

from PIL import Image  # noqa: E402

from evit_deploy import create_model, runtime  # noqa: E402
from evit_deploy.errors import EvitError  # noqa: E402
from evit_deploy.export.calibration import CalibrationWarning, calibration_set  # noqa: E402
from evit_deploy.export.pipeline import ExportRequest, run_export  # noqa: E402
from evit_deploy.processing import classification_input, resized_input  # noqa: E402
from evit_deploy.runtime.litert_backend import op_details  # noqa: E402
from evit_deploy.samples import sample_photo  # noqa: E402
from evit_deploy.zoo import get_card  # noqa: E402

from .helpers import randomize_, run_cli, zero_query_heads_  # noqa: E402

B0 = "efficientvit-b0-r224"
TARGET = "mobile-cpu-tflite"


def rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(out.astype(np.float64) - ref).max() / np.abs(ref).max())


def interpreter(path: Path):  # noqa: ANN201 - ai_edge_litert Interpreter
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=2)
    it.allocate_tensors()
    return it


def op_inputs(it, op_name: str) -> list[list[dict]]:  # noqa: ANN001
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    return [[tensors[i] for i in op["inputs"] if i >= 0] for op in op_details(it) if op["op_name"] == op_name]


def write_photos(folder: Path, names: tuple[str, ...], size: int = 256) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(sample_photo(name)).resize((size, size)).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """Official-format checkpoint of B0 with random weights and a zero-query head in every attention."""
    path = tmp_path_factory.mktemp("ckpt") / "efficientvit_b0_r224.pt"
    model = zero_query_heads_(randomize_(create_model(B0), seed=5))
    torch.save({"state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory) -> Path:
    return write_photos(tmp_path_factory.mktemp("calib"), ("rocket", "chelsea", "coffee", "astronaut"))


@pytest.fixture(scope="module")
def b0_export(tmp_path_factory, ckpt, calib_dir):
    """export(precision) → ExportResult of B0 for mobile-cpu-tflite, each precision exported once."""
    done = {}

    def export(precision: str):
        if precision not in done:
            out = tmp_path_factory.mktemp(f"b0-{precision}") / "out"
            calib = str(calib_dir) if precision == "int8" else None
            done[precision] = run_export(ExportRequest(B0, TARGET, str(ckpt), precision=precision, output=str(out),
                                                       calib=calib))
        return done[precision]

    return export


def photo_batch(size: int = 224) -> torch.Tensor:
    photos = [classification_input(sample_photo(n), size) for n in ("astronaut", "rocket")]
    return torch.cat([*photos, torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(7))])


def test_fp32_matches_official_pytorch_independently(b0_export, ckpt):
    """Run the .tflite with LiteRT's own Interpreter: ≤ 1e-3 relative to PyTorch, finite with zero-query heads."""
    result = b0_export("fp32")
    model = create_model(B0, weights=ckpt)  # untransformed: the official numerics (+ 1e-15)
    it = interpreter(result.folder / "model.tflite")
    runner = it.get_signature_runner()
    for x in photo_batch():
        x = x[None]
        with torch.inference_mode():
            ref = model(x).numpy()
        out = runner(input=x.numpy())["logits"]
        assert np.isfinite(ref).all() and np.isfinite(out).all()
        assert rel_err(out, ref) <= 1e-3
        assert out.argmax() == ref.argmax()


def test_fp32_manifest_records_layout_specs_and_validation(b0_export, ckpt):
    result = b0_export("fp32")
    manifest = json.loads((result.folder / "export.json").read_text())
    assert manifest["target"] == TARGET and manifest["precision"] == "fp32"
    (artifact,) = manifest["artifacts"]
    assert artifact["format"] == "tflite" and artifact["path"] == "model.tflite" and artifact["layout"] == "NCHW"
    assert artifact["inputs"] == [{"name": "input", "shape": [1, 3, 224, 224], "dtype": "float32"}]
    assert artifact["outputs"] == [{"name": "logits", "shape": [1, 1000], "dtype": "float32"}]
    notes = " ".join(artifact["notes"])
    assert "litert-torch" in notes and "NCHW" in notes and "XNNPACK" in notes
    (report,) = manifest["validation"]["artifacts"]
    assert report["passed"] and report["outputs"]["logits"]["max_rel"] <= 1e-4
    assert report["agreement"]["value"] == 1.0 and report["tolerance"]["max_rel"] == 1e-4
    assert manifest["weights"]["file"] == ckpt.name
    assert not list(result.folder.parent.glob(".out.tmp-*"))


def test_runtime_load_runs_tflite_with_xnnpack_and_threads(b0_export):
    result = b0_export("fp32")
    backend = runtime.load(result.folder)
    assert type(backend).__name__ == "LiteRtBackend" and backend.path.suffix == ".tflite"
    assert [(s.name, s.shape, s.dtype) for s in backend.inputs] == [("input", (1, 3, 224, 224), "float32")]
    assert backend.xnnpack_partitions > 0 and 1 <= backend.threads <= 4  # profile: 4, capped at the CPUs here
    x = photo_batch()[:1].numpy()
    out = backend(x)
    assert isinstance(out, np.ndarray) and out.shape == (1, 1000)
    plain = runtime.BACKENDS[".tflite"](result.folder / "model.tflite", threads=1, providers=["CPU"])
    assert plain.xnnpack_partitions == 0
    np.testing.assert_allclose(plain(x), out, rtol=0, atol=1e-4 * np.abs(out).max())
    with pytest.raises(EvitError, match=r"has shape \[2, 3, 224, 224\]; it takes \[1, 3, 224, 224\]"):
        backend(np.zeros((2, 3, 224, 224), np.float32))


@pytest.mark.parametrize("precision", ["fp16", "int8-dynamic", "int8"])
def test_reduced_precisions_are_finite_and_pass_the_gate(b0_export, precision):
    result = b0_export(precision)
    manifest = result.manifest.to_dict()
    (artifact,) = manifest["artifacts"]
    (report,) = manifest["validation"]["artifacts"]
    assert manifest["precision"] == precision and artifact["precision"] == precision
    assert report["passed"] and report["outputs"]["logits"]["nonfinite"] == 0
    assert report["agreement"]["metric"] == "top-1 agreement" and report["agreement"]["value"] is not None
    fp32 = b0_export("fp32").manifest.to_dict()["validation"]["artifacts"][0]["outputs"]["logits"]["max_rel"]
    assert fp32 < report["outputs"]["logits"]["max_rel"] <= report["tolerance"]["max_rel"]  # really quantized
    backend = runtime.load(result.folder)
    out = np.concatenate([backend(x[None].numpy()) for x in photo_batch()])
    assert out.dtype == np.float32 and np.isfinite(out).all()  # zero-query heads stay finite in every precision


def test_int8_is_small_integer_and_keeps_the_division_float(b0_export, calib_dir):
    int8, fp32 = b0_export("int8"), b0_export("fp32")
    size = (int8.folder / "model.tflite").stat().st_size
    assert size <= 0.30 * (fp32.folder / "model.tflite").stat().st_size
    (artifact,) = int8.manifest.to_dict()["artifacts"]
    assert artifact["inputs"][0]["dtype"] == "int8" and artifact["outputs"][0]["dtype"] == "int8"
    notes = " ".join(artifact["notes"])
    assert f"calibrated on 4 images from {calib_dir}" in notes and "static_wi8_ai8" in notes
    assert "scale" in notes and "zero_point" in notes
    it = interpreter(int8.folder / "model.tflite")
    divisions = op_inputs(it, "DIV")
    assert divisions and all(t["dtype"] == np.float32 for inputs in divisions for t in inputs)
    assert op_inputs(it, "CONV_2D")[0][0]["dtype"] == np.int8  # the convolutions are integer
    matmuls = op_inputs(it, "BATCH_MATMUL")  # the attention core stays float
    assert matmuls and all(t["dtype"] == np.float32 for inputs in matmuls for t in inputs)
    backend = runtime.load(int8.folder)  # float32 in and out, (de)quantized by the backend
    assert backend.inputs[0].dtype == "float32" and backend.io_quantization["input"]["dtype"] == "int8"


def test_fp16_and_int8_dynamic_sizes(b0_export):
    fp32 = (b0_export("fp32").folder / "model.tflite").stat().st_size
    fp16 = (b0_export("fp16").folder / "model.tflite").stat().st_size
    dyn = (b0_export("int8-dynamic").folder / "model.tflite").stat().st_size
    assert 0.4 * fp32 < fp16 < 0.6 * fp32 and dyn < 0.3 * fp32
    inputs = b0_export("fp16").manifest.to_dict()["artifacts"][0]["inputs"]
    assert inputs == [{"name": "input", "shape": [1, 3, 224, 224], "dtype": "float32"}]
    # fp32 and int8-dynamic rewrite the same float graph: converted once in this process; fp16's graph differs
    # (its attention guard is fp16's smallest normal, attention-deploy), so it is its own conversion
    reused = {p: "(the same graph: reused)" in " ".join(
        b0_export(p).manifest.to_dict()["artifacts"][0]["notes"]) for p in ("fp32", "fp16", "int8-dynamic")}
    assert reused["fp32"] != reused["int8-dynamic"] and not reused["fp16"]


def test_calibration_set_preprocesses_like_validation_and_falls_back_with_a_warning(tmp_path):
    card = get_card(B0)
    with pytest.warns(CalibrationWarning, match="bundled sample photos"):
        fallback = calibration_set(None, card, (224, 224))
    assert len(fallback.inputs) == 4 and "bundled sample photos" in fallback.source
    crop = card.preprocess.crop_ratio
    assert torch.equal(fallback.inputs[0], classification_input(sample_photo("astronaut"), 224, crop))
    folder = write_photos(tmp_path / "imgs", ("coffee",))
    (folder / "README.txt").write_text("not an image")
    with pytest.warns(CalibrationWarning, match="ignoring 1 non-image"):
        found = calibration_set(folder, card, (224, 224))
    assert len(found.inputs) == 1 and found.inputs[0].shape == (1, 3, 224, 224)
    (folder / "README.txt").unlink()
    seg = calibration_set(folder, get_card("efficientvit-seg-b0-cityscapes"), (128, 256))
    assert torch.equal(seg.inputs[0], resized_input(folder / "coffee.png", (128, 256)))


@pytest.mark.parametrize("case", ["missing", "empty", "not-images", "corrupt-image", "a-file"])
def test_bad_calib_folder_is_a_one_line_error_and_writes_nothing(tmp_path, case):
    calib = tmp_path / "calib"
    if case != "missing":
        calib.mkdir()
    if case == "not-images":
        (calib / "notes.txt").write_text("hello")
        (calib / "data.csv").write_text("1,2")
    elif case == "corrupt-image":
        write_photos(calib, ("rocket", "chelsea", "coffee", "astronaut"), 64)
        (calib / "broken.png").write_bytes(b"\x89PNG not really")
    elif case == "a-file":
        calib.rmdir()
        calib.write_text("x")
    expected = {"missing": "not found", "empty": "is empty", "not-images": "no image files",
                "corrupt-image": "not an image", "a-file": "must be a folder"}[case]
    out = tmp_path / "out"
    with pytest.raises(EvitError, match=expected) as info:
        run_export(ExportRequest(B0, TARGET, precision="int8", calib=str(calib), output=str(out)))
    assert "\n" not in str(info.value) and "--calib" in str(info.value)
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_precision_not_offered_by_the_profile(tmp_path):
    narrow = tmp_path / "narrow.yaml"
    narrow.write_text(f"extends: {TARGET}\nprecisions: [fp32, fp16]\n")
    for target, precision in ((str(narrow), "int8"), (TARGET, "int4")):
        with pytest.raises(EvitError, match=f"does not offer precision '{precision}'"):
            run_export(ExportRequest(B0, target, precision=precision, output=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_corrupt_tflite_is_a_one_line_error(tmp_path, b0_export):
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x08\x07garbage" * 100)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes((b0_export("fp32").folder / "model.tflite").read_bytes()[:4096])
    for path in (garbage, truncated):
        with pytest.raises(EvitError, match="not a valid .tflite model") as info:
            runtime.load(path)
        assert "\n" not in str(info.value)


def test_missing_extra_is_a_clear_error(tmp_path, monkeypatch, b0_export):
    model_file = b0_export("fp32").folder / "model.tflite"
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # import litert_torch now raises ImportError
    out = tmp_path / "out"
    with pytest.raises(EvitError, match=r"needs the \[tflite\] extra.*pip install 'evit-deploy\[tflite\]'"):
        run_export(ExportRequest(B0, TARGET, output=str(out)))
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(EvitError, match=r"\[tflite\] extra"):
        runtime.load(model_file)


def test_cli_bad_calib_prints_one_line(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = run_cli(["export", B0, "-t", TARGET, "-p", "int8", "--calib", str(tmp_path / "nope"),
                        "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "--calib folder not found" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
