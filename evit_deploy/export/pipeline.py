"""The export pipeline: build → transform → export each unit in each format → validate → write atomically.

Everything is written into a temporary folder beside the output and moved into place only when every
artifact passed validation; on any failure nothing is left behind and an existing export is untouched.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import EvitError
from ..processing import IMAGENET_MEAN, IMAGENET_STD, SAM_MEAN, SAM_STD
from ..zoo import create_model, get_card
from ..zoo.cards import ModelCard
from .exporters import EXPORTERS, Artifact, ExportContext
from .exporters.base import StepReporter, sha256_file, silent_step
from .profiles import ExportProfile, load_profile, profile_from_dict
from .tasks import ExportSpec, ExportUnit, check_input_size, export_units
from .transforms import apply_transforms, changes_numerics
from .validate import ArtifactReport, torch_outputs, transform_effect, validate_artifact

MANIFEST = "export.json"
class ValidationFailed(EvitError):
    """An artifact was outside its profile's tolerance or produced non-finite values."""


@dataclass
class ExportRequest:
    model: str
    target: str = "cpu-ort"
    weights: str | None = None
    imgsz: tuple[int, ...] | None = None
    batch: int | None = None
    precision: str | None = None
    output: str | None = None
    calib: str | None = None  # folder of calibration images for full-integer int8


@dataclass
class ExportResult:
    folder: Path
    manifest: dict[str, Any]
    reports: list[ArtifactReport] = field(default_factory=list)
    seconds: float = 0.0
    model: Any = field(default=None, repr=False)  # the untransformed PyTorch model, for callers that run it next

    @property
    def skipped(self) -> list[str]:
        return self.manifest.get("skipped", [])


def versions() -> dict[str, str]:
    found = {"evit-deploy": __version__, "python": platform.python_version()}
    for dist in ("torch", "onnx", "onnxruntime", "onnxsim", "onnxscript", "numpy", "litert-torch", "ai-edge-litert",
                 "ai-edge-quantizer", "tensorrt"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def resolve_spec(card: ModelCard, profile: ExportProfile, imgsz: tuple[int, ...] | None,
                 batch: int | None) -> ExportSpec:
    if imgsz:
        size = (imgsz[0], imgsz[-1])
    else:
        size = tuple(profile.input_size.get(card.task) or card.input_size)
    check_input_size(card, size)
    if batch is not None and batch < 1:
        raise EvitError(f"batch must be >= 1, got {batch}")
    if batch is not None and not profile.batch.dynamic and profile.batch.max < batch:
        raise EvitError(f"target {profile.name} has a static batch of at most {profile.batch.max}; got {batch}")
    return ExportSpec(
        input_size=(int(size[0]), int(size[1])), batch=batch or profile.batch.size, dynamic_batch=profile.batch.dynamic,
        photos=list(profile.validation.photos), noise=profile.validation.noise,
    )


def resolve_precision(profile: ExportProfile, precision: str | None) -> str:
    chosen = precision or profile.precisions[0]
    if chosen not in profile.precisions:
        raise EvitError(f"target {profile.name} does not offer precision '{chosen}' "
                        f"(it offers: {', '.join(profile.precisions)})")
    return chosen


def check_formats(profile: ExportProfile) -> None:
    for fmt in profile.formats:
        if fmt not in EXPORTERS:
            raise EvitError(f"target {profile.name} cannot be exported: no exporter is registered for format '{fmt}' "
                            f"(available formats: {', '.join(EXPORTERS)})")


def _temp_dir(output: Path) -> Path:
    parent = output.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=parent))
    except OSError as exc:
        raise EvitError(f"output directory {parent} is not writable ({exc.strerror or exc})") from None


