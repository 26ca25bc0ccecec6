"""Exports shared by the whole test session (each built once per process, on first use): small, randomised
models in a light profile (one validation photo), so the many tests that only need *an* export stay fast."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

import torch

from evit_deploy import create_model
from evit_deploy.export.pipeline import ExportRequest, run_export
from evit_deploy.predict import Predictor, SamImage
from evit_deploy.samples import sample_photo

from .helpers import randomize_

LIGHT_PROFILE = "extends: cpu-ort\nvalidation: {photos: [astronaut], noise: 0}\n"
SEG_SIZE = (128, 256)


@cache
def export_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="evit-predict-tests-"))
    atexit.register(shutil.rmtree, root, True)
    (root / "light.yaml").write_text(LIGHT_PROFILE)
    return root


def _checkpoint(name: str, seed: int) -> Path:
    path = export_root() / f"{name}.pt"
    torch.save({"state_dict": randomize_(create_model(name), seed=seed).state_dict()}, path)
    return path


@cache
def build_cls_export() -> tuple[Path, Path]:
    """efficientvit-b0-r224 for cpu-ort (dynamic batch), randomised weights: (folder, checkpoint)."""
    ckpt = _checkpoint("efficientvit-b0-r224", seed=3)
    out = export_root() / "cls"
    run_export(ExportRequest("efficientvit-b0-r224", str(export_root() / "light.yaml"), str(ckpt), output=str(out)))
    return out, ckpt


@cache
def build_seg_export() -> tuple[Path, Path]:
    """efficientvit-seg-b0-cityscapes at 128x256, randomised weights: (folder, checkpoint)."""
    ckpt = _checkpoint("efficientvit-seg-b0-cityscapes", seed=4)
    out = export_root() / "seg"
    run_export(ExportRequest("efficientvit-seg-b0-cityscapes", str(export_root() / "light.yaml"), str(ckpt),
                             imgsz=SEG_SIZE, output=str(out)))
    return out, ckpt


@cache
def build_sam_export() -> Path:
    """efficientvit-sam-l0 at 512 with the zoo's deterministic random weights (the same as create_model's)."""
    out = export_root() / "sam"
    run_export(ExportRequest("efficientvit-sam-l0", str(export_root() / "light.yaml"), imgsz=(512,), output=str(out)))
    return out


@cache
def sam_onnx_predictor() -> Predictor:
    return Predictor.from_export(build_sam_export())


@cache
def sam_coffee_image() -> SamImage:
    """The coffee photo encoded by the shared ONNX SAM predictor (pass it explicitly as ``image=``)."""
    return sam_onnx_predictor().set_image(sample_photo("coffee"))
