"""The kit of the ``latency/`` benchmark scripts (evit_deploy.bench.scripts): exports measured by the worker protocol
in one alternation with their labels and facts, variant export folders, settings refused in one line, and every
script's command line (the scripts themselves are benchmarks, run by hand; see latency/README.md)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evit_deploy import runtime
from evit_deploy.artifacts import read_manifest
from evit_deploy.bench import scripts
from evit_deploy.bench.scripts import ScriptExport, measure_exports, row_named, settings_from, variant_export
from evit_deploy.errors import EvitError

from .helpers import fast_bench

LATENCY = Path(__file__).resolve().parents[1] / "latency"


def test_exports_of_one_model_are_one_alternation_with_labels_and_facts(cls_export):
    folder, ckpt = cls_export
    exports = [ScriptExport(folder, "ort", 1.5, pytorch=True, weights=str(ckpt),
                            validation={"model.onnx": {"validated": True, "max_rel": 1e-6}}),
               ScriptExport(folder, "ort-no-spin", 1.5, shared_cpu=True)]
    rows, skipped = measure_exports(exports, fast_bench())
    assert skipped == []
    assert sorted(r.extra["row"] for r in rows) == ["ort", "ort-no-spin", "pytorch-eager"]  # PyTorch rows once
    eager, ort, quiet = (row_named(rows, label) for label in ("pytorch-eager", "ort", "ort-no-spin"))
    assert ort.settings["spinning"].startswith("on") and quiet.settings["spinning"] == "off"
    size = (folder / "model.onnx").stat().st_size / 2**20
    assert ort.extra == {"row": "ort", "export_s": 1.5, "size_mib": pytest.approx(size), "validated": True,
                         "max_rel": 1e-6}
    assert quiet.extra["size_mib"] == pytest.approx(size) and "validated" not in quiet.extra
    assert eager.extra == {"row": "pytorch-eager"}  # each row its own extra, not one dict shared by an item's rows
    assert ort.ratio_to_eager == pytest.approx(ort.latency.median / eager.latency.median)


def test_two_exports_of_one_model_with_one_label_are_refused(cls_export):
    with pytest.raises(EvitError, match="share a label"):
        measure_exports([ScriptExport(cls_export[0], "a"), ScriptExport(cls_export[0], "a")], fast_bench())


def test_variant_export_is_an_export_folder_holding_the_file(cls_export, tmp_path):
    folder = cls_export[0]
    built = tmp_path / "built" / "model.onnx"
    built.parent.mkdir()
    built.write_bytes((folder / "model.onnx").read_bytes())  # stands in for another Q/DQ scheme of the graph
    variant = variant_export(folder, built, tmp_path / "variant", "int8", "a variant")
    manifest = read_manifest(variant, verify=True)  # sha256 recorded and checked
    assert [(a.path, a.precision, a.notes) for a in manifest.artifacts] == [("model.onnx", "int8", ["a variant"])]
    assert manifest.model == read_manifest(folder).model
    assert runtime.load(variant).inputs[0].name == "input"
    (variant / "model.onnx").write_bytes(b"changed")
    with pytest.raises(EvitError, match="sha256"):
        read_manifest(variant, verify=True)
    with pytest.raises(EvitError, match="no model artifact"):
        variant_export(folder, tmp_path / "x.tflite", tmp_path / "other", "int8", "")


def test_settings_no_run_can_use_are_refused_in_one_line(capsys):
    args = scripts.script_parser(__doc__).parse_args(["--min-blocks", "1"])
    with pytest.raises(EvitError, match="min-blocks"):
        settings_from(args)

    def main() -> None:
        settings_from(args)

    with pytest.raises(SystemExit) as exit_info:
        scripts.run_script(main)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: --min-blocks must be at least 2")


def test_a_script_without_protocol_rows_has_no_protocol_options():
    parser = scripts.script_parser(__doc__, threads=0, protocol=False)
    assert vars(parser.parse_args([])) == {"threads": 0, "out": scripts.REPORTS}
    with pytest.raises(SystemExit):
        parser.parse_args(["--budget-s", "5"])
    assert isinstance(scripts.script_parser(__doc__).parse_args([]), argparse.Namespace)


def test_every_latency_script_imports_and_states_its_options():
    """Each script's --help (its imports, its parser) in one interpreter; the figures are the scripts' own runs."""
    names = sorted(p.name for p in LATENCY.glob("bench_*.py"))
    assert {"bench_export_cpu.py", "bench_cpu_fastest.py", "bench_int8.py", "bench_tflite.py", "bench_eval.py",
            "bench_compare.py", "bench_gpu.py", "bench_server.py", "bench_ray.py"} <= set(names)
    code = ("import runpy, sys\n"
            f"sys.path.insert(0, {str(LATENCY)!r})\n"
            f"for name in {names!r}:\n"
            "    sys.argv = [name, '--help']\n"
            "    try:\n"
            f"        runpy.run_path({str(LATENCY)!r} + '/' + name, run_name='__main__')\n"
            "    except SystemExit as exc:\n"
            "        assert exc.code == 0, (name, exc.code)\n"
            "    print('OK', name)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(LATENCY.parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [line for line in proc.stdout.splitlines() if line.startswith("OK ")] == [f"OK {n}" for n in names]
    assert "--budget-s" in proc.stdout and "--requests" in proc.stdout
