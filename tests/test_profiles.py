"""Export profiles: each shipped profile states only what differs from the defaults, and what it states merges
over them (the resolved profile is what `evit-deploy profiles show` prints)."""

from __future__ import annotations

import json

from evit_deploy.export.profiles import (
    Tolerance,
    ValidationSettings,
    defaults,
    list_profiles,
    load_profile,
    profile_from_dict,
    restated_keys,
)

from .helpers import run_cli


def test_shipped_profiles_state_only_what_differs():
    restated = {name: keys for name in list_profiles() if (keys := restated_keys(name))}
    assert restated == {}, f"keys equal to the defaults (or to what the profile extends): {restated}"


def test_restated_keys_are_found_against_defaults_and_the_extended_profile(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("extends: cpu-ort\nbatch: {dynamic: true, size: 2}\nonnx: {opset: 17, simplify: false}\n"
                       "validation: {tolerances: {int8: {max_rel: 0.35, min_cosine: 0.5}}}\n"
                       "runtime: {providers: [CPUExecutionProvider]}\n")
    assert restated_keys(str(profile)) == ["batch.dynamic", "onnx.opset", "validation.tolerances.int8.max_rel",
                                           "runtime.providers"]
    assert load_profile(str(profile)).batch.dynamic  # restating is allowed, only the shipped files are held to it


def test_a_partial_tolerance_table_changes_only_what_it_names(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("extends: cpu-ort\nvalidation: {tolerances: {fp16: {max_rel: 0.5}}}\n")
    table = load_profile(str(profile)).validation.tolerances
    builtin = ValidationSettings().tolerances
    assert table["fp16"] == Tolerance(max_rel=0.5, min_cosine=builtin["fp16"].min_cosine,
                                      min_agreement=builtin["fp16"].min_agreement)
    assert {k: v for k, v in table.items() if k != "fp16"} == {k: v for k, v in builtin.items() if k != "fp16"}
    tflite = load_profile("mobile-cpu-tflite").validation.tolerances
    assert tflite["int8"] == Tolerance(builtin["int8"].max_rel, builtin["int8"].min_cosine, 0.0)
    assert tflite["fp32"] == builtin["fp32"]


def test_profiles_show_prints_the_resolved_profile(capsys):
    assert run_cli(["profiles", "show", "cpu-ort", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["formats"] == ["onnx"] and shown["onnx"]["opset"] == 17  # defaults the file does not state
    assert shown["batch"]["dynamic"] is True and shown["batch"]["max"] == 64  # what it states
    assert set(defaults()) <= set(shown)
    old = {k: v for k, v in shown.items() if k != "compiled"}  # an export.json written before a setting existed
    assert profile_from_dict(old).compiled.mode == load_profile("cpu-ort").compiled.mode
