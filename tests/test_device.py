"""Device bundles (Android: adb + LiteRT benchmark_model / onnxruntime_perf_test; Jetson: trtexec), the parsers of
the tools' outputs, `bench import` and `bench --adb` against a stand-in adb.

No phone or Jetson runs here: the samples below are written in the tools' documented formats (each cites its
source) and the stand-in adb only records its arguments. They test our side of the contract, not a device.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from evit_deploy.device.bundle import make_bundle, read_bundle
from evit_deploy.device.parsers import (
    load_json,
    parse_benchmark_log,
    parse_op_profile,
    parse_perf_test_log,
    parse_trtexec_times,
)
from evit_deploy.device.settings import DeviceSettings
from evit_deploy.errors import EvitError
from evit_deploy.export.pipeline import ExportRequest, run_export
from evit_deploy.processing import preprocess
from evit_deploy.samples import sample_photo
from evit_deploy.zoo import get_card

from .fakes.adb import install_fake_adb
from .helpers import run_cli

B1 = "efficientvit-b1-r224"  # the paper has Snapdragon 8Gen1, Jetson Nano and AGX Orin figures for it
HAS_TFLITE = find_spec("litert_torch") is not None and find_spec("ai_edge_litert") is not None
needs_tflite = pytest.mark.skipif(not HAS_TFLITE, reason="the [tflite] extra is not installed")

# ------------------------------------------------------------------------------------------ samples (formats)
# LiteRT benchmark_model, newer builds (TFLITE_LOG "INFO: " prefix): tensorflow/lite/tools/benchmark/
# benchmark_model.cc (LogParams "Num threads: [4]", "Graph: [path]"; Run() logs "Running benchmark for at least
# ..." then the Stat line of tensorflow/core/util/stats_calculator.h: "count= first= curr= min= max= avg= std=";
# OnBenchmarkEnd: "Inference timings in us: Init: , First inference: , Warmup (avg): , Inference (avg): ",
# "Memory footprint delta from the start of the tool (MB): init= overall=", "Overall peak memory footprint (MB)
# via periodic monitoring: "). {graph} and {size} are filled with the bundle's model.
BENCHMARK_LOG_NEW = """INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Min num runs: [100]
INFO: Min warmup runs: [10]
INFO: Num threads: [4]
INFO: Graph: [{graph}]
INFO: Report the peak memory footprint: [1]
INFO: #threads used for CPU inference: [4]
INFO: Use xnnpack: [1]
INFO: Loaded model {graph}
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be partially executed by the delegate w/ 8 \
delegate kernels.
INFO: The input model file size (MB): {size}
INFO: Initialized session in 41.345ms.
INFO: Running benchmark for at least 10 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=27 first=23164 curr=18562 min=18342 max=23164 avg=18795.4 std=956

INFO: Running benchmark for at least 100 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=100 first=18601 curr=18611 min=18297 max=19544 avg=18654.2 std=212

INFO: Inference timings in us: Init: 41345, First inference: 23164, Warmup (avg): 18795.4, Inference (avg): 18654.2
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the \
actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=52.1328 overall=61.0508
INFO: Overall peak memory footprint (MB) via periodic monitoring: 66.2461
INFO: Memory status at the end of exeution:
INFO: - VmRSS              : 63 MB
INFO: + RssAnnon           : 33 MB
INFO: + RssFile + RssShmem : 30 MB
"""
# Older builds (no prefix; "Peak memory footprint (MB): init= overall=" from the older OnBenchmarkEnd): the
# statistics lines are those of a published Android log of benchmark_model (yolov5s fp32, 4 threads).
BENCHMARK_LOG_OLD = """STARTING!
Log parameter values verbosely: [0]
Num threads: [4]
Graph: [/data/local/tmp/model.tflite]
#threads used for CPU inference: [4]
Loaded model /data/local/tmp/model.tflite
INFO: Initialized TensorFlow Lite runtime.
The input model file size (MB): 29.2124
Initialized session in 16.242ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=2 first=360262 curr=248910 min=248910 max=360262 avg=304586 std=55676

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=249042 curr=250889 min=247067 max=254474 avg=249684 std=1442

Inference timings in us: Init: 16242, First inference: 360262, Warmup (avg): 304586, Inference (avg): 249684
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual \
memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=4.92969 overall=138.809
"""
# Every run the same (Stat::OutputToStream prints "count=N curr=C(all same)"), warm-up of one run ("count=1 curr=").
BENCHMARK_LOG_ALL_SAME = """Graph: [/data/local/tmp/model.tflite]
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=9000

Running benchmark for at least 3 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=3 curr=8000(all same)

