"""The command line: tables and JSON, one-line errors with non-zero exits, no tracebacks unless --debug."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from evit_deploy.cli import main
from evit_deploy.errors import UnknownModelError


def run(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return exit_info.value.code or 0, out.out, out.err


@pytest.mark.slow
def test_models_json_lists_task_with_counted_stats(capsys):
    code, out, _ = run(["models", "--task", "seg", "--json"], capsys)
    rows = json.loads(out)
    assert code == 0 and len(rows) == 11 and {r["task"] for r in rows} == {"seg"}
    b1 = next(r for r in rows if r["name"] == "efficientvit-seg-b1-cityscapes")
    assert b1["params"] == 4803443 and round(b1["macs"] / 1e9, 3) == 25.105 and b1["published"]["miou"] == 80.547


@pytest.mark.slow
def test_models_table(capsys):
    code, out, _ = run(["models", "--task", "sam"], capsys)
    assert code == 0 and "efficientvit-sam-xl1" in out and "47.8" in out


def test_info_json(capsys):
    code, out, _ = run(["info", "efficientvit-b1-r224", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["params"] == 9102024 and data["checkpoint"] == "efficientvit_b1_r224.pt"
    assert data["norm_eps"] == 1e-5 and data["act"] == "hswish"


def test_unknown_model_is_one_line_error(capsys):
    code, out, err = run(["info", "efficientvit-b9"], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: unknown model") and "did you mean" in err
    assert "Traceback" not in err


def test_debug_shows_the_exception(capsys):
    with pytest.raises(UnknownModelError):
        main(["--debug", "info", "nope"])


def test_bad_option_is_a_usage_error(capsys):
    code, _, err = run(["models", "--task", "detection"], capsys)
    assert code == 2 and "Invalid value for '--task'" in err


def test_demo_with_missing_weights_fails_cleanly(capsys, tmp_path):
    code, _, err = run(["demo", "--weights", str(tmp_path / "nope.pt")], capsys)
    assert code == 2 and "checkpoint not found" in err and "Traceback" not in err


def test_console_script_entry_point_help():
    proc = subprocess.run([sys.executable, "-m", "evit_deploy", "--help"], capture_output=True, text=True, check=True)
    assert "models" in proc.stdout and "info" in proc.stdout and "demo" in proc.stdout


def test_imgsz_takes_one_or_two_values():
    from evit_deploy.cli import expand_size_pairs

    assert expand_size_pairs(["export", "m", "--imgsz", "512", "1024", "-o", "x"]) == [
        "export", "m", "--imgsz", "512", "--imgsz", "1024", "-o", "x"]
    assert expand_size_pairs(["export", "m", "--imgsz", "224"]) == ["export", "m", "--imgsz", "224"]
    assert expand_size_pairs(["export", "m", "--imgsz", "224", "--batch", "2"])[2:4] == ["--imgsz", "224"]


@pytest.mark.slow
def test_demo_exports_benchmarks_and_predicts(tmp_path, capsys):
    from .helpers import run_cli

    # The demo's path with the smallest classifier (make demo runs the default, B1, the same way).
    assert run_cli(["demo", "--model", "efficientvit-b0-r224", "--budget-s", "0.5", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for target in ("cpu-ort", "mobile-cpu-tflite"):
        assert (tmp_path / f"efficientvit-b0-r224-{target}" / "export.json").is_file()
        assert (tmp_path / f"bench-efficientvit-b0-r224-{target}" / "report.md").is_file()
    assert "sample photo 'chelsea'" in out and "EfficientViT model zoo (37 models)" in out
