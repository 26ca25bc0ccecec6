"""The measurement protocol (each backend in its own worker process, alternating blocks, settling on confidence
intervals), the native tools beside the rows, the typed report model and its one renderer."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from evit_deploy.bench import native, protocol
from evit_deploy.bench.harness import bench_export, parse_batches
from evit_deploy.bench.reference import family_prefix, hardware_rows, model_facts
from evit_deploy.bench.render import check_report_folder, write_report
from evit_deploy.bench.schema import SCHEMA, Report, read_report
from evit_deploy.bench.stats import summarize
from evit_deploy.errors import EvitError
from evit_deploy.export.pipeline import ExportRequest, run_export

from .fakes.tools import executable
from .helpers import FAST_ARGS, fast_bench, run_cli


@pytest.fixture(scope="module")
def b1_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "b1"
    return run_export(ExportRequest("efficientvit-b1-r224", "cpu-ort", imgsz=(128,), output=str(out))).folder


# -- statistics -------------------------------------------------------------------------------------------------------
def test_one_statistics_function_percentiles_and_median_interval():
    rng = np.random.default_rng(0)
    blocks = [list(10 + rng.normal(0, 0.2, 30)) for _ in range(8)]
    s = summarize(blocks)
    calls = np.concatenate(blocks)
    assert s.n == 240 and s.blocks == 8
    assert s.median == pytest.approx(np.median(calls)) and s.p10 == pytest.approx(np.percentile(calls, 10))
    assert s.p10 <= s.median <= s.p90 <= s.p99 <= s.max and s.ci_low <= s.median <= s.ci_high
    assert s.ci_pct < 2  # tight, steady blocks
    # A drifting machine: half the blocks 30% slower. Calls inside a block are not independent samples, so the
    # interval (a bootstrap over whole blocks) must be wide, not the ±0.5% the 240 calls alone would suggest.
    drift = [list(10 * (1.3 if i % 2 else 1.0) + rng.normal(0, 0.2, 30)) for i in range(8)]
    assert summarize(drift).ci_pct > 5
    single = summarize([[5.0, 6.0, 7.0, 8.0]])  # one block (a load test's latencies): calls resampled
    assert single.ci_low is not None and single.blocks == 1
    assert summarize([]).n == 0 and summarize([]).median is None


# -- the protocol on a real export ------------------------------------------------------------------------------------
def test_bench_export_measures_every_backend_per_batch_in_worker_processes(b1_export, tmp_path):
    report = bench_export(b1_export, fast_bench(threads=2, batches=[1, 2], native=True))
    rows = {(r.backend, r.batch): r for r in report.rows}
    assert set(rows) == {("pytorch", 1), ("onnxruntime", 1), ("pytorch", 2), ("onnxruntime", 2)}
    for r in report.rows:
        lat = r.latency
        assert lat.blocks >= 2 and lat.min <= lat.p10 <= lat.median <= lat.p90 <= lat.max
        assert r.throughput_img_s == pytest.approx(r.batch * 1000 / lat.median)
        assert r.status in ("ok", "unsettled") and r.load_s > 0 and r.overhead is not None
        assert r.settings["threads"] == 2  # what the runtime (or PyTorch) in the worker reported
    ort = rows[("onnxruntime", 2)]
    assert ort.ratio_to_eager == pytest.approx(ort.latency.median / rows[("pytorch", 2)].latency.median)
    assert ort.settings["spinning"] == "on (ONNX Runtime's default)"  # production settings, not the old spin-off
    assert ort.native.status == "not applicable"  # onnxruntime_perf_test is not in the wheel: said, not failed
    assert report.machine.threads == 2 and report.machine.cpu and report.machine.load_end is not None
    assert {"torch", "onnxruntime"} <= set(report.versions)
    assert {r.device for r in report.references} == {"jetson-nano", "jetson-agx-orin", "snapdragon-8gen1"}
    assert report.sections["published_model"]["top1"] == 79.39

    folder = write_report(report, tmp_path / "rep")
    saved = json.loads((folder / "report.json").read_text())
    assert saved["schema"] == SCHEMA and saved["generator"] == "evit-deploy" and saved["kind"] == "bench"
    again = read_report(folder)  # typed round trip
    assert [(r.format, r.batch, r.latency.median) for r in again.rows] == [
        (r.format, r.batch, r.latency.median) for r in report.rows]
    md = (folder / "report.md").read_text()
    assert "| onnxruntime | onnx | fp32 | 2 |" in md and "NVIDIA Jetson AGX Orin" in md and "1.48 ms" in md
    assert "| Qualcomm Snapdragon 8Gen1 (CPU) | TensorFlow-Lite | fp32 | 1 | 19 ms |" in md
    assert "## How a row is measured" in md and "its own worker process" in md
    page = (folder / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # latency plot + accuracy-vs-latency plot


def test_static_exports_are_skipped_at_other_batches(tmp_path):
    folder = run_export(ExportRequest("efficientvit-b0-r224", "mobile-cpu-ort", imgsz=(96,),
                                      output=str(tmp_path / "mob"))).folder
    report = bench_export(folder, fast_bench(batches=[1, 2]))
    measured = {(r.format, r.batch) for r in report.rows}
    assert measured == {("pytorch-eager", 1), ("onnx", 1), ("ort", 1), ("pytorch-eager", 2)}
    assert len(report.skipped) == 2 and all("static batch 1" in s for s in report.skipped)
    assert report.references == []  # the paper has no B0 figure; nothing is invented


def test_a_worker_that_dies_fails_its_row_and_the_others_finish(cls_export, monkeypatch):
    original = protocol.WorkerHandle.ask

    def ask(self, *message):  # noqa: ANN001, ANN002, ANN202
        if message[0] == "block" and self.spec.kind == "artifact":
            self.process.kill()  # the ONNX Runtime worker dies mid-run (an OOM kill, a segfault)
        return original(self, *message)

    monkeypatch.setattr(protocol.WorkerHandle, "ask", ask)
    report = bench_export(cls_export[0], fast_bench())
    onnx, eager = report.row(format="onnx"), report.row(format="pytorch-eager")
    assert onnx.status == "failed" and "exit code -9" in onnx.error
    assert eager.status in ("ok", "unsettled") and eager.latency.blocks >= 2


def test_a_budget_too_small_names_the_rows_that_did_not_settle(cls_export):
    report = bench_export(cls_export[0], fast_bench(budget_s=0.001, min_blocks=5))
    assert all(r.status == "unsettled" for r in report.rows)
    assert all("did not settle within the 0.001 s budget" in r.error for r in report.rows)


def test_a_worker_that_cannot_load_is_a_failed_row_not_a_traceback(cls_export, tmp_path):
    from evit_deploy.bench.worker import WorkerSpec

    spec = WorkerSpec("x", "artifact", str(cls_export[0]), 1, 1, artifact="nope.onnx")
    out = protocol.run([protocol.Contender("x", spec)], fast_bench().protocol)
    assert out["x"].status == "failed" and "lists no artifact nope.onnx" in out["x"].error


# -- native tools -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["missing", "crashes", "prints something else", "agrees"])
def test_native_tool_beside_the_row(tflite_b0, tmp_path, monkeypatch, case):
    """A stand-in for litert-benchmark: checks our side (command, parsing, statuses); the real tool runs below."""
    tool = native.NATIVE_TOOLS["litert-benchmark"]
    scripts = {
        "crashes": 'echo "RuntimeError: Failed to create delegate" >&2; exit 3',
        "prints something else": 'echo "hello"',
        "agrees": 'for a in "$@"; do last="$a"; done\n'
                  'echo \'{"latency": {"median_ms": 1000.0, "avg_ms": 1000.0, "num_runs": 10}}\' > "$last"',
    }
    name = "no-such-litert-benchmark" if case == "missing" else "fake-litert-benchmark"
    if case != "missing":
        executable(tmp_path, name, scripts[case])
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setitem(native.NATIVE_TOOLS, "litert-benchmark",
                        native.NativeTool(tool.name, tool.formats, name, tool.comes_with, tool.command, tool.read,
                                          tool.told, tool.differences))
    report = bench_export(tflite_b0, fast_bench(native=True))
    n = report.row(format="tflite").native
    assert report.row(format="tflite").status in ("ok", "unsettled")  # the row itself is unharmed
    if case == "missing":
        assert n.status == "not installed" and "comes with the ai-edge-litert wheel" in n.detail
    elif case == "crashes":
        assert n.status == "failed" and n.detail == ("litert-benchmark exited 3: RuntimeError: Failed to create "
                                                     "delegate")
    elif case == "prints something else":
        assert n.status == "unparsed" and "wrote no result.json" in n.detail
    else:
        assert n.status == "measured" and n.latency.median == 1000.0 and n.command[:2] == [name, "--model"]
        assert "--num_threads" in n.command and n.ratio == pytest.approx(report.row(format="tflite").latency.median
                                                                          / 1000.0)
        assert n.differs  # a stand-in second per call is not what our row measured: flagged with what differs
        md = write_report(report, tmp_path / "rep").joinpath("report.md").read_text()
        assert "is outside 0.9–1.1" in md and "CompiledModel API" in md


@pytest.fixture(scope="module")
def tflite_b0(tmp_path_factory):
    out = tmp_path_factory.mktemp("tfl") / "b0"
    # B0 at 224 with the zoo's weights: the demo's TFLite export, so the session converts that graph once
    return run_export(ExportRequest("efficientvit-b0-r224", "mobile-cpu-tflite", output=str(out))).folder


def test_the_real_native_tools_run_on_the_same_file(tflite_b0, tmp_path):
    """litert-benchmark (ai-edge-litert) and benchmark_app (openvino) as installed, in the same alternation."""
    ov = run_export(ExportRequest("efficientvit-b0-r224", "cpu-openvino", imgsz=(96,), precision="fp32",
                                  output=str(tmp_path / "ov"))).folder
    for folder, fmt, tool in ((tflite_b0, "tflite", "litert-benchmark"), (ov, "openvino", "benchmark_app")):
        row = bench_export(folder, fast_bench(native=True)).row(format=fmt)
        assert row.native.tool == tool and row.native.status == "measured", row.native.detail
        assert row.native.latency.median > 0 and row.native.ratio == pytest.approx(
            row.latency.median / row.native.latency.median)
    assert "-infer_precision" in row.native.command and "f32" in row.native.command  # the precision, explicitly


# -- reports ----------------------------------------------------------------------------------------------------------
def test_old_and_foreign_report_files(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "report.json").write_text(json.dumps({"results": [], "machine": {}, "model": "m"}))  # schema 1
    with pytest.raises(EvitError, match="older evit-deploy .*measure again"):
        read_report(old)
    check_report_folder(old)  # an old report of ours may be replaced
    (old / "report.json").write_text(json.dumps({"schema": 99, "generator": "evit-deploy", "kind": "bench"}))
    with pytest.raises(EvitError, match="report schema 99; this evit-deploy reads schema 2"):
        read_report(old)
    (old / "report.json").write_text("[" * 100_000)
    with pytest.raises(EvitError, match="cannot read"):
        read_report(old)


@pytest.mark.parametrize("kind", ["bench", "eval"])
def test_report_folder_holding_files_not_ours_is_refused_and_kept(tmp_path, kind):
    from evit_deploy.eval.report import check_report_folder as check_eval

    check, name, ours, what = {
        "bench": (check_report_folder, "report.md", Report("bench", "t", _machine()).to_dict(), "a report"),
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


def _machine():  # noqa: ANN202
    from evit_deploy.bench.schema import Machine

    return Machine(label="test")


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


# -- the command line -------------------------------------------------------------------------------------------------
def test_cli_reference_and_errors(capsys, tmp_path):
    assert run_cli(["bench", "reference"]) == 0
    out = capsys.readouterr().out
    assert "efficientvit-seg-b1-cityscapes" in out and "Jetson" in out
    assert run_cli(["bench", "run", "efficientvit-b9", "-o", str(tmp_path / "r")]) == 2
    assert run_cli(["bench", "efficientvit-b0-r224", "--batch", "x", "-o", str(tmp_path / "r")]) == 2
    assert "--batch takes comma-separated integers" in capsys.readouterr().err
    assert run_cli(["bench", "run", "efficientvit-b0-r224", "--min-blocks", "1"]) == 2  # a CI needs two blocks
    assert not (tmp_path / "r").exists()


def test_cli_bench_run_export_dir(cls_export, tmp_path):
    assert run_cli(["bench", "run", str(cls_export[0]), *FAST_ARGS, "-o", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.html").is_file()
    report = read_report(tmp_path / "rep")
    assert report.settings["block_s"] == 0.02 and report.machine.threads == 1
    assert {r.format for r in report.rows} == {"pytorch-eager", "onnx"}
    # `bench EXPORT` is `bench run EXPORT`, the same report
    assert run_cli(["bench", str(cls_export[0]), *FAST_ARGS, "-o", str(tmp_path / "rep")]) == 0
