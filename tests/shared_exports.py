"""Exports shared by the whole test session: small, randomised models in a light profile (one validation photo),
so the many tests that only need *an* export stay fast. Each is built once per session, not once per worker: the
folder is the session's (``pytest_configure`` in conftest.py makes it and names it in ``EVIT_TEST_SHARED``; the
controller removes it at the end), and a file lock lets the first worker that needs an export build it while the
others wait and then read it. Tests only read these folders (copy one to change it)."""

from __future__ import annotations

import atexit
import io
import os
import shutil
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

import torch
from filelock import FileLock

from evit_deploy import create_model
from evit_deploy.export.pipeline import ExportRequest, run_export
from evit_deploy.files import atomic_write
from evit_deploy.predict import Predictor, SamImage
from evit_deploy.samples import sample_photo

from .helpers import randomize_

LIGHT_PROFILE = "extends: cpu-ort\nvalidation: {photos: [astronaut], noise: 0}\n"
SEG_SIZE = (128, 256)
SHARED_ENV = "EVIT_TEST_SHARED"


def make_session_root() -> Path:
    """A new folder for one session's shared exports, holding the light profile."""
    root = Path(tempfile.mkdtemp(prefix="evit-tests-"))
    (root / "light.yaml").write_text(LIGHT_PROFILE)
    return root


@cache
def export_root() -> Path:
    """The session's shared folder (this process's own when not run under pytest's conftest)."""
    if os.environ.get(SHARED_ENV):
        return Path(os.environ[SHARED_ENV])
    root = make_session_root()
    atexit.register(shutil.rmtree, root, True)
    return root


def built_once(name: str, build: Callable[[Path], None]) -> Path:
    """``root/name``, built by ``build(folder)`` by the first process of the session to ask for it."""
    folder = export_root() / name
    with FileLock(str(export_root() / f".{name}.lock")):
        if not (folder / "export.json").is_file():  # run_export moves a finished folder into place
            build(folder)
    return folder


def _checkpoint(name: str, seed: int) -> Path:
    """The randomised checkpoint beside the shared exports (written by the process that builds them)."""
    path = export_root() / f"{name}.pt"
    if not path.is_file():  # two workers may both write it: the same bytes, each written whole
        data = io.BytesIO()
        torch.save({"state_dict": randomize_(create_model(name), seed=seed).state_dict()}, data)
        atomic_write(path, data.getvalue())
    return path


def _export(model: str, checkpoint: Path | None, **kwargs: object) -> Callable[[Path], None]:
    return lambda out: run_export(ExportRequest(model, str(export_root() / "light.yaml"),
                                                str(checkpoint) if checkpoint else None, output=str(out), **kwargs))


@cache
def build_cls_export() -> tuple[Path, Path]:
    """efficientvit-b0-r224 for cpu-ort (dynamic batch), randomised weights: (folder, checkpoint)."""
    ckpt = _checkpoint("efficientvit-b0-r224", seed=3)
    return built_once("cls", _export("efficientvit-b0-r224", ckpt)), ckpt


@cache
def build_seg_export() -> tuple[Path, Path]:
    """efficientvit-seg-b0-cityscapes at 128x256, randomised weights: (folder, checkpoint)."""
    ckpt = _checkpoint("efficientvit-seg-b0-cityscapes", seed=4)
    return built_once("seg", _export("efficientvit-seg-b0-cityscapes", ckpt, imgsz=SEG_SIZE)), ckpt


@cache
def build_sam_export() -> Path:
    """efficientvit-sam-l0 at 512 with the zoo's deterministic random weights (the same as create_model's)."""
    return built_once("sam", _export("efficientvit-sam-l0", None, imgsz=(512,)))


@cache
def sam_onnx_predictor() -> Predictor:
    return Predictor.from_export(build_sam_export())


@cache
def sam_coffee_image() -> SamImage:
    """The coffee photo encoded by the shared ONNX SAM predictor (pass it explicitly as ``image=``)."""
    return sam_onnx_predictor().set_image(sample_photo("coffee"))