def _move_into_place(tmp: Path, output: Path) -> None:
    old = None
    if output.exists():
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        os.replace(output, old)
    os.replace(tmp, output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def preprocessing_note(card: ModelCard) -> dict[str, Any]:
    mean, std = (SAM_MEAN, SAM_STD) if card.task == "sam" else (IMAGENET_MEAN, IMAGENET_STD)
    return {
        "embedded": False,
        "input": "normalised float32 RGB, NCHW: (pixel / 255 - mean) / std",
        "mean": list(mean),
        "std": list(std),
    }


def validate_units(units: list[ExportUnit], artifacts: list[Artifact], folder: Path, profile: ExportProfile,
                   step: StepReporter,
                   references: dict[str, list] | None = None) -> list[ArtifactReport]:
    """Gate every artifact of every unit against the unit's PyTorch outputs (computed unless given)."""
    from .. import runtime

    runtime._ensure_registered()
    reports = []
    for unit in units:
        reference = references[unit.role] if references else torch_outputs(unit)
        # Artifacts no runtime backend runs (e.g. a Jetson build bundle's build_engine.sh) are not validated.
        for artifact in [a for a in artifacts if a.role == unit.role and Path(a.path).suffix in runtime.BACKENDS]:
            with step(f"validate {artifact.path} ({len(unit.validation_inputs)} batches)"):
                reports.append(validate_artifact(unit, artifact, folder, reference,
                                                 profile.tolerance(artifact.precision), profile.runtime.threads))
    return reports


def run_export(request: ExportRequest, step: StepReporter = silent_step) -> ExportResult:
    """Export ``request.model`` for ``request.target``; raises EvitError (nothing written) on any failure."""
    started = time.perf_counter()
    card = get_card(request.model)
    profile = load_profile(request.target)
    precision = resolve_precision(profile, request.precision)
    check_formats(profile)
    spec = resolve_spec(card, profile, request.imgsz, request.batch)
    output = Path(request.output or Path("exports") / f"{card.name}-{profile.name}")
    if output.exists() and not output.is_dir():
        raise EvitError(f"output path {output} exists and is not a directory")

    tmp = _temp_dir(output)
    try:
        with step(f"build {card.name}"):
            original = create_model(card.name, request.weights)
        with step("apply transforms: " + (", ".join(profile.transforms) or "none")):
            model = copy.deepcopy(original)
            transforms = apply_transforms(model, profile.transforms, precision)
            units = export_units(model, card, spec)
        ctx = ExportContext(tmp, card.name, profile, precision, spec, step=step,
                            calib=Path(request.calib) if request.calib else None)
        for unit in units:
            for fmt in profile.formats:
                artifact = EXPORTERS[fmt]().export(unit, ctx)
                if artifact is not None:
                    ctx.artifacts.append(artifact)
        with step("PyTorch reference outputs"):
            references = {u.role: torch_outputs(u) for u in units}
        reports = validate_units(units, ctx.artifacts, tmp, profile, step, references)
        effect = None
        if changes_numerics(profile.transforms):
            with step("measure the transforms' effect against the untransformed model"):
                effect = [transform_effect(u, o, references[u.role])
                          for u, o in zip(units, export_units(original, card, spec))]
        failed = [r for r in reports if not r.passed]
        if failed:
            first = failed[0]
            raise ValidationFailed(
                f"validation failed for {first.artifact} ({first.precision}): {'; '.join(first.failures)}; "
                "nothing was written"
            )
        with step(f"write {output}"):
            for artifact in ctx.artifacts:
                artifact.sha256 = sha256_file(tmp / artifact.path)
            manifest = {
                "model": card.name,
                "task": card.task,
                "target": profile.name,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "input_size": list(spec.input_size),
                "batch": {"size": spec.batch, "dynamic": spec.dynamic_batch},
                "precision": precision,
                "weights": _weights_entry(request.weights, card),
                "profile": profile.to_dict(),
                "versions": versions(),
                "transforms": transforms,
                "preprocessing": preprocessing_note(card),
                "artifacts": [a.to_dict() for a in ctx.artifacts],
                "skipped": ctx.skipped,
                "validation": {
                    "passed": True,
                    "reference": "PyTorch fp32 (this package's modules, same weights, transformed)",
                    "artifacts": [r.to_dict() for r in reports],
                    "transform_effect": effect,
                },
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            _move_into_place(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(output, manifest, reports, time.perf_counter() - started, original)


def _weights_entry(weights: str | None, card: ModelCard) -> dict[str, Any]:
    if weights is None:
        return {"file": None, "random": True, "note": f"random weights; the official file is {card.checkpoint}"}
    return {"file": Path(weights).name, "sha256": sha256_file(Path(weights)), "random": False}


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise EvitError(f"{folder} is not an export folder (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
        manifest["model"], manifest["artifacts"], manifest["profile"]  # noqa: B018 - required keys
    except (ValueError, KeyError, TypeError) as exc:
        raise EvitError(f"{path} is not a valid export manifest ({type(exc).__name__}: {exc})") from None
    return manifest


def validate_export(folder: str | Path, weights: str | None = None,
                    step: StepReporter = silent_step) -> tuple[dict[str, Any], list[ArtifactReport]]:
    """Re-run the validation gate of an existing export folder against PyTorch."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    card = get_card(manifest["model"])
    profile = profile_from_dict(manifest["profile"])
    recorded = manifest.get("weights") or {}
    if weights is None and recorded.get("file"):
        raise EvitError(f"{folder} was exported from {recorded['file']}: pass it with --weights")
    if weights is not None and recorded.get("sha256") and sha256_file(Path(weights)) != recorded["sha256"]:
        raise EvitError(f"{weights} is not the checkpoint this export was made from ({recorded.get('file')})")
    artifacts = []
    for entry in manifest["artifacts"]:
        path = folder / entry["path"]
        if not path.is_file():
            raise EvitError(f"artifact missing: {path}")
        if entry.get("sha256") and sha256_file(path) != entry["sha256"]:
            raise EvitError(f"artifact {path} was modified or is corrupt (sha256 differs from {MANIFEST})")
        artifacts.append(Artifact(entry["format"], entry["role"], entry["path"], entry["precision"],
                                  entry["layout"], [], []))
    spec = ExportSpec(tuple(manifest["input_size"]), manifest["batch"]["size"], manifest["batch"]["dynamic"],
                      list(profile.validation.photos), profile.validation.noise)
    with step(f"build {card.name}"):
        model = create_model(card.name, weights)
        apply_transforms(model, profile.transforms, manifest["precision"])
        units = export_units(model, card, spec)
    return manifest, validate_units(units, artifacts, folder, profile, step)
