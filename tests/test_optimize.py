"""`evit-deploy optimize`: search spaces as data, cached exports and trials, the screen and the finalists timed by
the real protocol (tiny budgets: the figures mean nothing here, the search's mechanics do), the winner written as an
export that runs with the chosen settings, and every bad input as one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evit_deploy import runtime
from evit_deploy.bench.schema import Row, read_report
from evit_deploy.bench.stats import Stats
from evit_deploy.errors import EvitError
from evit_deploy.optimize import space as space_module
from evit_deploy.optimize.output import pareto
from evit_deploy.optimize.search import TrialCache
from evit_deploy.optimize.space import Candidate, ExportVariant, load_space

from .helpers import run_cli

MODEL = "efficientvit-b0-r224"
TINY = """target: cpu-ort
exports:
  - {name: fp32, precision: fp32}
shapes: [dynamic, static]
threads: [1]
options:
  spinning: ["on", "off"]
"""
FAST = ["--imgsz", "64", "--threads", "1", "--ci", "1000", "--finalists", "2", "--budget-s", "600", "--block-s", "0.05",
        "--min-blocks", "2", "--warmup-s", "0"]


@pytest.fixture
def tiny_space(tmp_path, monkeypatch):
    """A one-target, two-export space (the shipped spaces make a dozen exports: minutes each here)."""
    folder = tmp_path / "spaces"
    folder.mkdir()
    (folder / "cpu-ort.yaml").write_text(TINY)
    for name in ("cpu-openvino", "mobile-cpu-tflite", "mobile-cpu-ort"):
        (folder / f"{name}.yaml").write_text((space_module.spaces_dir() / f"{name}.yaml").read_text())
    monkeypatch.setattr(space_module, "spaces_dir", lambda: folder)
    return folder


def test_shipped_spaces_expand_to_what_this_host_runs():
    skipped: list[str] = []
    ov = load_space("cpu-openvino")
    variants = ov.variants(skipped)
    names = {(v.name, v.static) for v in variants}
    assert ("fp32", True) in names and ("fp32", False) in names and ("int8-fallback", True) in names
    bf16 = [v for v in variants if v.name in ("bf16", "int8-bf16")]
    assert bool(bf16) != bool([s for s in skipped if "bf16" in s])  # either offered here, or named as skipped
    static = next(v for v in variants if v.name == "fp32" and v.static)
    text = static.profile_text()
    assert "extends: cpu-openvino" in text and "dynamic: false" in text and static.profile_name.endswith(".static")
    grid = ov.candidates(static, all_options=True)
    assert {dict(c.options)["performance_hint"] for c in grid} == {"LATENCY", "THROUGHPUT"}
    assert all(c.options == () for c in ov.candidates(static, all_options=False))
    for target in ("cpu-ort", "mobile-cpu-tflite", "mobile-cpu-ort"):
        assert load_space(target).variants([])


@pytest.mark.parametrize("options, message", [
    ("{spin: ['on']}", "no backend has the runtime option 'spin'"),
    ("{performance_hint: [FASTEST]}", "performance_hint takes LATENCY or THROUGHPUT, not 'FASTEST'"),
])
def test_a_space_with_an_option_no_backend_takes_is_one_line(tmp_path, monkeypatch, options, message):
    (tmp_path / "cpu-openvino.yaml").write_text(
        f"target: cpu-openvino\nexports: [{{name: fp32, precision: fp32}}]\noptions: {options}\n")
    monkeypatch.setattr(space_module, "spaces_dir", lambda: tmp_path)
    with pytest.raises(EvitError, match=message):
        load_space("cpu-openvino")


def test_trial_cache_survives_a_cut_line(tmp_path):
    variant = ExportVariant("cpu-ort", "fp32", "fp32", False)
    candidate = Candidate(variant, 1, (("spinning", "off"),))
    cache = TrialCache(tmp_path, {"model": MODEL})
    key = cache.key(candidate, "screen-1", 1)
    cache.put(key, Row("m", "onnxruntime", "onnx", "fp32", 1, latency=Stats(median=3.0)))
    with cache.path.open("a") as f:
        f.write('{"key": "cut in the mid')  # a kill while a line was written
    again = TrialCache(tmp_path, {"model": MODEL})
    assert again.get(key).latency.median == 3.0
    assert TrialCache(tmp_path, {"model": "another"}).get(TrialCache(tmp_path, {"model": "another"}).key(
        candidate, "screen-1", 1)) is None  # other inputs: another key


def test_pareto_front():
    points = [(10.0, 0.0), (5.0, 1.0), (6.0, 2.0), (4.0, 3.0), (10.0, 0.5)]
    assert pareto(points) == {0, 1, 3}


def test_optimize_finds_writes_and_resumes(tiny_space, tmp_path, capsys, monkeypatch):
    """The whole search at a tiny size: the winner is an export that runs with the chosen settings and records the
    search; a search interrupted after its first screen group resumes from the cache."""
    from evit_deploy.optimize import search

    cache = tmp_path / "cache"
    out = tmp_path / "out"
    original = search._measure
    calls = []

    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(args[2])
        if args[2] == "screen-2":
            raise KeyboardInterrupt  # Ctrl-C after the first screen round
        return original(*args, **kwargs)

    monkeypatch.setattr(search, "_measure", interrupted)
    assert run_cli(["optimize", MODEL, "--targets", "cpu-ort", *FAST, "--cache", str(cache), "-o", str(out)]) == 130
    assert not out.exists()  # nothing half-written
    assert (cache / "trials.jsonl").is_file() and len((cache / "trials.jsonl").read_text().splitlines()) == 2
    monkeypatch.setattr(search, "_measure", original)

    assert run_cli(["optimize", MODEL, "--targets", "cpu-ort", *FAST, "--cache", str(cache), "-o", str(out)]) == 0
    report = read_report(out)
    stages = [r.extra["stage"] for r in report.rows]
    assert stages.count("screen-1 (cached)") == 2  # resumed: the first round was not timed again
    assert any(s.startswith("final (reference") for s in stages) and "screen-2" in stages
    finals = [r for r in report.rows if r.extra["stage"].startswith("final")]
    assert finals and all(r.latency.blocks >= 2 for r in finals)
    assert (report.settings["block_s"], report.settings["min_blocks"]) == (0.05, 2)
    assert report.sections["pareto"] and "the Pareto front" in (out / "report.html").read_text()
    manifest = json.loads((out / "winner" / "export.json").read_text())
    search_record = manifest["search"]
    assert search_record["winner"] and search_record["reference"] == "default cpu-openvino export"
    assert manifest["target"].startswith("cpu-ort.fp32.")
    backend = runtime.load(out / "winner")  # the chosen settings apply without flags
    assert backend.facts["threads"] == manifest["runtime"]["threads"] == 1
    chosen = manifest["runtime"].get("options", {}).get("onnxruntime", {})
    if chosen.get("spinning") == "off":
        assert backend.facts["spinning"] == "off"
    assert run_cli(["predict", str(out / "winner"), str(_photo(tmp_path)), "-o", str(tmp_path / "pred")]) == 0
    # a rerun replaces its own output; a folder that is not ours is refused before any work
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert run_cli(["optimize", MODEL, "--targets", "cpu-ort", *FAST, "--cache", str(cache), "-o",
                    str(foreign)]) == 2
    assert "not a previous evit-deploy optimize output" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "mine"


def _photo(tmp_path: Path) -> Path:
    from PIL import Image

    from evit_deploy.samples import sample_photo

    path = tmp_path / "chelsea.png"
    Image.fromarray(sample_photo("chelsea")).save(path)
    return path


@pytest.mark.parametrize("args, message", [
    (["efficientvit-b9"], "unknown model"),
    ([MODEL, "--targets", "cloud-gpu-trt"], "optimize --device host searches cpu-ort"),
    ([MODEL, "--budget-s", "1"], "too small for even the screen"),
    ([MODEL, "--imgsz", "100"], "multiple"),
])
def test_bad_input_is_one_line(args, message, capsys, tmp_path):
    assert run_cli(["optimize", *args, "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "o").exists()


def test_no_candidate_within_the_drop_names_the_closest(tiny_space, tmp_path, capsys, monkeypatch):
    from evit_deploy.optimize import exports

    monkeypatch.setattr(exports, "accuracy_drop", lambda folder, inputs: (4.5, "stand-in"))
    assert run_cli(["optimize", MODEL, "--targets", "cpu-ort", *FAST, "--cache", str(tmp_path / "c"), "-o",
                    str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no candidate is within --max-drop 1 points" in err and "loses 4.50" in err


def test_a_missing_runtime_skips_its_target_and_names_it(tiny_space, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    assert run_cli(["optimize", MODEL, "--targets", "cpu-openvino,mobile-cpu-tflite", *FAST, "-o",
                    str(tmp_path / "o")]) == 2
    assert "no target can be searched here" in capsys.readouterr().err


def test_device_search_bundles_the_candidates_and_bench_import_names_the_winner(tmp_path, monkeypatch, capsys):
    """--device android: exports checked here, one bundle per candidate; the device's own output (a stand-in
    benchmark_model log per bundle: only our side of the contract is tested) imported and ranked."""
    folder = tmp_path / "spaces"
    folder.mkdir()
    (folder / "mobile-cpu-tflite.yaml").write_text(
        "target: mobile-cpu-tflite\nexports:\n  - {name: fp32, precision: fp32}\n"
        "  - {name: int8-dynamic, precision: int8-dynamic}\nshapes: [static]\nthreads: [1]\n")
    monkeypatch.setattr(space_module, "spaces_dir", lambda: folder)
    out = tmp_path / "phone"
    # fp32 and int8-dynamic rewrite one float graph (B0 at 224: the demo's; converted once per test session);
    # random weights: any agreement is within reach
    assert run_cli(["optimize", MODEL, "--device", "android", "--targets", "mobile-cpu-tflite", "--imgsz", "224",
                    "--max-drop", "100", "--cache", str(tmp_path / "c"), "-o", str(out)]) == 0
    record = json.loads((out / "optimize.json").read_text())
    assert record["device"] == "android" and len(record["candidates"]) == 2 and (out / "run.sh").is_file()
    from .test_device import android_results  # what run.sh leaves, in the tool's documented formats

    for i, c in enumerate(record["candidates"]):
        bundle = out / c["bundle"]
        results = android_results(bundle, bundle / "results")
        if i == 1:  # the second candidate ran faster on the device
            log = results / "benchmark_model.log"
            log.write_text(log.read_text().replace("min=18297 max=19544 avg=18654.2", "min=9001 max=9544 avg=9327.1")
                           .replace("Inference (avg): 18654.2", "Inference (avg): 9327.1"))
    capsys.readouterr()
    assert run_cli(["bench", "import", str(out), "--bundle", str(out), "--device-name", "Pixel 8", "-o",
                    str(tmp_path / "rep")]) == 0
    report = read_report(tmp_path / "rep")
    assert report.kind == "optimize" and report.sections["search"]["winner"] == record["candidates"][1]["candidate"]
    assert "Winner on Pixel 8" in capsys.readouterr().out
