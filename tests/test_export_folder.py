"""Export folders you can trust: one owner of export.json, confined paths, integrity on load, nothing of the user's
deleted, bounded sizes, cleanup on SIGTERM, images decoded upright, input problems as one-line errors (exit 2)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evit_deploy import create_model, runtime
from evit_deploy.artifacts import EXPORT, MANIFEST, ManifestError, choose_artifact, read_manifest
from evit_deploy.errors import CheckpointError, EvitError
from evit_deploy.files import STAGING_MARKER, owns_folder, remove_stale_staging, replace_dir
from evit_deploy.images import ImageTooLarge, load_rgb, open_image
from evit_deploy.predict import Predictor
from evit_deploy.triton import write_repository

from .helpers import FAST_ARGS, fast_bench, run_cli
from .shared_exports import build_cls_export, build_seg_export


def copy_export(tmp_path: Path, name: str = "exp") -> Path:
    folder = tmp_path / name
    shutil.copytree(build_cls_export()[0], folder)
    return folder


def edit_manifest(folder: Path, **changes) -> dict:  # noqa: ANN003
    data = json.loads((folder / MANIFEST).read_text())
    for key, value in changes.items():
        if key.startswith("artifact_"):
            data["artifacts"][0][key.removeprefix("artifact_")] = value
        else:
            data[key] = value
    (folder / MANIFEST).write_text(json.dumps(data))
    return data


def every_reader(folder: Path) -> list:
    """Each way a user opens an export folder (runtime, predictor, bench, validate, triton, serve)."""
    from evit_deploy.bench.harness import bench_export
    from evit_deploy.export.pipeline import validate_export
    from evit_deploy.serve.app import create_app

    ckpt = str(build_cls_export()[1])
    return [
        lambda: runtime.load(folder),
        lambda: Predictor.from_export(folder),
        lambda: bench_export(folder, fast_bench(), ckpt),
        lambda: validate_export(folder, ckpt),
        lambda: write_repository(folder, folder.parent / "repo"),
        lambda: create_app(folder),
    ]


def one_line_exit_2(capsys, args: list[str]) -> str:  # noqa: ANN001
    """Run the CLI; it must exit 2 with one error line, last (after warnings and progress), and no traceback."""
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and sum(line.startswith("error") for line in lines) == 1, lines
    assert lines[-1].startswith("error: ") and "internal error" not in lines[-1], lines
    return lines[-1]


# -- 1. data loss --------------------------------------------------------------------------------------------
def test_export_refuses_a_folder_that_is_not_an_export(tmp_path, capsys):
    user = tmp_path / "user"
    (user / "sub").mkdir(parents=True)
    (user / "notes.txt").write_text("mine")
    err = one_line_exit_2(capsys, ["export", "efficientvit-b0-r224", "-o", str(user)])
    assert str(user) in err and "notes.txt" in err and "--force" in err
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt", "sub"]
    assert (user / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".user.*"))


def test_an_export_with_a_file_of_the_user_is_not_replaced(tmp_path, capsys):
    folder = copy_export(tmp_path)
    assert owns_folder(folder, EXPORT)
    (folder / "my-notes.txt").write_text("mine")
    assert not owns_folder(folder, EXPORT)
    one_line_exit_2(capsys, ["export", "efficientvit-b0-r224", "-o", str(folder)])
    assert (folder / "my-notes.txt").read_text() == "mine"


def test_replace_dir_rules(tmp_path):
    def staged(name: str) -> Path:
        new = tmp_path / name
        new.mkdir()
        (new / "result").write_text("new")
        return new

    ours, theirs, empty = tmp_path / "ours", tmp_path / "theirs", tmp_path / "empty"
    for folder, marker in ((ours, "ours"), (theirs, "theirs")):
        folder.mkdir()
        (folder / marker).write_text(marker)
    empty.mkdir()
    is_ours = lambda p: (p / "ours").exists()  # noqa: E731
    assert replace_dir(staged("a"), ours, is_ours) is None and (ours / "result").exists()
    assert replace_dir(staged("b"), empty, is_ours) is None and (empty / "result").exists()
    with pytest.raises(EvitError, match="refusing to replace"):
        replace_dir(staged("c"), theirs, is_ours)
    assert (theirs / "theirs").exists() and (tmp_path / "c").exists()
    aside = replace_dir(tmp_path / "c", theirs, is_ours, force=True)
    assert (aside / "theirs").read_text() == "theirs" and (theirs / "result").exists()  # moved, not deleted
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_force_moves_the_users_folder_aside_and_keeps_it(tmp_path, capsys):
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    profile = tmp_path / "light.yaml"
    profile.write_text("extends: cpu-ort\nvalidation: {photos: [astronaut], noise: 0}\n")
    assert run_cli(["export", "efficientvit-b0-r224", "-t", str(profile), "-o", str(user), "--force"]) == 0
    assert "moved the previous contents" in capsys.readouterr().out
    (aside,) = tmp_path.glob("user.old-*")
    assert (aside / "notes.txt").read_text() == "mine"
    assert read_manifest(user).model == "efficientvit-b0-r224"


def test_output_that_can_never_be_replaced(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for output in (".", str(tmp_path), str(tmp_path.parent)):
        assert "current folder" in one_line_exit_2(capsys, ["export", "efficientvit-b0-r224", "-o", output])
    (tmp_path / "file").write_text("x")
    assert "is a file" in one_line_exit_2(capsys, ["export", "efficientvit-b0-r224", "-o", "file"])


# -- 2. paths confined -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["../../other/model.onnx", "/etc/passwd.onnx", "./model.onnx", "sub/../model.onnx",
                                  "", "a\\b.onnx"])
def test_artifact_paths_outside_the_folder_are_refused(tmp_path, path):
    folder = copy_export(tmp_path)
    (tmp_path / "other").mkdir()
    shutil.copy(folder / "model.onnx", tmp_path / "other" / "model.onnx")
    edit_manifest(folder, artifact_path=path)
    for reader in every_reader(folder):
        with pytest.raises(EvitError, match="artifact path|refused"):
            reader()
    assert not (tmp_path / "repo").exists()


def test_a_symlink_pointing_outside_is_refused(tmp_path):
    folder = copy_export(tmp_path)
    outside = tmp_path / "outside.onnx"
    shutil.move(folder / "model.onnx", outside)
    (folder / "model.onnx").symlink_to(outside)
    for reader in every_reader(folder):
        with pytest.raises(EvitError, match="outside the export folder"):
            reader()
    assert not owns_folder(folder, EXPORT)  # a symlink is never ours to delete through


# -- 3. triton stays under --repo --------------------------------------------------------------------------------
def test_triton_model_names_cannot_escape_the_repository(tmp_path, capsys):
    folder = copy_export(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    repo = tmp_path / "repo"
    for name in ("../victim", "..", ".hidden", "a/b", "x" * 200):
        with pytest.raises(EvitError, match="not a safe name"):
            write_repository(folder, repo, name=name, overwrite=True)
    edit_manifest(folder, model="../victim")
    err = one_line_exit_2(capsys, ["triton", str(folder), "--repo", str(repo), "--force"])
    assert "model" in err
    assert (victim / "keep.txt").read_text() == "keep" and sorted(p.name for p in victim.iterdir()) == ["keep.txt"]
    assert not repo.exists() or not any(repo.iterdir())


def test_triton_force_replaces_only_its_own_models(tmp_path):
    folder = copy_export(tmp_path)
    repo = tmp_path / "repo"
    write_repository(folder, repo)
    write_repository(folder, repo, overwrite=True)  # ours: replaced
    shutil.rmtree(repo / "efficientvit-b0-r224-model")
    (repo / "efficientvit-b0-r224-model").mkdir()
    (repo / "efficientvit-b0-r224-model" / "config.pbtxt").write_text("the user's own model")
    with pytest.raises(EvitError, match="not written by evit-deploy triton"):
        write_repository(folder, repo, overwrite=True)
    assert (repo / "efficientvit-b0-r224-model" / "config.pbtxt").read_text() == "the user's own model"


def test_triton_full_disk_leaves_no_half_written_repository(tmp_path, monkeypatch, capsys):
    folder = copy_export(tmp_path)
    real = shutil.copyfile

    def full_disk(src, dst, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        real(src, dst, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(shutil, "copyfile", full_disk)
    err = one_line_exit_2(capsys, ["triton", str(folder), "--repo", str(tmp_path / "repo")])
    assert "no space left" in err
    assert not (tmp_path / "repo").exists()  # no model folder, no staging folder; the empty repo made for it is gone


# -- 4. integrity on every load -----------------------------------------------------------------------------------
def test_a_swapped_artifact_is_never_run(tmp_path, capsys):
    folder = copy_export(tmp_path)
    seg = build_seg_export()[0]
    shutil.copy(seg / "model.onnx", folder / "model.onnx")  # a valid ONNX, but not the one exported here
    for reader in every_reader(folder):
        with pytest.raises(ManifestError, match="modified or is corrupt"):
            reader()
    for args in (["predict", str(folder), str(tmp_path / "none.png")], ["bench", "run", str(folder), *FAST_ARGS],
                 ["serve", str(folder), "--port", "0"], ["validate", str(folder), "-w", str(build_cls_export()[1])]):
        assert "model.onnx" in one_line_exit_2(capsys, args)
    import onnx

    same = onnx.load(str(build_cls_export()[0] / "model.onnx"))
    same.doc_string = "re-saved"
    onnx.save(same, str(folder / "model.onnx"))
    with pytest.raises(ManifestError, match="modified"):
        runtime.load(folder)
    assert runtime.load(folder, verify=False).inputs[0].name == "input"  # the escape hatch


def test_input_shape_disagreeing_with_the_manifest_is_refused_at_load(tmp_path, capsys):
    folder = copy_export(tmp_path)
    data = json.loads((folder / MANIFEST).read_text())
    data["artifacts"][0]["inputs"][0]["shape"] = ["batch", 3, 256, 256]
    data["input_size"] = [256, 256]  # consistent with the card's contract: only the graph disagrees
    (folder / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="does not match export.json"):
        runtime.load(folder)
    assert "does not match" in one_line_exit_2(capsys, ["serve", str(folder), "--port", "0"])


def test_loading_an_artifact_file_checks_the_manifest_beside_it(tmp_path):
    folder = copy_export(tmp_path)
    assert runtime.load(folder / "model.onnx").inputs[0].name == "input"
    with open(folder / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ManifestError, match="modified"):
        runtime.load(folder / "model.onnx")


# -- 5. sizes from input are bounded --------------------------------------------------------------------------------
@pytest.mark.parametrize("change", [
    {"input_size": [100000, 100000]}, {"input_size": [224]}, {"input_size": "224x224"},
    {"batch": {"size": 1, "dynamic": True, "max": 10**9}}, {"artifacts": "model.onnx"}, {"artifacts": []},
    {"task": "detection"}, {"artifact_format": "savedmodel"}, {"artifact_role": "head"},
    {"artifact_sha256": "abc"}, {"schema": 7}, {"model": 5},
])
def test_malformed_manifests_are_one_line_errors(tmp_path, capsys, change):
    folder = copy_export(tmp_path)
    edit_manifest(folder, **change)
    with pytest.raises(ManifestError):
        read_manifest(folder)
    one_line_exit_2(capsys, ["predict", str(folder), str(tmp_path / "x.png")])


def test_manifest_without_schema_and_oversized_manifest(tmp_path):
    folder = copy_export(tmp_path)
    data = json.loads((folder / MANIFEST).read_text())
    data.pop("schema")
    (folder / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="no schema version"):
        read_manifest(folder)
    (folder / MANIFEST).write_text(" " * (9 * 2**20))
    with pytest.raises(ManifestError, match="at most"):
        read_manifest(folder)


def test_export_sizes_are_checked_before_any_work(tmp_path, capsys):
    args = ["export", "efficientvit-seg-b0-cityscapes", "-o", str(tmp_path / "x")]
    assert "--allow-large-input" in one_line_exit_2(capsys, [*args, "--imgsz", "8192", "8192"])
    assert "at most 64" in one_line_exit_2(capsys, [*args, "--batch", "100000"])
    assert "not found" in one_line_exit_2(capsys, [*args, "-w", str(tmp_path / "missing.pt")])
    assert not (tmp_path / "x").exists() and not list(tmp_path.iterdir())


def test_bench_batch_over_the_export_maximum(tmp_path, capsys):
    folder = copy_export(tmp_path)
    assert "up to 64" in one_line_exit_2(capsys, ["bench", "run", str(folder), "--batch", "100000", *FAST_ARGS])


# -- 6. SIGTERM and stale staging folders ---------------------------------------------------------------------------
# SIGTERM at each moment of a staged write, sent by the process to itself at exactly that moment (the signal is
# delivered at once unless we hold it back): the staging folder is never left behind, and a folder being moved into
# place is moved whole or not at all.
def _sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def _signal_after(fn):  # noqa: ANN001, ANN202
    def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        result = fn(*args, **kwargs)
        _sigterm_self()
        return result
    return wrapped


def _signal_before(fn):  # noqa: ANN001, ANN202
    def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        _sigterm_self()
        return fn(*args, **kwargs)
    return wrapped


@pytest.mark.parametrize("moment", ["folder created", "marker written", "inside the block", "cleanup after an error"])
def test_sigterm_at_each_moment_of_staging_leaves_nothing(tmp_path, monkeypatch, moment):
    from evit_deploy import files

    out = tmp_path / "out"
    before = signal.getsignal(signal.SIGTERM)  # SIG_DFL, or a library's (ray.init installs one for good)
    if moment == "folder created":
        monkeypatch.setattr(files.tempfile, "mkdtemp", _signal_after(files.tempfile.mkdtemp))
    elif moment == "marker written":
        monkeypatch.setattr(files.socket, "gethostname", _signal_after(files.socket.gethostname))
    elif moment == "cleanup after an error":
        monkeypatch.setattr(files.shutil, "rmtree", _signal_before(files.shutil.rmtree))
    with pytest.raises(files.Terminated):
        with files.staged_dir(out) as tmp:
            (tmp / "model.onnx").write_bytes(b"x" * 1000)
            if moment == "inside the block":
                _sigterm_self()
            if moment == "cleanup after an error":
                raise RuntimeError("the export failed")
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before  # ours is gone once the folder is: the previous one is back


@pytest.mark.parametrize("previous", [False, True], ids=["new folder", "replacing a previous export"])
def test_sigterm_during_the_move_into_place_moves_all_or_nothing(tmp_path, monkeypatch, previous):
    from evit_deploy import files

    out = tmp_path / "out"
    if previous:
        out.mkdir()
        (out / "old.txt").write_text("previous export")
    monkeypatch.setattr(files.os, "replace", _signal_before(os.replace))  # every rename of the move
    with pytest.raises(files.Terminated):
        with files.staged_dir(out) as tmp:
            (tmp / "model.onnx").write_text("complete")
            files.commit_staged(tmp, out, files.Owner("test output", "old.txt", lambda doc, name: []))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder, no old copy
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"]
    assert (out / "model.onnx").read_text() == "complete"


DRIVER = """
import os, signal, sys, tempfile
from evit_deploy import files
from evit_deploy.cli import main
moment = sys.argv[1]
def kill_after(fn):
    def wrapped(*args, **kwargs):
        result = fn(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return result
    return wrapped
if moment == "staging folder created":
    files.tempfile = type(tempfile)("tempfile_probe")
    files.tempfile.__dict__.update(vars(tempfile))
    files.tempfile.mkdtemp = kill_after(tempfile.mkdtemp)
else:
    files.replace_dir = kill_after(files.replace_dir)
main(sys.argv[2:])
"""


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["staging folder created", "moved into place"])
def test_sigterm_to_a_real_export_exits_143_and_leaves_nothing_half_done(tmp_path, moment):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", DRIVER, moment, "export", "efficientvit-b0-r224", "-o", str(out)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path, timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr.decode()[-2000:]
    assert "terminated by SIGTERM; cleaned up" in proc.stderr.decode()
    if moment == "staging folder created":
        assert list(tmp_path.iterdir()) == []
    else:  # the signal came while the finished export was being moved: the move completed, whole
        assert [p.name for p in tmp_path.iterdir()] == ["out"]
        read_manifest(out, verify=True)


@pytest.mark.slow
def test_sigterm_from_outside_during_export_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "evit_deploy", "export", "efficientvit-b0-r224", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.tmp-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    assert list(tmp_path.glob(".out.tmp-*")), "the export never started staging"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 128 + signal.SIGTERM
    assert "terminated by SIGTERM" in proc.stderr.read().decode()
    assert not list(tmp_path.iterdir())


def test_stale_staging_folders_of_dead_processes_are_removed(tmp_path):
    out = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.tmp-{dead.stdout.strip()}-abc"
    stale.mkdir()
    (stale / "model.onnx").write_text("half written")
    (stale / STAGING_MARKER).write_text(f"{socket.gethostname()} {dead.stdout.strip()}\n")
    alive = tmp_path / ".out.tmp-live"
    alive.mkdir()
    (alive / STAGING_MARKER).write_text(f"{socket.gethostname()} {os.getpid()}\n")
    unmarked = tmp_path / ".out.tmp-user"
    unmarked.mkdir()
    assert remove_stale_staging(out) == [stale]
    assert alive.exists() and unmarked.exists() and not stale.exists()


# -- 7. images ------------------------------------------------------------------------------------------------------
def rotated_jpeg(path: Path, size: tuple[int, int] = (96, 64)) -> Path:
    """A JPEG stored landscape (W x H = size) with EXIF orientation 6: it displays portrait."""
    image = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, exif=exif.tobytes())
    return path


def test_exif_orientation_is_applied_everywhere(tmp_path):
    path = rotated_jpeg(tmp_path / "phone.jpg")
    assert load_rgb(path).size == (64, 96)
    assert open_image(path.read_bytes()).size == (64, 96)  # the server's decoder
    assert load_rgb(Image.open(path)).size == (64, 96)
    seg = Predictor.from_export(build_seg_export()[0])
    assert seg(str(path)).label_map.shape == (96, 64)  # rows = the upright height


def test_16_bit_grayscale_is_scaled_not_saturated(tmp_path):
    ramp = (np.arange(256 * 16, dtype=np.uint16).reshape(16, 256) * 16)  # 0 .. 65520
    path = tmp_path / "depth.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = np.asarray(load_rgb(path))
    assert rgb.shape == (16, 256, 3) and rgb.min() == 0 and 250 <= rgb.max() <= 255
    assert np.abs(rgb[..., 0].astype(int) - np.rint(ramp / 257.0)).max() <= 1


def test_decompression_bombs_and_unreadable_files_in_predict(tmp_path, capsys):
    folder = copy_export(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a", "c"):
        Image.new("RGB", (80, 60), (10, 120, 200)).save(photos / f"{name}.png")
    (photos / "b.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(ImageTooLarge):
        load_rgb(photos / "a.png", max_pixels=100)
    err = one_line_exit_2(capsys, ["predict", str(folder), str(photos / "a.png"), "--max-pixels", "100",
                                   "-o", str(tmp_path / "bomb")])
    assert "no image could be read" in err and "limit is 100 pixels" in err and not (tmp_path / "bomb").exists()
    err = one_line_exit_2(capsys, ["predict", str(folder), str(photos), "-o", str(tmp_path / "out")])
    assert "1 of 3 images" in err and "b.jpg" in err
    index = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [Path(r["image"]).name for r in index] == ["a.png", "c.png"]
    assert (tmp_path / "out" / "a.json").is_file() and (tmp_path / "out" / "c.json").is_file()
    err = one_line_exit_2(capsys, ["predict", str(folder), str(photos), "--strict", "-o", str(tmp_path / "strict")])
    assert "b.jpg" in err and not (tmp_path / "strict" / "predictions.json").exists()


def test_predict_never_overwrites_files_it_did_not_write(tmp_path, capsys):
    folder = build_seg_export()[0]
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (80, 60), (10, 120, 200)).save(photos / "street.png")
    before = (photos / "street.png").read_bytes()
    err = one_line_exit_2(capsys, ["predict", str(folder), str(photos), "-o", str(photos)])
    assert "refusing to overwrite" in err and (photos / "street.png").read_bytes() == before
    assert run_cli(["predict", str(folder), str(photos), "-o", str(tmp_path / "out")]) == 0
    assert run_cli(["predict", str(folder), str(photos), "-o", str(tmp_path / "out")]) == 0  # a rerun: ours


# -- 8. input problems are exit 2 with one line -----------------------------------------------------------------------
@pytest.mark.slow
def test_full_disk_and_read_only_file_system_are_input_errors(tmp_path, capsys, monkeypatch):
    folder = copy_export(tmp_path)
    import evit_deploy.bench.render as report

    def read_only(path, data, mode=None):  # noqa: ANN001
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(report, "atomic_write", read_only)
    err = one_line_exit_2(capsys, ["bench", "run", str(folder), *FAST_ARGS, "-o", str(tmp_path / "b")])
    assert "read-only file system" in err

    import evit_deploy.export.pipeline as pipeline

    def full(folder, manifest):  # noqa: ANN001
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / MANIFEST))

    monkeypatch.setattr(pipeline, "write_manifest", full)
    profile = tmp_path / "light.yaml"
    profile.write_text("extends: cpu-ort\nvalidation: {photos: [astronaut], noise: 0}\n")
    err = one_line_exit_2(capsys, ["export", "efficientvit-b0-r224", "-t", str(profile), "-o", str(tmp_path / "e")])
    assert "no space left" in err
    assert not (tmp_path / "e").exists() and not list(tmp_path.glob(".e.*"))


def test_ema_only_checkpoint(tmp_path, capsys):
    model = create_model("efficientvit-b0-r224")
    ckpt = tmp_path / "ema.pt"
    torch.save({"state_dict_ema": model.state_dict(), "epoch": 3}, ckpt)
    with pytest.raises(CheckpointError, match="only EMA weights.*--ema"):
        create_model("efficientvit-b0-r224", ckpt)
    loaded = create_model("efficientvit-b0-r224", ckpt, ema=True)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    err = one_line_exit_2(capsys, ["predict", "efficientvit-b0-r224", str(tmp_path / "x.png"), "-w", str(ckpt)])
    assert "state_dict_ema" in err and "--ema" in err


def test_choose_artifact_is_the_one_rule(tmp_path):
    manifest = read_manifest(copy_export(tmp_path))
    assert choose_artifact(manifest).path == "model.onnx"
    assert choose_artifact(manifest, "model", ("trt-engine", "onnx")).format == "onnx"
    with pytest.raises(EvitError, match="no runnable 'encoder'"):
        choose_artifact(manifest, "encoder")


def test_manifest_records_every_file_it_wrote(tmp_path):
    folder = copy_export(tmp_path)
    manifest = read_manifest(folder)
    assert manifest.files == ["model.onnx"] and manifest.schema == 1
    assert manifest.artifacts[0].sha256 == hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    assert manifest.runtime.providers == ["CPUExecutionProvider"] and manifest.batch.max == 64


def test_external_weights_of_a_large_onnx_are_a_hash_checked_companion(tmp_path, monkeypatch):
    """A graph over protobuf's 2 GB limit keeps its weights in <graph>.data (forced here on B0): export.json records
    that file as the graph's companion, and a swapped or missing .data is refused at load like a swapped graph."""
    from evit_deploy.export.exporters import onnx as onnx_exporter
    from evit_deploy.export.pipeline import ExportRequest, run_export

    monkeypatch.setattr(onnx_exporter, "PROTOBUF_LIMIT", 1)
    light = tmp_path / "light.yaml"
    light.write_text("extends: cpu-ort\nvalidation: {photos: [astronaut], noise: 0}\n")
    folder = run_export(ExportRequest("efficientvit-b0-r224", str(light), imgsz=(64, 64),
                                      output=str(tmp_path / "big"))).folder
    (entry,) = read_manifest(folder).artifacts
    data = folder / "model.onnx.data"
    assert list(entry.companions) == ["model.onnx.data"] and data.is_file()
    assert entry.companions["model.onnx.data"] == hashlib.sha256(data.read_bytes()).hexdigest()
    x = np.zeros((1, 3, 64, 64), np.float32)
    assert np.isfinite(runtime.load(folder)(x)).all()
    graph = next(m for m in write_repository(folder, tmp_path / "repo") if m.platform == "onnxruntime_onnx")
    assert (graph.folder / "1" / "model.onnx.data").read_bytes() == data.read_bytes()  # the weights travel along
    original = data.read_bytes()
    data.write_bytes(original[:-4] + b"\0\0\0\1")
    with pytest.raises(ManifestError, match="model.onnx.data was swapped"):
        runtime.load(folder)
    data.unlink()
    with pytest.raises(ManifestError, match="companion of model.onnx missing"):
        runtime.load(folder)
