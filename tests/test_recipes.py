"""Precision recipes: the registry's contract with the exporters, and the options no recipe or exporter can honour,
refused in one line before any work."""

from __future__ import annotations

import ast
import dataclasses
import warnings
from pathlib import Path

import pytest
from PIL import Image

from evit_deploy.errors import EvitError
from evit_deploy.export import exporters as exporters_package
from evit_deploy.export.exporters import EXPORTERS
from evit_deploy.export.pipeline import ExportRequest, check_capabilities, run_export
from evit_deploy.export.profiles import AUTO, list_profiles, load_profile
from evit_deploy.export.recipes import RECIPES, Recipe, recipe_problems, recipes_for, registered
from evit_deploy.export.recipes.registry import add_recipe

from .helpers import run_cli

B0 = "efficientvit-b0-r224"


def test_every_reduced_precision_an_exporter_offers_has_a_recipe_and_no_recipe_is_orphaned():
    for fmt, exporter in EXPORTERS.items():
        caps = exporter.capabilities
        for precision in caps.precisions:
            found = registered(precision, fmt)
            if precision == "fp32":  # the format's own form
                assert not found, f"{fmt} {precision}: {[r.name for r in found]}"
            elif not caps.consumes:  # else it may carry the precision of the artifact it is made from
                assert found, f"{fmt} offers {precision} but no recipe makes it"
    for (precision, fmt), recipes in RECIPES.items():
        assert precision in EXPORTERS[fmt].capabilities.precisions, f"{[r.name for r in recipes]} for {fmt}"
        for recipe in recipes:
            assert recipe.doc and (recipe.stage == "runtime" or "{role}" in recipe.step), recipe.name


def test_the_profile_chooses_among_recipes_by_scheme():
    cpu, trt = load_profile("cpu-ort"), load_profile("cloud-gpu-trt")
    assert [r.name for r in recipes_for("int8", "onnx", cpu)] == ["int8-qdq-cpu"]
    assert [r.name for r in recipes_for("int8", "onnx", trt)] == ["int8-qdq-tensorrt"]
    assert [r.name for r in recipes_for("fp16", "onnx", trt, "module")] == ["fp16-islands"]
    assert recipes_for("fp16", "onnx", trt, "artifact") == [] and recipes_for("fp32", "onnx", cpu) == []


def test_every_shipped_profile_can_make_every_precision_it_offers():
    for name in list_profiles():
        profile = load_profile(name)
        for precision in [p for p in profile.precisions if p != AUTO]:
            assert recipe_problems(profile, precision, profile.formats) == [], (name, precision)
            check_capabilities(profile, precision, profile.batch.dynamic, "cls")


def test_registry_refuses_inconsistent_recipes():
    with pytest.raises(ValueError, match="needs apply function"):
        add_recipe(Recipe("x", "fp16", ("onnx",), "module", "doc"))
    with pytest.raises(ValueError, match="has no apply function"):
        add_recipe(Recipe("x", "bf16", ("openvino",), "runtime", "doc", apply=lambda *a: []))
    with pytest.raises(ValueError, match="registered twice"):
        add_recipe(registered("fp16", "onnx")[0])


def _precision_branches(path: Path) -> list[str]:
    """``precision == "fp16"``-like comparisons (a name or attribute with "precision" in it against string
    constants) in the module at ``path``."""

    def is_precision(node: ast.AST) -> bool:
        name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
        return "precision" in name

    def is_literal(node: ast.AST) -> bool:
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return all(is_literal(e) for e in node.elts)
        return isinstance(node, ast.Constant) and isinstance(node.value, str)

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(is_precision(s) for s in sides) and any(is_literal(s) for s in sides):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_exporter_branches_on_precision(tmp_path):
    folder = Path(exporters_package.__file__).parent
    assert [b for f in sorted(folder.glob("*.py")) for b in _precision_branches(f)] == []
    branchy = tmp_path / "branchy.py"  # the check itself finds what it is there to find
    branchy.write_text('if ctx.precision == "int8":\n    pass\nif precision in ("fp16", "int8"):\n    pass\n')
    assert _precision_branches(branchy) == ["branchy.py:1", "branchy.py:3"]


