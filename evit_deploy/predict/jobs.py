"""Batch prediction over image files, shared by both engines of ``evit-deploy predict`` (the local loop and the
Ray Data job): what is written for each image, and the output folder's rules (which images: ``inputs``).

Per image: ``<stem>.json`` (the result record), for segmentation ``<stem>.labels.png`` (pixel value = class id),
and ``<stem>.png`` (overlay) where the task has one; at the end ``predictions.json`` (every record, in input
order). The record is written first and names the files written after it, each file atomically, so an
interrupted run leaves nothing a rerun cannot recognise as its own: :meth:`OutputFolder.done` says whether an
image's outputs are complete (the Ray engine skips those), and :meth:`OutputFolder.check` refuses to overwrite
any file a previous ``predict`` did not write (e.g. the input photos).

A worker computes :class:`Rendered` (the result and its PNGs, independent of file names); :func:`outputs` turns
it into the record and files of one input, so the same image listed twice gets two complete sets.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import EvitError
from ..files import Owner, atomic_write, check_own_files, read_declaration
from ..tasks import task_spec
from .results import Result, Segmentation

INDEX = "predictions.json"  # every record, in input order
TABLE = "predictions.jsonl"  # the same records, one JSON object a line (written by the Ray engine)
OUTPUT_SUFFIXES = (".json", ".png", ".labels.png")  # per image: result, overlay, segmentation label map
_FILE_KEYS = ("result_file", "overlay", "label_map")  # record keys that name a file of the output folder


@dataclass(frozen=True)
class PredictorSpec:
    """How a worker loads its :class:`Predictor`: an export folder or artifact, or a zoo model with weights."""

    source: str
    weights: str | None = None
    ema: bool = False
    threads: int | None = None
    require_signature: str | None = None  # public key / CA certificates (None: EVIT_DEPLOY_REQUIRE_SIGNATURE)
    shared_cpu: bool = False  # the runtime shares the cores with other stages (video pipeline)

    def load(self) -> Any:
        """The Predictor (loads the model)."""
        from .predictor import Predictor

        if self._is_export():
            return Predictor.from_export(self.source, threads=self.threads, require_signature=self.require_signature,
                                         shared_cpu=self.shared_cpu)
        return Predictor.from_model(self.source, self.weights, ema=self.ema)

    def manifest(self) -> Any:
        """The export's manifest (checked without loading the model), or None for a zoo model (its weights must
        exist)."""
        from ..artifacts import read_manifest

        if self._is_export():
            path = Path(self.source)
            return read_manifest(path.parent if path.is_file() else path, verify=False,
                                 require_signature=self.require_signature)
        if self.weights is not None and not Path(self.weights).is_file():
            raise EvitError(f"weights not found: {self.weights}")
        return None

    def _is_export(self) -> bool:
        from ..zoo.cards import all_cards

        if Path(self.source).exists():
            return True
        if self.source in all_cards():
            from ..signing import resolve_trust

            trust = resolve_trust(self.require_signature)
            if trust is not None:
                raise EvitError(f"a signed export is required ({trust.description}); {self.source} is a zoo model "
                                "name, not an export folder")
            return False
        raise EvitError(f"{self.source} is neither an export folder/artifact nor a zoo model name")


# -- names -------------------------------------------------------------------------------------------------------
def unique_stems(paths: Sequence[str]) -> list[str]:
    """Output names: each path's stem, ``-2``, ``-3``... for repeats (in input order, so reruns agree)."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        stem = Path(path).stem
        n = seen.get(stem, 0) + 1
        seen[stem] = n
        stems.append(stem if n == 1 else f"{stem}-{n}")
    return stems


# -- one image's outputs -----------------------------------------------------------------------------------------
def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class Rendered:
    """What a worker computes for one image: the result (without the label map) and its PNG files."""

    model: str
    result: dict[str, Any]
    label_map_png: bytes | None = None
    overlay_png: bytes | None = None


def render(model: str, result: Result, image: Image.Image) -> Rendered:
    """The result of ``image`` ready to be written: ``result.to_dict`` and the label map / overlay as PNG."""
    label_map = png_bytes(Image.fromarray(result.label_map)) if isinstance(result, Segmentation) else None
    overlay = result.overlay(image)
    return Rendered(model, result.to_dict(include_label_map=False), label_map,
                    png_bytes(overlay) if overlay is not None else None)