Inference timings in us: Init: 1000, First inference: 9000, Warmup (avg): 9000, Inference (avg): 8000
"""
# --profiling_output_csv_file: tools/benchmark/profiling_listener.cc section titles; core/util/stats_calculator.cc
# with format_as_csv (older header with "start"; rows "type, start, first, avg_ms, pct%, cdf%, mem KB, times, name").
OP_PROFILE_CSV_OLD = """Profiling Info for Benchmark Initialization:
============================== Run Order ==============================
node type, start, first, avg_ms, %, cdf%, mem KB, times called, name
ModifyGraphWithDelegate, 0, 9.021, 9.021, 87.9532%, 87.9532%, 3716, 1, ModifyGraphWithDelegate/0
AllocateTensors, 9.021, 1.235, 1.235, 12.0468%, 100%, 0, 1, AllocateTensors/0

Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
node type, start, first, avg_ms, %, cdf%, mem KB, times called, name
TfLiteXNNPackDelegate, 0.004, 5.312, 5.101, 27.3444%, 27.3444%, 0, 1, [model/stem/conv]:112
TRANSPOSE, 5.106, 0.412, 0.398, 2.13353%, 29.4779%, 0, 1, [model/stages.3/transpose]:113
BATCH_MATMUL, 5.505, 2.901, 2.876, 15.4171%, 44.895%, 0, 1, [model/stages.3/context_module/matmul, v]:114

