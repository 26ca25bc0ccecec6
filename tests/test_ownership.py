"""The one rule for "is this ours?" (:mod:`evit_deploy.files`) and each writer that uses it: exports, device
bundles, video outputs, Triton models, reports (bench, eval, the benchmark scripts') and batch predictions. What
a writer wrote is replaced; anything else is refused and kept (``--force`` moves a folder aside, never deletes it);
outputs written by earlier versions are still recognised."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from evit_deploy.artifacts import EXPORT, MANIFEST
from evit_deploy.errors import EvitError
from evit_deploy.files import (
    Owner,
    check_own_files,
    check_replaceable,
    commit_staged,
    declare,
    declared_files,
    listed_files,
    owns_folder,
    staged_dir,
)
from evit_deploy.limits import LIMITS
from evit_deploy.signing import SIGNATURE

from .shared_exports import build_cls_export

TESTER = Owner("test output", "declared.json", listed_files("tester"))


def _folder(root: Path) -> Path:
    folder = root / "out"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"a")
    (folder / "sub" / "b.bin").write_bytes(b"b")
    return folder


# -- the rule, on made-up folders ----------------------------------------------------------------------------------
def test_a_folder_is_ours_when_its_declaration_lists_everything_in_it(tmp_path):
    folder = _folder(tmp_path)
    assert not owns_folder(folder, TESTER) and declared_files(folder, TESTER) is None  # no declaration
    declare(folder, "declared.json", "tester", model="m")
    assert json.loads((folder / "declared.json").read_text()) == {"writer": "tester", "model": "m",
                                                                   "files": ["a.bin", "sub/b.bin"]}
    assert declared_files(folder, TESTER) == {"declared.json", "a.bin", "sub/b.bin"}
    assert owns_folder(folder, TESTER)
    assert not owns_folder(folder, Owner("other", "declared.json", listed_files("someone else")))
    assert not owns_folder(folder / "a.bin", TESTER) and not owns_folder(tmp_path / "missing", TESTER)


@pytest.mark.parametrize("intruder", ["a file", "an empty folder", "a symbolic link", "a FIFO"])
def test_anything_undeclared_makes_a_folder_not_ours(tmp_path, intruder):
    folder = _folder(tmp_path)
    declare(folder, "declared.json", "tester")
    make = {"a file": lambda p: p.write_text("the user's"), "an empty folder": Path.mkdir,
            "a symbolic link": lambda p: p.symlink_to(folder / "a.bin"), "a FIFO": os.mkfifo}[intruder]
    make(folder / "sub" / "x")
    assert not owns_folder(folder, TESTER)


@pytest.mark.parametrize("declaration", ["not json", "[1, 2]", '{"writer": "tester", "files": [1]}', "deep", "big",
                                         "a link"])
def test_a_declaration_that_does_not_read_is_not_ours(tmp_path, declaration):
    folder = _folder(tmp_path)
    path = folder / "declared.json"
    if declaration == "a link":  # a declaration elsewhere, listing the folder's files: never followed
        declare(tmp_path, "real.json", "tester")
        path.symlink_to(tmp_path / "real.json")
    else:
        path.write_text({"deep": "[" * 100_000, "big": " " * (LIMITS.max_manifest_bytes + 1) + "{}"}.get(
            declaration, declaration))
    assert declared_files(folder, TESTER) is None and not owns_folder(folder, TESTER)


def test_replacing_keeps_what_is_not_ours(tmp_path):
    folder = _folder(tmp_path)

    def write(force: bool = False) -> Path | None:
        with staged_dir(folder) as tmp:
            (tmp / "new.bin").write_bytes(b"new")
            declare(tmp, "declared.json", "tester")
            return commit_staged(tmp, folder, TESTER, force)

    with pytest.raises(EvitError, match=r"refusing to replace .*out: it is not a previous evit-deploy test output "
                                        r"\(it holds a.bin, sub/\).*--force"):
        check_replaceable(folder, TESTER)
    with pytest.raises(EvitError, match="refusing to replace"):
        write()
    assert (folder / "a.bin").read_bytes() == b"a"
    aside = write(force=True)  # moved aside, never deleted
    assert (aside / "sub" / "b.bin").read_bytes() == b"b" and (folder / "new.bin").read_bytes() == b"new"
    check_replaceable(folder, TESTER)
    assert write() is None and sorted(p.name for p in folder.iterdir()) == ["declared.json", "new.bin"]


def test_files_in_a_shared_folder_are_overwritten_only_when_declared(tmp_path):
    owner = Owner("test report", "r.json", lambda doc, name: ["r.md"] if doc == {"ours": True} else None)
    check_own_files(tmp_path / "new" / "deeper", owner, ["r.json", "r.md"])  # nothing there yet
    (tmp_path / "r.md").write_text("the user's notes")
    with pytest.raises(EvitError, match=r"refusing to overwrite .*r.md: it is not a test report written by"):
        check_own_files(tmp_path, owner, ["r.json", "r.md"])
    (tmp_path / "r.json").write_text('{"ours": true}')
    check_own_files(tmp_path, owner, ["r.json", "r.md"])
    check_own_files(tmp_path, owner, ["other.md"], owned=["other.md"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(EvitError, match="exists and is not a folder"):
        check_own_files(tmp_path / "file", owner, ["r.json"])


# -- each writer ---------------------------------------------------------------------------------------------------
def test_export_folders(tmp_path):
    folder = tmp_path / "exp"
    shutil.copytree(build_cls_export()[0], folder)
    listed = set(json.loads((folder / MANIFEST).read_text())["files"])
    assert declared_files(folder, EXPORT) == {MANIFEST, SIGNATURE, *listed} and owns_folder(folder, EXPORT)
    (folder / SIGNATURE).write_text("a signature added later by evit-deploy sign")
    assert owns_folder(folder, EXPORT)
    (folder / "notes.txt").write_text("mine")
    assert not owns_folder(folder, EXPORT)
    (folder / "notes.txt").unlink()
    data = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**data, "schema": 99}))  # a manifest this version does not read
    assert not owns_folder(folder, EXPORT)


@pytest.mark.slow
def test_device_bundles(tmp_path, capsys):
    from evit_deploy.device.bundle import BUNDLE, make_bundle

    from .helpers import run_cli

    export, ckpt = build_cls_export()
    out = tmp_path / "bundle"
    make_bundle(export, "jetson", out, weights=str(ckpt))
    assert owns_folder(out, BUNDLE) and "export/export.json" in declared_files(out, BUNDLE)
    make_bundle(export, "jetson", out, weights=str(ckpt))  # ours: replaced
    (out / "results").mkdir()
    (out / "results" / "timing.json").write_text("measured on the device")  # the user's results
    assert not owns_folder(out, BUNDLE)
    args = ["device-bundle", str(export), "-d", "jetson", "-w", str(ckpt), "-o", str(out)]
    assert run_cli(args) == 2 and "refusing to replace" in capsys.readouterr().err
    assert (out / "results" / "timing.json").read_text() == "measured on the device"
    assert run_cli([*args, "--force"]) == 0
    (aside,) = tmp_path.glob("bundle.old-*")
    assert (aside / "results" / "timing.json").read_text() == "measured on the device" and owns_folder(out, BUNDLE)


def test_video_outputs(tmp_path):
    from evit_deploy.video.run import KIND, VIDEO_OUTPUT, check_output

    folder = tmp_path / "video"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"kind": KIND, "frames": 3}))  # as every version wrote it
    (folder / "frames.jsonl").write_text("{}\n")
    (folder / "annotated.mp4").write_bytes(b"\0")
    assert owns_folder(folder, VIDEO_OUTPUT) and check_output(folder) == folder
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(EvitError, match="not a previous evit-deploy video output"):
        check_output(folder)
    (folder / "notes.txt").unlink()
    (folder / "summary.json").write_text(json.dumps({"kind": "something else"}))
    assert not owns_folder(folder, VIDEO_OUTPUT)


def test_triton_models_and_their_earlier_marker(tmp_path):
    from evit_deploy.triton.repository import OWNER_MARKER, TRITON_MODEL, write_repository

    export = build_cls_export()[0]
    repo = tmp_path / "repo"
    models = write_repository(export, repo)
    for model in models:
        marker = json.loads((model.folder / OWNER_MARKER).read_text())
        assert marker["writer"] == "evit-deploy triton" and "config.pbtxt" in marker["files"]
        assert owns_folder(model.folder, TRITON_MODEL)
    graph = next(m.folder for m in models if m.name.endswith("-model"))
    (graph / OWNER_MARKER).write_text("written by evit-deploy triton from efficientvit-b0-r224\n")  # 0.1.0's marker
    assert owns_folder(graph, TRITON_MODEL)
    write_repository(export, repo, overwrite=True)  # recognised: replaced, now with the listing marker
    assert json.loads((graph / OWNER_MARKER).read_text())["files"]
    (graph / OWNER_MARKER).write_text("written by evit-deploy triton from efficientvit-b0-r224\n")
    (graph / "notes.txt").write_text("mine")  # not in the layout the earlier version wrote
    with pytest.raises(EvitError, match="not written by evit-deploy triton"):
        write_repository(export, repo, overwrite=True)
    assert (graph / "notes.txt").read_text() == "mine"


def test_report_folders_and_earlier_script_reports(tmp_path):
    from evit_deploy.bench.render import REPORT
    from evit_deploy.bench.scripts import script_report_owner
    from evit_deploy.eval.report import EVAL_REPORT

    (tmp_path / "report.json").write_text(json.dumps({"results": [], "machine": {}, "model": "m"}))  # schema 1
    assert declared_files(tmp_path, REPORT) == {"report.json", "report.md", "report.html"}
    (tmp_path / "eval.json").write_text(json.dumps({"model": "m", "dataset": {}, "results": []}))
    assert declared_files(tmp_path, EVAL_REPORT) == {"eval.json", "eval.md"}
    owner = script_report_owner("cpu")
    (tmp_path / "cpu.json").write_text(json.dumps({"machine": {}, "results": [], "settings": {}}))  # a 0.1.0 script's
    check_own_files(tmp_path, owner, ["cpu.json", "cpu.md", "cpu.html"])
    (tmp_path / "cpu.json").write_text(json.dumps({"the user's": "data"}))
    with pytest.raises(EvitError, match="cpu.json: it is not a benchmark report written by evit-deploy"):
        check_own_files(tmp_path, owner, ["cpu.json", "cpu.md", "cpu.html"])


def test_batch_prediction_files(tmp_path):
    from evit_deploy.predict.jobs import INDEX, TABLE, OutputFolder

    out = OutputFolder(tmp_path)
    (tmp_path / "street.png").write_bytes(b"the user's photo")
    with pytest.raises(EvitError, match=r"refusing to overwrite .*street.png: it is not a predict output"):
        out.check(["street"])
    record = {"image": "x/street.jpg", "result_file": "street.json", "overlay": "street.png"}
    (tmp_path / "street.json").write_text(json.dumps(record))  # an interrupted run: the record names its files
    out.check(["street"])
    (tmp_path / "street.json").unlink()
    (tmp_path / INDEX).write_text(json.dumps([record]))  # a finished run: the index names them
    out.check(["street"])
    (tmp_path / INDEX).unlink()
    (tmp_path / "street.png").unlink()
    (tmp_path / TABLE).write_text(json.dumps(record) + "\n")  # the Ray engine's table without its index
    out.check(["street"])
    (tmp_path / TABLE).write_text("the user's table\n")
    with pytest.raises(EvitError, match="predictions.jsonl"):
        out.check(["street"])