def outputs(image: str, stem: str, rendered: Rendered) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The record of input ``image`` (written as ``<stem>.json``) and the other files it names."""
    record = {"image": image, "model": rendered.model, **rendered.result, "result_file": f"{stem}.json"}
    files = {}
    if rendered.label_map_png is not None:
        record["label_map"] = f"{stem}.labels.png"
        files[record["label_map"]] = rendered.label_map_png
    if rendered.overlay_png is not None:
        record["overlay"] = f"{stem}.png"
        files[record["overlay"]] = rendered.overlay_png
    return record, files


def summary(record: dict[str, Any]) -> str:
    """One line for the terminal: top classes, largest segments or the best SAM mask (the task's handler says)."""
    return task_spec(record["task"]).handler.summary(record)


# -- the output folder -------------------------------------------------------------------------------------------
def _files_of(records: list[Any]) -> set[str]:
    return {v for r in records if isinstance(r, dict) for k in _FILE_KEYS if isinstance(v := r.get(k), str)}


def _declared_files(doc: Any, name: str) -> set[str] | None:
    """What a declaration of ``predict`` lists: ``predictions.json`` (every record: their files and the JSONL
    table), or one image's record (it names itself as ``result_file``, and its other files)."""
    if name == INDEX:
        return _files_of(doc) | {TABLE} if isinstance(doc, list) else None
    return _files_of([doc]) if isinstance(doc, dict) and doc.get("result_file") == name else None


def _earlier_table(folder: Path) -> list[str] | None:
    """A ``predictions.jsonl`` without its ``predictions.json`` (an earlier run stopped between the two, or the index
    was removed): ours when its first line is a record."""
    try:
        with open(folder / TABLE) as f:
            first = json.loads(f.readline())
    except (OSError, ValueError):
        return None
    return [TABLE] if isinstance(first, dict) and "result_file" in first else None


# The ownership rule of predict's output folder (evit_deploy.files). The folder is shared (it may hold the input
# photos), so ownership is per file: a file is ours when predictions.json or an image's record lists it.
PREDICTIONS = Owner("predict output", INDEX, _declared_files, legacy=_earlier_table)


class OutputFolder:
    """The ``-o`` folder of ``predict``: writes each image's files and the index, never someone else's files."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def _record(self, name: str) -> dict[str, Any] | None:
        """The record in ``name`` when it is one this command wrote (it names itself as ``result_file``)."""
        record = read_declaration(self.path / name)
        return record if _declared_files(record, name) is not None else None

    def check(self, stems: Sequence[str]) -> None:
        """Refuse to overwrite files that a previous ``predict`` did not write (e.g. the input photos)."""
        if not self.path.is_dir():
            return
        names = [INDEX, TABLE, *(f"{stem}{suffix}" for stem in stems for suffix in OUTPUT_SUFFIXES)]
        check_own_files(self.path, PREDICTIONS, names, declarations=[f"{stem}.json" for stem in stems])

    def done(self, image: str, stem: str) -> dict[str, Any] | None:
        """The record of ``image`` when its outputs are complete here (written by an earlier run), else None."""
        record = self._record(f"{stem}.json")
        if record is None or record.get("image") != image:
            return None
        files = [record.get(k) for k in _FILE_KEYS if k != "result_file" and k in record]
        return record if all(isinstance(f, str) and (self.path / f).is_file() for f in files) else None

    def write(self, record: dict[str, Any], files: dict[str, bytes]) -> None:
        """One image's record, then the files it names (each atomically)."""
        atomic_write(self.path / record["result_file"], json.dumps(record) + "\n")
        for name, data in files.items():
            atomic_write(self.path / name, data)

    def finish(self, records: Sequence[dict[str, Any]], table: bool = False) -> None:
        """``predictions.json`` with every record (and ``predictions.jsonl``, one record a line, with ``table``)."""
        atomic_write(self.path / INDEX, json.dumps(list(records)) + "\n")
        if table:
            atomic_write(self.path / TABLE, "".join(json.dumps(r) + "\n" for r in records))