============================== Top by Computation Time ==============================
node type, start, first, avg_ms, %, cdf%, mem KB, times called, name
TfLiteXNNPackDelegate, 0.004, 5.312, 5.101, 27.3444%, 27.3444%, 0, 1, [model/stem/conv]:112
"""
# Newer stats_calculator.cc: no "start" column, commas in names become tabs; XNNPACK op types contain commas.
OP_PROFILE_CSV_NEW = """Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
node type, first, avg_ms, %, cdf%, mem KB, times called, name
Convolution (NHWC, F32) IGEMM, 1.412, 1.388, 40.1%, 40.1%, 0, 1, Delegate/Convolution (NHWC\tF32) IGEMM:0
Transpose (ND, X32), 0.211, 0.2, 5.77%, 45.87%, 0, 1, Delegate/Transpose (ND\tX32):1
"""
# onnxruntime_perf_test (onnxruntime/test/perftest/performance_runner.cc), as in Arm's published run of it.
PERF_TEST_LOG = """Setting intra_op_num_threads to 4
Session creation time cost: 0.217932 s
First inference time cost: 196 ms
Total inference time cost: 0.49481 s
Total inference requests: 5
Average inference time cost total: 98.961997 ms
Total inference run time: 0.494854 s
Number of inferences per second: 10.104
Avg CPU usage: 11 %
Peak working set size: 271122432 bytes
Avg CPU usage:11
Peak working set size:271122432
Runs:5
Min Latency: 0.0958204 s
Max Latency: 0.101519 s
P50 Latency: 0.0995086 s
P90 Latency: 0.101519 s
P95 Latency: 0.101519 s
P99 Latency: 0.101519 s
P999 Latency: 0.101519 s
"""


def trtexec_times(latencies: list[float], keys: str, warmup_records: int = 0, start_ms: float = 600.0) -> str:
    """A trtexec --exportTimes file in exportJSONTrace's layout (samples/common/sampleReporting.cpp): "[", then
    records "  { ... }" / ", { ... }" with keys separated by ", " and values printed like C++ streams (6 digits).
    ``keys``: "trt10" (h2dMs/d2hMs, no endToEndMs, warm-up skipped), "trt8" (+ endToEndMs), "trt7" (inMs/outMs)."""
    lines = ["["]
    for i, lat in enumerate([9.0] * warmup_records + latencies):
        t = 20.0 * i if i < warmup_records else start_ms + 50.0 * (i - warmup_records)  # warm-up: before 500 ms
        h2d, d2h = 0.031, 0.012
        compute = lat - h2d - d2h
        rec = {"startEnqMs": t, "endEnqMs": t + 0.1} if keys != "trt7" else {}
        if keys == "trt7":
            rec |= {"startInMs": t, "endInMs": t + h2d, "startComputeMs": t + h2d, "endComputeMs": t + h2d + compute,
                    "startOutMs": t + h2d + compute, "endOutMs": t + lat, "inMs": h2d, "computeMs": compute,
                    "outMs": d2h, "latencyMs": lat, "endToEndMs": lat + 0.2}
        else:
            rec |= {"startH2dMs": t, "endH2dMs": t + h2d, "startComputeMs": t + h2d, "endComputeMs": t + h2d + compute,
                    "startD2hMs": t + h2d + compute, "endD2hMs": t + lat, "h2dMs": h2d, "computeMs": compute,
                    "d2hMs": d2h, "latencyMs": lat}
            if keys == "trt8":
                rec["endToEndMs"] = lat + 0.2
        body = ", ".join(f'"{k}" : {v:.6g}' for k, v in rec.items())
        lines.append(("  " if i == 0 else ", ") + "{ " + body + " }")
    return "\n".join(lines) + "\n]\n"


def trtexec_output(name: str, values: np.ndarray) -> str:
    """trtexec --exportOutput (exportJSONOutput): name, "AxB" dimensions, values printed like C++ streams."""
    text = ", ".join("nan" if np.isnan(v) else f"{v:.6g}" for v in values.ravel())
    dims = "x".join(str(d) for d in values.shape)
    return f'[\n  {{ "name" : "{name}"\n  , "dimensions" : "{dims}"\n  , "values" : [ {text} ]\n  }}\n]\n'


def trtexec_profile(layers: list[tuple[str, float]], count: int = 100) -> str:
    """trtexec --exportProfile (Profiler::exportJSONProfile, TensorRT 10 with medianMs)."""
    total = sum(avg for _, avg in layers)
    rows = [f'  {{ "count" : {count} }}']
    rows += [f', {{ "name" : "{n}", "timeMs" : {avg * count:.6g}, "averageMs" : {avg:.6g}, "medianMs" : {avg:.6g}, '
             f'"percentage" : {avg / total * 100:.6g} }}' for n, avg in layers]
    return "[\n" + "\n".join(rows) + "\n]\n"


# ------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def profiles(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("profiles")
    light = "validation: {photos: [astronaut], noise: 1}\n"
    (folder / "light-tflite.yaml").write_text("extends: mobile-cpu-tflite\n" + light)
    (folder / "light-jetson.yaml").write_text("extends: jetson-orin-trt\n" + light)
    return folder


def _export(folder: Path, target: Path | str, model: str = B1, **kw) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights
        return run_export(ExportRequest(model, str(target), output=str(folder), **kw)).folder


@pytest.fixture(scope="module")
def tflite_export(tmp_path_factory, profiles) -> Path:
    if not HAS_TFLITE:
        pytest.skip("the [tflite] extra is not installed")
    return _export(tmp_path_factory.mktemp("b1t") / "export", profiles / "light-tflite.yaml")


@pytest.fixture(scope="module")
def jetson_export(tmp_path_factory, profiles) -> Path:
    return _export(tmp_path_factory.mktemp("b1j") / "export", profiles / "light-jetson.yaml")


@pytest.fixture(scope="module")
def android_bundle(tmp_path_factory, tflite_export) -> Path:
    settings = DeviceSettings(taskset="f0", op_profiling=True, runs=100, warmup_runs=10)
    return make_bundle(tflite_export, "android", tmp_path_factory.mktemp("ab") / "bundle", settings)


@pytest.fixture(scope="module")
def jetson_bundle(tmp_path_factory, jetson_export) -> Path:
    return make_bundle(jetson_export, "jetson", tmp_path_factory.mktemp("jb") / "bundle")


def android_log(bundle: Path) -> str:
    doc = read_bundle(bundle).doc
    return BENCHMARK_LOG_NEW.format(graph=doc["run"]["model_on_device"], size=f"{doc['artifact']['bytes'] / 1e6:.6g}")


def android_results(bundle: Path, folder: Path, scale: float = 1.0, nan: bool = False) -> Path:
    """A results folder as run.sh leaves it: the log, the op profile, the device sha, the golden outputs."""
    doc = read_bundle(bundle).doc
    (folder / "golden").mkdir(parents=True)
    (folder / "BUNDLE_ID").write_text(doc["bundle_id"] + "\n")
    (folder / "benchmark_model.log").write_text(android_log(bundle))
    (folder / "op_profile.csv").write_text(OP_PROFILE_CSV_OLD)
    (folder / "device-sha256.txt").write_text(f"{doc['artifact']['sha256']}  {doc['run']['model_on_device']}\n")
    for g in doc["golden"]:
        out = np.load(bundle / g["reference"]["logits"]["npy"]) * np.float32(scale)
        if nan:
            out[0, :3] = np.nan
        out.astype(np.float32).tofile(folder / g["device_output"])
        (folder / "golden" / f"{g['stem']}.log").write_text("INFO: Inference timings in us: Init: 1, First "
                                                            "inference: 1, Warmup (avg): 1, Inference (avg): 1\n")
    return folder


def one_line_exit_2(capsys, args: list[str]) -> str:
    code = run_cli(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ----------------------------------------------------------------------------------------------- the bundles


@needs_tflite
def test_android_bundle_holds_artifact_golden_io_commands_and_hashes(android_bundle, tflite_export):
    b = read_bundle(android_bundle)  # every file hash-checked
    doc = b.doc
    assert doc["device"] == "android" and doc["device_class"] == "phone" and doc["tool"] == "benchmark_model"
    assert (android_bundle / "export" / "model.tflite").read_bytes() == (tflite_export / "model.tflite").read_bytes()
    listed = set(doc["files"])
    on_disk = {p.relative_to(android_bundle).as_posix() for p in android_bundle.rglob("*") if p.is_file()}
    assert on_disk == listed | {"bundle.json"}
    # golden inputs: the export's validation photo, pre-processed exactly as its validation does, plus noise
    photo = doc["golden"][0]
    assert photo["label"] == "photo:astronaut" and doc["golden"][1]["label"] == "noise:0"
    expected = preprocess(sample_photo("astronaut"), get_card(B1), (224, 224)).numpy()
    raw = np.fromfile(android_bundle / photo["inputs"]["input"]["bin"], dtype=np.float32).reshape(1, 3, 224, 224)
    assert np.array_equal(raw, expected) and np.array_equal(np.load(android_bundle / photo["inputs"]["input"]["npy"]),
                                                             expected)
    ref = np.load(android_bundle / photo["reference"]["logits"]["npy"])
    assert ref.shape == (1, 1000) and np.isfinite(ref).all()

    script = (android_bundle / "run.sh").read_text()
    subprocess.run(["bash", "-n", str(android_bundle / "run.sh")], check=True)
    dev = doc["run"]["device_dir"]
    for flag in ("--graph=", "--num_threads=4", "--use_xnnpack=true", "--warmup_runs=10", "--num_runs=100",
                 "--report_peak_memory_footprint=true", "--enable_op_profiling=true",
                 f"--profiling_output_csv_file={dev}/out/op_profile.csv", "taskset f0", "--input_layer=input",
                 "--input_layer_shape=1,3,224,224", f"--input_layer_value_files=input:{dev}/golden/",
                 f"--output_filepath={dev}/out/00-photo-astronaut.out.bin"):
        assert flag in script, flag
    assert f'"$ADB" push export/model.tflite {dev}/model.tflite' in script
    assert f'"$ADB" push "$BENCHMARK_MODEL" {doc["settings"]["device_dir"]}/benchmark_model' in script
    readme = (android_bundle / "README.md").read_text()
    assert "android_aarch64_benchmark_model" in readme and "inference_diff" in readme and "bench import" in readme


def test_jetson_bundle_builds_with_the_exports_trtexec_lines_then_times_and_runs_golden(jetson_bundle, jetson_export):
    doc = read_bundle(jetson_bundle).doc
    assert doc["tool"] == "trtexec" and doc["device_class"] == "jetson" and doc["run"]["precision"] == "fp16"
    assert (jetson_bundle / "export" / "build_engine.sh").read_text() == (jetson_export / "build_engine.sh").read_text()
    script = (jetson_bundle / "run.sh").read_text()
    subprocess.run(["bash", "-n", str(jetson_bundle / "run.sh")], check=True)
    assert "bash export/build_engine.sh model" in script and "[ ! -e export/model.engine ]" in script
    timing = next(s["bash"] for s in doc["run"]["steps"] if "timing" in s["tags"])
    for flag in ('"$TRTEXEC" --loadEngine=export/model.engine', "--warmUp=500", "--iterations=100",
                 "--exportTimes=results/times.json", "--exportProfile=results/profile.json", "--separateProfileRun"):
        assert flag in timing, flag
    golden = [s["bash"] for s in doc["run"]["steps"] if "golden" in s["tags"]]
    assert len(golden) == 2 and "--loadInputs=input:golden/inputs/00-photo-astronaut.input.bin" in golden[0]
    assert "--exportOutput=results/golden/00-photo-astronaut.output.json" in golden[0]


def test_bundle_from_a_dynamic_cpu_ort_export_and_refusals(cls_export, tmp_path, capsys):
    folder, ckpt = cls_export
    err = one_line_exit_2(capsys, ["device-bundle", str(folder), "--device", "android", "-o", str(tmp_path / "a")])
    assert "mobile-cpu-tflite" in err and not (tmp_path / "a").exists()
    err = one_line_exit_2(capsys, ["device-bundle", str(folder), "--device", "jetson", "-o", str(tmp_path / "j")])
    assert "--weights" in err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    one_line_exit_2(capsys, ["device-bundle", str(folder), "-d", "jetson", "-w", str(ckpt), "-o", str(mine)])
    assert (mine / "notes.txt").read_text() == "mine"
    one_line_exit_2(capsys, ["device-bundle", str(folder), "-d", "android", "--taskset", "xyz", "-o", str(mine)])
    # trtexec lines derived from the ONNX (dynamic batch): timing at batch 1, golden at the validation batch
    assert run_cli(["device-bundle", str(folder), "-d", "jetson", "-w", str(ckpt), "-o", str(tmp_path / "j")]) == 0
    doc = read_bundle(tmp_path / "j").doc
    steps = [s["bash"] for s in doc["run"]["steps"]]
    assert (tmp_path / "j" / "export" / "build_engine.sh").is_file()
    assert any("--shapes=input:1x3x224x224" in s and "--exportTimes" in s for s in steps)
    assert any("--shapes=input:2x3x224x224" in s and "--loadInputs" in s for s in steps)


# ---------------------------------------------------------------------------------------------------- parsers


def test_benchmark_model_logs_new_old_and_all_same():
    new = parse_benchmark_log(BENCHMARK_LOG_NEW.format(graph="/x/model.tflite", size="36.5807"), "new.log")
    assert new.count == 100 and new.statistic == "mean" and new.latency_ms["mean"] == 18.6542
    assert new.latency_ms["median"] is None and new.latency_ms["p90"] is None  # the tool gives none: not estimated
    assert (new.latency_ms["min"], new.latency_ms["max"], new.latency_ms["std"]) == (18.297, 19.544, 0.212)
    assert new.memory_mb == {"init_mb": 52.1328, "overall_mb": 61.0508, "peak_mb": 66.2461}
    assert new.facts == {"graph": "/x/model.tflite", "threads": 4, "model_size_mb": "36.5807"}
    assert new.details["warmup_runs"]["count"] == "27" and new.details["first_inference_us"] == "23164"
    old = parse_benchmark_log(BENCHMARK_LOG_OLD, "old.log")
    assert old.count == 50 and old.latency_ms["mean"] == 249.684 and old.memory_mb == {"init_mb": 4.92969,
                                                                                      "overall_mb": 138.809}
    same = parse_benchmark_log(BENCHMARK_LOG_ALL_SAME, "same.log")
    assert same.count == 3 and same.latency_ms["mean"] == same.latency_ms["min"] == 8.0 and same.latency_ms["std"] == 0
    only = parse_benchmark_log("Inference timings" + BENCHMARK_LOG_OLD.split("Inference timings")[1], "x")
    assert only.latency_ms["mean"] == 249.684 and only.count is None and only.latency_ms["min"] is None


def test_benchmark_model_log_errors():
    with pytest.raises(EvitError, match="did not finish"):
        parse_benchmark_log(BENCHMARK_LOG_OLD.split("Inference timings")[0], "cut.log")
    with pytest.raises(EvitError, match="not a LiteRT benchmark_model log"):
        parse_benchmark_log("hello\nworld\n", "x.log")
    with pytest.raises(EvitError, match="2 benchmark_model runs"):
        parse_benchmark_log(BENCHMARK_LOG_OLD + BENCHMARK_LOG_OLD, "twice.log")
    with pytest.raises(EvitError, match="inconsistent"):
        parse_benchmark_log(BENCHMARK_LOG_OLD.replace("Inference (avg): 249684", "Inference (avg): 1"), "bad.log")


def test_op_profiles_old_and_new_csv():
    old = parse_op_profile(OP_PROFILE_CSV_OLD, "old.csv")  # the regular runs, not the initialization section
    assert [(t.kind, t.avg_ms, t.percent) for t in old] == [
        ("TfLiteXNNPackDelegate", 5.101, 27.3444), ("TRANSPOSE", 0.398, 2.13353), ("BATCH_MATMUL", 2.876, 15.4171)]
    assert old[2].name == "[model/stages.3/context_module/matmul, v]:114"  # commas in names (older builds)
    new = parse_op_profile(OP_PROFILE_CSV_NEW, "new.csv")
    assert new[0].kind == "Convolution (NHWC, F32) IGEMM" and new[0].avg_ms == 1.388 and new[1].percent == 5.77
    with pytest.raises(EvitError, match="not a benchmark_model op profile"):
        parse_op_profile("a, b\n1, 2\n", "x.csv")


def test_onnxruntime_perf_test_log():
    t = parse_perf_test_log(PERF_TEST_LOG, "perf.log")
    assert t.count == 5 and t.statistic == "median" and t.latency_ms["median"] == 99.5086
    assert t.latency_ms["mean"] == 98.961997 and t.latency_ms["p90"] == 101.519 and t.latency_ms["min"] == 95.8204
    assert t.memory_mb["peak_working_set_mb"] == pytest.approx(271122432 / 2**20)
    with pytest.raises(EvitError, match="did not finish"):
        parse_perf_test_log("Session creation time cost: 0.2 s\n", "cut.log")


@pytest.mark.parametrize("keys", ["trt10", "trt8", "trt7"])
def test_trtexec_times_newer_and_older_key_names(keys):
    lat = [1.61, 1.52, 1.55, 1.71, 1.5, 1.58, 1.49]
    warm = 0 if keys == "trt10" else 4  # before TensorRT 10 the export includes the warm-up iterations
    t = parse_trtexec_times(load_json(trtexec_times(lat, keys, warm), "t.json"), "t.json", warmup_ms=500)
    printed = [float(f"{v:.6g}") for v in lat]
    assert t.count == len(lat) and t.details["warmup_records_dropped"] == warm
    assert t.latency_ms["median"] == float(np.median(printed)) and t.latency_ms["mean"] == pytest.approx(
        sum(printed) / len(printed), rel=1e-15)
    assert t.details["key_set"].startswith("inMs" if keys == "trt7" else "h2dMs")
    assert ("endToEndMs" in t.details) == (keys != "trt10")
    with pytest.raises(EvitError, match="truncated or not valid JSON"):
        load_json(trtexec_times(lat, keys)[:-40], "cut.json")


# --------------------------------------------------------------------------------------------- bench import


@needs_tflite
def test_bench_import_android_results_report_device_paper_row_layers_and_correctness(android_bundle, tmp_path,
                                                                                     capsys):
    results = android_results(android_bundle, tmp_path / "results", scale=1.0 + 1e-6)
    (results / "notes.txt").write_text("my notes")
    name = "Galaxy S23 (Snapdragon 8 Gen 2)"
    out = tmp_path / "report"
    assert run_cli(["bench", "import", str(results), "--bundle", str(android_bundle), "--device-name", name,
                    "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "import" and report["schema"] == 2
    (row,) = report["rows"]
    assert row["device"] == name and report["machine"]["label"] == name
    assert row["latency"]["mean"] == 18.6542 and row["extra"]["statistic"] == "mean" and row["latency"]["n"] == 100
    assert "median" not in row["latency"] and row["throughput_img_s"] == pytest.approx(1000 / 18.6542)
    (paper,) = report["references"]
    assert paper["device"] == "snapdragon-8gen1" and paper["value"] == 19 and paper["engine"] == "TensorFlow-Lite"
    sections = report["sections"]
    assert sections["layers"]["top"][0]["avg_ms"] == 5.101 and sections["layers"]["layers"] == 3
    (c,) = sections["correctness"]
    assert c["passed"] and c["samples"] == ["photo:astronaut", "noise:0"] and c["device"] == name
    assert c["tolerance"]["max_rel"] == 1e-4 and c["agreement"]["metric"] == "top-1 agreement"
    assert sections["imported"]["ignored"] == ["notes.txt"] and len(sections["imported"]["checks"]) == 4
    md = (out / "report.md").read_text()
    assert f"# {B1} on {name}" in md and "Measured on the device, not here" in md
    assert "Qualcomm Snapdragon 8Gen1 (CPU) | TensorFlow-Lite | fp32 | 1 | 19 ms" in md and "| pass |" in md
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 2
    assert name in capsys.readouterr().out


def test_bench_import_trtexec_times_alone_and_with_profile_and_outputs(jetson_bundle, tmp_path):
    lat = [1.61, 1.52, 1.55, 1.71, 1.5, 1.58, 1.49, 1.53]
    times = tmp_path / "trace.json"
    times.write_text(trtexec_times(lat, "trt10"))
    out = tmp_path / "r1"
    assert run_cli(["bench", "import", str(times), "-b", str(jetson_bundle), "--device-name", "Jetson AGX Orin 64GB",
                    "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    (row,) = report["rows"]
    assert row["device"] == "Jetson AGX Orin 64GB" and row["extra"]["statistic"] == "median"
    assert row["latency"]["n"] == len(lat)
    assert row["latency"]["median"] == float(np.median(lat)) and row["format"] == "trt-engine"
    assert row["latency"]["mean"] == pytest.approx(sum(lat) / len(lat), rel=1e-15)
    assert {r["device"]: r["value"] for r in report["references"]} == {"jetson-nano": 24.8, "jetson-agx-orin": 1.48}
    assert report["sections"]["correctness"] == [] and "not checked" in (out / "report.md").read_text()
    # a single file of unknown provenance: every record counts, as written (its warm-up cannot be told apart)
    times.write_text(trtexec_times(lat, "trt8", warmup_records=3))
    assert run_cli(["bench", "import", str(times), "-b", str(jetson_bundle), "-o", str(out)]) == 0
    (row,) = json.loads((out / "report.json").read_text())["rows"]
    assert row["latency"]["n"] == len(lat) + 3 and row["latency"]["median"] == float(np.median([9.0] * 3 + lat))

    # the whole results folder: per-layer profile and the engine's outputs (printed with 6 digits) pass the gate
    doc = read_bundle(jetson_bundle).doc
    results = tmp_path / "results"
    (results / "golden").mkdir(parents=True)
    shutil.copy(times, results / "times.json")  # run.sh's output (its BUNDLE_ID): the warm-up records are dropped
    (results / "profile.json").write_text(trtexec_profile([("/stem/conv/Conv + Relu", 0.21), ("MatMul_12", 0.4)]))
    (results / "BUNDLE_ID").write_text(doc["bundle_id"] + "\n")
    onnx_sha = doc["files"]["export/model.onnx"]
    (results / "sha256.txt").write_text(f"{onnx_sha}  export/model.onnx\n{'0' * 64}  export/model.engine\n")
    for g in doc["golden"]:
        ref = np.load(jetson_bundle / g["reference"]["logits"]["npy"])
        (results / g["device_output"]).write_text(trtexec_output("logits", ref))
    assert run_cli(["bench", "import", str(results), "-b", str(jetson_bundle), "-o", str(tmp_path / "r2")]) == 0
    report = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert report["rows"][0]["latency"]["n"] == len(lat) and report["rows"][0]["latency"]["median"] == float(
        np.median(lat))
    layers = report["sections"]["layers"]
    assert layers["iterations"] == 100 and layers["top"][0]["name"] == "MatMul_12"
    (c,) = report["sections"]["correctness"]
    assert c["passed"] and c["precision"] == "fp16" and c["tolerance"]["max_rel"] == 1e-2
    assert report["rows"][0]["device"].startswith("unnamed jetson device")


def test_device_outputs_with_nan_are_a_failed_correctness_row_not_an_error(jetson_bundle, tmp_path):
    doc = read_bundle(jetson_bundle).doc
    results = tmp_path / "results"
    (results / "golden").mkdir(parents=True)
    for g in doc["golden"]:
        ref = np.load(jetson_bundle / g["reference"]["logits"]["npy"])
        ref[0, 5] = np.nan
        (results / g["device_output"]).write_text(trtexec_output("logits", ref))
    assert run_cli(["bench", "import", str(results), "-b", str(jetson_bundle), "-o", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    (c,) = report["sections"]["correctness"]
    assert not c["passed"] and c["failures"] == ["logits: 2 non-finite values"] and report["rows"] == []
    assert "FAIL: logits: 2 non-finite values" in (tmp_path / "r" / "report.md").read_text()


def test_bad_results_are_one_line_errors(jetson_bundle, tmp_path, capsys):
    doc = read_bundle(jetson_bundle).doc
    b = ["-b", str(jetson_bundle), "-o", str(tmp_path / "r")]
    junk = tmp_path / "junk.txt"
    junk.write_text("this is not from any device tool\n")
    assert "not output of trtexec" in one_line_exit_2(capsys, ["bench", "import", str(junk), *b])
    cut = tmp_path / "cut.json"
    cut.write_text(trtexec_times([1.5, 1.6], "trt10")[:-30])
    assert "truncated or not valid JSON" in one_line_exit_2(capsys, ["bench", "import", str(cut), *b])
    log = tmp_path / "bm.log"
    log.write_text(BENCHMARK_LOG_OLD)
    assert "benchmark_model output, but the bundle runs trtexec" in one_line_exit_2(
        capsys, ["bench", "import", str(log), *b])

    def folder(name: str, files: dict[str, str]) -> str:
        path = tmp_path / name
        (path / "golden").mkdir(parents=True)
        for rel, text in {"times.json": trtexec_times([1.5, 1.6], "trt10"), **files}.items():
            (path / rel).write_text(text)
        return str(path)

    err = one_line_exit_2(capsys, ["bench", "import", folder("other", {"BUNDLE_ID": "0123456789abcdef\n"}), *b])
    assert "belong to another bundle" in err
    err = one_line_exit_2(capsys, ["bench", "import", folder("sha", {"sha256.txt": f"{'f' * 64}  export/model.onnx\n"}),
                                   *b])
    assert "sha256" in err and "differs" in err
    stem = doc["golden"][0]["stem"]
    wrong = trtexec_output("logits", np.zeros((1, 10), dtype=np.float32))
    err = one_line_exit_2(capsys, ["bench", "import", folder("shape", {f"golden/{stem}.output.json": wrong}), *b])
    assert "shape 1x10" in err and "another model" in err
    assert "no result of trtexec" in one_line_exit_2(capsys, ["bench", "import", folder("empty", {"times.json": "x"}),
                                                              *b])
    assert "not a device bundle" in one_line_exit_2(capsys, ["bench", "import", str(cut), "-b", str(tmp_path)])


@needs_tflite
def test_android_results_of_another_model_are_refused(android_bundle, tmp_path, capsys):
    b = ["--bundle", str(android_bundle), "-o", str(tmp_path / "r")]
    results = android_results(android_bundle, tmp_path / "size")
    text = (results / "benchmark_model.log").read_text()
    size = read_bundle(android_bundle).doc["artifact"]["bytes"] / 1e6
    (results / "benchmark_model.log").write_text(text.replace(f"(MB): {size:.6g}", "(MB): 4.12345"))
    assert "another model" in one_line_exit_2(capsys, ["bench", "import", str(results), *b])
    results = android_results(android_bundle, tmp_path / "bytes")
    stem = read_bundle(android_bundle).doc["golden"][0]["stem"]
    (results / "golden" / f"{stem}.out.bin").write_bytes(b"\0" * 40)
    assert "holds 40 bytes" in one_line_exit_2(capsys, ["bench", "import", str(results), *b])
    results = android_results(android_bundle, tmp_path / "nan", nan=True)
    assert run_cli(["bench", "import", str(results), *b]) == 0
    assert not json.loads((tmp_path / "r" / "report.json").read_text())["sections"]["correctness"][0]["passed"]


# ------------------------------------------------------------------------------------------ bench --adb (stand-in)



@needs_tflite
def test_bench_adb_runs_push_run_pull_import_with_a_stand_in_adb(tflite_export, android_bundle, tmp_path, monkeypatch,
                                                                 capsys):
    doc = read_bundle(android_bundle).doc
    bin_dir, files = tmp_path / "bin", tmp_path / "device-files"
    bin_dir.mkdir()
    files.mkdir()
    install_fake_adb(bin_dir)
    (files / "benchmark_model.log").write_text(android_log(android_bundle))
    (files / "op_profile.csv").write_text(OP_PROFILE_CSV_OLD)
    for g in doc["golden"]:  # what the phone would write: PyTorch's outputs (the golden inputs are deterministic)
        np.load(android_bundle / g["reference"]["logits"]["npy"]).astype(np.float32).tofile(
            files / Path(g["device_output"]).name)
    binary = tmp_path / "android_aarch64_benchmark_model"
    binary.write_bytes(b"\x7fELF")
    log = tmp_path / "adb.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_SERIAL", "R5CT1234")
    monkeypatch.setenv("FAKE_ADB_FILES", str(files))
    monkeypatch.setenv("FAKE_ADB_SHA", doc["artifact"]["sha256"])

    err = one_line_exit_2(capsys, ["bench", "adb", str(tflite_export), "NOPE", "-o", str(tmp_path / "x")])
    assert "no Android device 'NOPE'" in err
    log.unlink()
    out = tmp_path / "adb-report"
    assert run_cli(["bench", "adb", str(tflite_export), "R5CT1234", "--device-name", "Pixel 8 (Tensor G3)",
                    "--tool-binary", str(binary), "--runs", "100", "--warmup", "10", "--threads", "4",
                    "--taskset", "f0", "--op-profiling", "-o", str(out)]) == 0
    calls = [line.split() for line in log.read_text().splitlines()]  # the stand-in logs "$*": words
    assert all(c[:2] == ["-s", "R5CT1234"] for c in calls)
    verbs = [(c[2], c[3] if c[2] == "shell" else "") for c in calls]
    dev = f"{doc['settings']['device_dir']}/{doc['bundle_id']}"  # same settings and inputs: the same bundle id
    assert verbs == [("get-state", ""), ("shell", "mkdir"), ("push", ""), ("shell", "chmod"), ("push", ""),
                     ("push", ""), ("push", ""), ("shell", "sha256sum"), ("shell", "taskset"), ("pull", ""),
                     ("shell", f"{doc['settings']['device_dir']}/benchmark_model"), ("pull", ""),
                     ("shell", f"{doc['settings']['device_dir']}/benchmark_model"), ("pull", "")]
    assert calls[2][3:] == [str(binary), f"{doc['settings']['device_dir']}/benchmark_model"]
    assert calls[4][3:] == ["export/model.tflite", f"{dev}/model.tflite"]
    assert "--num_runs=100" in calls[8] and "--report_peak_memory_footprint=true" in calls[8]
    assert calls[8][3:5] == ["taskset", "f0"] and any(w.startswith("--output_filepath=") for w in calls[10])
    report = json.loads((out / "report.json").read_text())
    sections = report["sections"]
    assert report["rows"][0]["device"] == "Pixel 8 (Tensor G3)" and report["rows"][0]["latency"]["mean"] == 18.6542
    assert sections["correctness"][0]["passed"] and sections["imported"]["adb"]["serial"] == "R5CT1234"
    assert sections["layers"]["source"] == "op_profile.csv" and sections["layers"]["top"][0]["avg_ms"] == 5.101

    capsys.readouterr()
    (files / "op_profile.csv").unlink()  # a required step that fails stops the run with the device's message
    assert run_cli(["bench", "adb", str(tflite_export), "R5CT1234", "--op-profiling", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err  # the steps' progress lines, then one error line
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: pull the per-op profile (CSV) "
                                                                              "failed on R5CT1234: adb: error: remote")


def test_bench_adb_without_adb_on_the_path(cls_export, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    err = one_line_exit_2(capsys, ["bench", "adb", str(cls_export[0]), "X", "-o", str(tmp_path / "r")])
    assert "adb tool on the PATH" in err


def test_ort_bundle_uses_onnxruntime_perf_test(tmp_path, capsys):
    folder = _export(tmp_path / "mob", "mobile-cpu-ort", model="efficientvit-b0-r224", imgsz=(96,))
    bundle = make_bundle(folder, "android", tmp_path / "bundle", DeviceSettings(threads=2, runs=5))
    doc = read_bundle(bundle).doc
    assert doc["tool"] == "onnxruntime_perf_test" and doc["artifact"]["path"] == "export/model.ort"
    timing = next(s["bash"] for s in doc["run"]["steps"] if "timing" in s["tags"])
    assert "onnxruntime_perf_test -m times -r 5 -x 2 -e xnnpack -I" in timing and "model.ort" in timing
    log = tmp_path / "perf.log"
    log.write_text(PERF_TEST_LOG)
    assert run_cli(["bench", "import", str(log), "-b", str(bundle), "--device-name", "Pixel 8", "-o",
                    str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["rows"][0]["latency"]["median"] == 99.5086 and report["references"] == []
    assert "No figure is published for this model on phones" in (tmp_path / "r" / "report.md").read_text()