# ---------------------------------------------------------------------------------- refused before any work


@pytest.fixture
def no_work(monkeypatch):
    """Any export that gets past its checks fails loudly: the staging folder is the first work an export does."""

    def staged_dir(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the export started work before refusing")

    monkeypatch.setattr("evit_deploy.export.pipeline.staged_dir", staged_dir)


def _refused(tmp_path: Path, capsys, profile_text: str, precision: str, *extra: str) -> str:
    profile = tmp_path / "profile.yaml"
    profile.write_text(profile_text)
    out = tmp_path / "out"
    code = run_cli(["export", B0, "-t", str(profile), "-p", precision, "-o", str(out), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert not out.exists()
    return err[0]


@pytest.mark.parametrize(("profile", "precision", "expected"), [
    ("extends: cpu-openvino\nquant: {calibration: entropy}\n", "int8",
     "format 'openvino' calibrates int8 (int8-nncf) with minmax or percentile, not 'entropy'"),
    ("extends: mobile-cpu-tflite\nquant: {calibration: percentile}\n", "int8",
     "format 'tflite' calibrates int8 (int8-static-tflite) with minmax, not 'percentile'"),
    ("extends: mobile-cpu-tflite\nquant: {scheme: tensorrt}\n", "int8",
     "format 'tflite' makes int8 with quant.scheme cpu, not 'tensorrt'"),
    ("extends: cpu-openvino\nquant: {scheme: tensorrt}\n", "int8",
     "format 'openvino' makes int8 with quant.scheme cpu, not 'tensorrt'"),
    ("extends: cloud-gpu-trt\nquant: {scheme: cpu}\n", "int8",
     "format 'trt-engine' cannot be exported: TensorRT builds int8 from a symmetric Q/DQ graph: set quant.scheme "
     "to tensorrt, not 'cpu'"),
    ("extends: jetson-orin-trt\ntrt: {dla_core: 0}\n", "fp32",
     "format 'trt-bundle' cannot be exported: DLA runs fp16 and int8 only"),
    ("extends: cloud-gpu-trt\ntrt: {workspace_mb: 0}\n", "fp16", "trt.workspace_mb must be >= 1; got 0"),
    ("extends: cloud-gpu-compiled\ncompiled: {warmup: 0}\n", "fp16", "compiled.warmup must be >= 1"),
])
def test_options_the_profile_cannot_use_are_refused_before_any_work(tmp_path, capsys, no_work, profile, precision,
                                                                    expected):
    assert expected in _refused(tmp_path, capsys, profile, precision)


def test_openvino_without_a_pinned_precision_is_refused_before_any_work():
    profile = load_profile("cpu-openvino")
    del profile.openvino.inference_precision["int8"]
    with pytest.raises(EvitError, match="openvino.inference_precision has no entry for int8"):
        check_capabilities(profile, "int8", True, "cls")
    check_capabilities(profile, "fp32", True, "cls")  # the other precisions still export


def test_calibration_is_read_before_any_format_is_written(tmp_path, monkeypatch):
    calib = tmp_path / "calib"
    calib.mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (64, 64)).save(calib / f"{name}.png")

    def torch_to_onnx(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the ONNX was written before the calibration images were read")

    monkeypatch.setattr("evit_deploy.export.exporters.onnx.torch_to_onnx", torch_to_onnx)
    with pytest.raises(EvitError, match="needs at least 4"):
        run_export(ExportRequest(B0, "cpu-ort", imgsz=(64, 64), precision="int8", calib=str(calib),
                                 output=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_calib_for_a_precision_that_is_not_calibrated_is_a_warning(tmp_path):
    from evit_deploy.export.request import preflight

    (tmp_path / "calib").mkdir()
    request = ExportRequest(B0, "mobile-cpu-ort", precision="int8-dynamic", calib=str(tmp_path / "calib"),
                            output=str(tmp_path / "out"))
    with pytest.warns(UserWarning, match="--calib is only used for calibrated int8; ignored for int8-dynamic"):
        preflight(request)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        preflight(dataclasses.replace(request, precision="int8"))  # calibrated: no warning
    assert not [w for w in caught if "--calib" in str(w.message)]
