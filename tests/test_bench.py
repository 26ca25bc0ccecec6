"""The latency harness: interleaved measurements of PyTorch and artifacts, reports beside the paper."""

from __future__ import annotations

import json

import pytest

from evit_deploy.bench.harness import BenchSettings, bench_export, parse_batches
from evit_deploy.bench.reference import family_prefix, hardware_rows, model_facts
from evit_deploy.bench.report import write_reports
from evit_deploy.errors import EvitError
from evit_deploy.export.pipeline import ExportRequest, run_export

from .helpers import run_cli


@pytest.fixture(scope="module")
def b1_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "b1"
    return run_export(ExportRequest("efficientvit-b1-r224", "cpu-ort", imgsz=(128,), output=str(out))).folder


def test_bench_export_measures_every_backend_per_batch(b1_export, tmp_path):
    report = bench_export(b1_export, BenchSettings(batches=[1, 2], runs=3, warmup=1, threads=2))
    rows = {(r["backend"], r["batch"]): r for r in report["results"]}
    assert set(rows) == {("pytorch", 1), ("onnxruntime", 1), ("pytorch", 2), ("onnxruntime", 2)}
    for r in report["results"]:
        lat = r["latency_ms"]
        assert lat["min"] <= lat["median"] <= lat["max"] and lat["p90"] <= lat["p99"] <= lat["max"]
        assert r["throughput_img_s"] == pytest.approx(r["batch"] * 1000 / lat["median"])
        assert r["device"].startswith("this machine")
    assert rows[("onnxruntime", 2)]["ratio_to_pytorch"] == pytest.approx(
        rows[("onnxruntime", 2)]["latency_ms"]["median"] / rows[("pytorch", 2)]["latency_ms"]["median"])
    assert report["machine"]["threads"] == 2 and report["machine"]["cpu"]
    assert {"torch", "onnxruntime"} <= set(report["versions"])
    devices = {r["device"] for r in report["reference"]["hardware"]}
    assert devices == {"jetson-nano", "jetson-agx-orin", "snapdragon-8gen1"}
    assert report["reference"]["model"]["top1"] == 79.39

    folder = write_reports(report, tmp_path / "rep")
    saved = json.loads((folder / "report.json").read_text())
    assert saved["results"][0]["backend"] == "pytorch"
    md = (folder / "report.md").read_text()
    assert "| onnxruntime | onnx | fp32 | 2 |" in md and "NVIDIA Jetson AGX Orin" in md and "1.48 ms" in md
    assert "| Qualcomm Snapdragon 8Gen1 (CPU) | TensorFlow-Lite | fp32 | 1 | 19 ms | n/a (CPU) |" in md
    page = (folder / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # latency plot + accuracy-vs-latency plot


def test_static_exports_are_skipped_at_other_batches(tmp_path):
    folder = run_export(ExportRequest("efficientvit-b0-r224", "mobile-cpu-ort", imgsz=(96,),
                                      output=str(tmp_path / "mob"))).folder
    report = bench_export(folder, BenchSettings(batches=[1, 2], runs=2, warmup=1, threads=1))
    measured = {(r["format"], r["batch"]) for r in report["results"]}
    assert measured == {("pytorch-eager", 1), ("onnx", 1), ("ort", 1), ("pytorch-eager", 2)}
    assert len(report["skipped"]) == 2 and all("static batch 1" in s for s in report["skipped"])
    assert report["reference"]["hardware"] == []  # the paper has no B0 figure; nothing is invented


def test_reference_data():
    rows = hardware_rows("efficientvit-seg-l1-ade20k")
    a100 = next(r for r in rows if r["device"] == "a100")
    assert a100["metric"] == "throughput_img_s" and a100["value"] == 947 and a100["batch"] == 16
    assert a100["engine"] == "TensorRT" and a100["precision"] == "fp16" and a100["data_transfer_included"]
    assert model_facts("efficientvit-sam-xl1")["coco_map"] == 47.8
    assert family_prefix("efficientvit-b2-r256") == "efficientvit-b"
    phone = hardware_rows("efficientvit-b2-r256", device_class="phone")  # the paper's mobile row: TFLite fp32 bs1
    assert [(r["device"], r["value"], r["engine"], r["precision"], r["batch"]) for r in phone] == [
        ("snapdragon-8gen1", 72, "TensorFlow-Lite", "fp32", 1)]
    assert {r["device"] for r in hardware_rows("efficientvit-b2-r256", device_class="jetson")} == {
        "jetson-nano", "jetson-agx-orin"}
    assert family_prefix("efficientvit-seg-l2-cityscapes") == "efficientvit-seg-"


def test_parse_batches():
    assert parse_batches("16,1,4") == [1, 4, 16]
    for bad in ("a,b", "0", ""):
        with pytest.raises(EvitError):
            parse_batches(bad)


def test_cli_list_reference_and_errors(capsys, tmp_path):
    assert run_cli(["bench", "--list-reference"]) == 0
    out = capsys.readouterr().out
    assert "efficientvit-seg-b1-cityscapes" in out and "Jetson" in out
    assert run_cli(["bench"]) == 2
    assert run_cli(["bench", "efficientvit-b9", "-o", str(tmp_path / "r")]) == 2
    assert run_cli(["bench", "efficientvit-b0-r224", "--batch", "x", "-o", str(tmp_path / "r")]) == 2
    assert "--batch takes comma-separated integers" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cli_bench_export_dir(b1_export, tmp_path, capsys):
    assert run_cli(["bench", str(b1_export), "--runs", "2", "--warmup", "1", "--threads", "1",
                    "-o", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.html").is_file()
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["settings"]["runs"] == 2 and report["machine"]["threads"] == 1


def test_benchmarked_onnxruntime_sessions_do_not_spin(b1_export):
    from evit_deploy import runtime

    backend = runtime.load(b1_export, threads=2, shared_cpu=True)
    options = backend.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 2


@pytest.mark.parametrize("kind", ["bench", "eval"])
def test_report_folder_holding_files_not_ours_is_refused_and_kept(tmp_path, kind):
    from evit_deploy.bench.report import check_report_folder as check_bench
    from evit_deploy.eval.report import check_report_folder as check_eval

    check, name, ours, what = {
        "bench": (check_bench, "report.md", {"results": [], "machine": {}, "model": "m"}, "a benchmark report"),
        "eval": (check_eval, "eval.md", {"model": "m", "dataset": {}, "results": []}, "an evaluation report"),
    }[kind]
    json_name = "report.json" if kind == "bench" else "eval.json"
    check(tmp_path / "new" / "deeper")  # nothing there yet: fine
    (tmp_path / name).write_text("the user's notes")
    with pytest.raises(EvitError, match=f"refusing to overwrite .*{name}: it is not {what} written by evit-deploy"):
        check(tmp_path)
    assert (tmp_path / name).read_text() == "the user's notes"
    (tmp_path / json_name).write_text(json.dumps(ours))
    check(tmp_path)  # a previous report of ours: may be replaced
    (tmp_path / "file").write_text("x")
    with pytest.raises(EvitError, match="exists and is not a folder"):
        check(tmp_path / "file")
