"""The exports a search makes: one per :class:`~.space.ExportVariant`, made by the ordinary export pipeline (each
validated by its gate) and kept in the search cache, keyed by everything that decides its content — so a repeated or
interrupted search reuses them — plus the accuracy each loses against PyTorch.

Accuracy: with ``--eval DIR``, the points of the official metric an export loses (``evit-deploy eval``'s protocol);
else the agreement with PyTorch the export's gate measured on the calibration images (top-1 for classification,
per-pixel argmax for segmentation, the embedding cosine for SAM), as 100 x (1 - agreement) points.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import read_manifest
from ..errors import EvitError, one_line
from ..files import atomic_write, sha256_file
from ..host import library_versions
from .space import ExportVariant


@dataclass
class SearchInputs:
    """What every export of a search shares."""

    model: str
    weights: str | None
    ema: bool
    imgsz: tuple[int, int] | None
    max_drop: float
    eval_dir: str | None
    eval_limit: int | None
    cache: Path

    def digest(self) -> dict[str, Any]:
        """What decides an export's content, besides its variant (the cache key's ingredients)."""
        return {"model": self.model, "weights": sha256_file(self.weights) if self.weights else "random",
                "ema": self.ema, "imgsz": list(self.imgsz or ()), "max_drop": self.max_drop,
                "eval": str(Path(self.eval_dir).resolve()) if self.eval_dir else None, "eval_limit": self.eval_limit,
                "versions": library_versions()}


@dataclass
class ExportOutcome:
    variant: ExportVariant
    folder: Path | None
    seconds: float
    size_bytes: int = 0
    drop: float | None = None  # accuracy points lost against PyTorch
    accuracy_source: str = ""  # how the drop was measured
    error: str | None = None
    cached: bool = False


def _key(variant: ExportVariant, inputs: SearchInputs, digest: dict[str, Any]) -> str:
    text = json.dumps({"variant": variant.profile_text(), "fallback": variant.fallback, **digest}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def make_export(variant: ExportVariant, inputs: SearchInputs, digest: dict[str, Any], step: Any) -> ExportOutcome:
    """The export of ``variant`` (made now, or found in the cache), with its size and accuracy drop. A variant the
    export refuses (its gate, an unsupported combination) is an outcome with its one-line error, not an exception."""
    from ..export.pipeline import ExportRequest, run_export

    key = _key(variant, inputs, digest)
    folder = inputs.cache / "exports" / key
    record = folder.with_suffix(".json")
    if folder.is_dir() and record.is_file():
        done = json.loads(record.read_text())
        return ExportOutcome(variant, folder, done["seconds"], done["size_bytes"], done["drop"], done["source"],
                             cached=True)
    profile = inputs.cache / "profiles" / f"{variant.profile_name}.yaml"
    atomic_write(profile, variant.profile_text())
    request = ExportRequest(inputs.model, str(profile), inputs.weights, inputs.imgsz, precision=variant.precision,
                            output=str(folder), ema=inputs.ema, force=True,
                            max_drop=inputs.max_drop if variant.fallback else None)
    started = time.perf_counter()
    try:
        if variant.fallback and inputs.eval_dir:
            from ..eval import EvalSettings
            from ..eval.runner import candidate_drop
            from ..export.request import preflight

            resolved = preflight(request)
            request.accuracy_drop = candidate_drop(inputs.model, resolved.input_size,
                                                   EvalSettings(inputs.eval_dir, weights=inputs.weights,
                                                                ema=inputs.ema, limit=inputs.eval_limit))
        result = run_export(request, step)
    except EvitError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        return ExportOutcome(variant, None, time.perf_counter() - started, error=one_line(exc, 240))
    seconds = time.perf_counter() - started
    size = sum(f.stat().st_size for f in result.folder.iterdir() if f.is_file())
    drop, source = accuracy_drop(result.folder, inputs)
    atomic_write(record, json.dumps({"seconds": seconds, "size_bytes": size, "drop": drop, "source": source,
                                     "variant": variant.label}) + "\n")
    return ExportOutcome(variant, result.folder, seconds, size, drop, source)


def accuracy_drop(folder: Path, inputs: SearchInputs) -> tuple[float, str]:
    """(points lost against PyTorch, how it was measured) of an export: the worst of its timed graphs."""
    if inputs.eval_dir:
        from ..eval import EvalSettings, accuracy_drops, evaluate

        report = evaluate(folder, EvalSettings(inputs.eval_dir, weights=inputs.weights, ema=inputs.ema,
                                               limit=inputs.eval_limit))
        drops = [d for _, d in accuracy_drops(report)]
        metric = report["protocol"]["primary_metric"]
        return (max(drops) if drops else 0.0), (f"{metric} on {report['dataset']['images']} images of "
                                                f"{report['dataset']['kind']} (evit-deploy eval, official protocol)")
    manifest = read_manifest(folder, verify=False)
    worst, metric = 0.0, ""
    for report in manifest.validation.get("artifacts", []):
        if report.get("role", "model") not in ("model", "encoder"):
            continue
        agreement = (report.get("agreement") or {}).get("value")
        if agreement is None:
            continue
        worst = max(worst, 100.0 * (1.0 - float(agreement)))
        metric = report["agreement"]["metric"]
    return worst, (f"{metric or 'agreement'} with PyTorch on the export's calibration images (no --eval dataset; "
                   "random weights make this a statement about numerics, not accuracy)")
