"""The export pipeline: build → transform → export each unit in each format → validate → write atomically.

Everything is written into a temporary folder beside the output and moved into place only when every
artifact passed validation; on any failure nothing is left behind and an existing export is untouched.
"""

from __future__ import annotations

import copy
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import __version__
from ..artifacts import BatchInfo, Manifest, RuntimeInfo, owns_folder, read_manifest, write_manifest, written_files
from ..errors import EvitError
from ..files import commit_staged, sha256_file, staged_dir, writing
from ..zoo import create_model, get_card
from ..zoo.cards import ModelCard
from .exporters import EXPORTERS, Artifact, ExportContext
from .exporters.base import StepReporter, silent_step
from .profiles import ExportProfile, profile_from_dict
from .request import ExportRequest, preflight
from .tasks import ExportSpec, ExportUnit, export_units
from .transforms import apply_transforms, changes_numerics
from .validate import ArtifactReport, torch_outputs, transform_effect, validate_artifact


class ValidationFailed(EvitError):
    """An artifact was outside its profile's tolerance or produced non-finite values."""


@dataclass
class ExportResult:
    folder: Path
    manifest: Manifest
    reports: list[ArtifactReport] = field(default_factory=list)
    seconds: float = 0.0
    model: Any = field(default=None, repr=False)  # the untransformed PyTorch model, for callers that run it next
    moved_aside: Path | None = None  # where a previous non-export output folder was moved (--force)

    @property
    def skipped(self) -> list[str]:
        return self.manifest.skipped


def versions() -> dict[str, str]:
    found = {"evit-deploy": __version__, "python": platform.python_version()}
    for dist in ("torch", "onnx", "onnxruntime", "onnxsim", "onnxscript", "numpy", "litert-torch", "ai-edge-litert",
                 "ai-edge-quantizer", "tensorrt"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def check_formats(profile: ExportProfile) -> None:
    for fmt in profile.formats:
        if fmt not in EXPORTERS:
            raise EvitError(f"target {profile.name} cannot be exported: no exporter is registered for format '{fmt}' "
                            f"(available formats: {', '.join(EXPORTERS)})")


def preprocessing_note(card: ModelCard) -> dict[str, Any]:
    p = card.preprocess
    return {
        "embedded": False,
        "input": "normalised float32 RGB, NCHW: (pixel / 255 - mean) / std",
        "resize": p.resize, "interpolation": p.interpolation, "crop_ratio": p.crop_ratio,
        "mean": list(p.mean),
        "std": list(p.std),
    }


def validate_units(units: list[ExportUnit], artifacts: list[Artifact], folder: Path, profile: ExportProfile,
                   step: StepReporter,
                   references: dict[str, list] | None = None) -> list[ArtifactReport]:
    """Gate every artifact of every unit against the unit's PyTorch outputs (computed unless given)."""
    reports = []
    for unit in units:
        reference = references[unit.role] if references else torch_outputs(unit)
        # Artifacts no runtime backend runs (e.g. a Jetson build bundle's build_engine.sh) are not validated.
        for artifact in [a for a in artifacts if a.role == unit.role and a.runnable]:
            with step(f"validate {artifact.path} ({len(unit.validation_inputs)} batches)"):
                reports.append(validate_artifact(unit, artifact, folder, reference,
                                                 profile.tolerance(artifact.precision), profile.runtime.threads,
                                                 profile.runtime.providers))
    return reports


def run_export(request: ExportRequest, step: StepReporter = silent_step) -> ExportResult:
    """Export ``request.model`` for ``request.target``; raises EvitError (nothing written) on any failure.

    The folder is built in a staging folder beside the output and moved into place only after every artifact
    passed validation. An existing output folder is replaced only when it is a previous export holding nothing
    but what that export wrote; anything else is refused, or moved aside with ``request.force``.
    """
    started = time.perf_counter()
    resolved = preflight(request)
    card, profile, precision, output = resolved.card, resolved.profile, resolved.precision, resolved.output
    check_formats(profile)
    spec = ExportSpec(resolved.input_size, resolved.batch, profile.batch.dynamic, list(profile.validation.photos),
                      profile.validation.noise)

    with writing(f"write the export {output}"), staged_dir(output, "export folder") as tmp:
        with step(f"build {card.name}"):
            original = create_model(card.name, request.weights, ema=request.ema)
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
            manifest = Manifest(
                model=card.name, task=card.task, target=profile.name, input_size=spec.input_size,
                precision=precision, batch=BatchInfo(spec.batch, spec.dynamic_batch,
                                                     profile.batch.max if spec.dynamic_batch else spec.batch),
                runtime=RuntimeInfo(profile.runtime.threads, list(profile.runtime.providers)),
                artifacts=ctx.artifacts, files=written_files(tmp),
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                weights=_weights_entry(request.weights, card, request.ema), profile=profile.to_dict(),
                versions=versions(), transforms=transforms, preprocessing=preprocessing_note(card),
                skipped=ctx.skipped,
                validation={
                    "passed": True,
                    "reference": "PyTorch fp32 (this package's modules, same weights, transformed)",
                    "artifacts": [r.to_dict() for r in reports],
                    "transform_effect": effect,
                },
            )
            write_manifest(tmp, manifest)
            aside = commit_staged(tmp, output, owns_folder, request.force, "export folder")
    return ExportResult(output, manifest, reports, time.perf_counter() - started, original, aside)


def _weights_entry(weights: str | None, card: ModelCard, ema: bool) -> dict[str, Any]:
    if weights is None:
        return {"file": None, "random": True, "note": f"random weights; the official file is {card.checkpoint}"}
    return {"file": Path(weights).name, "sha256": sha256_file(Path(weights)), "random": False, "ema": ema}


def validate_export(folder: str | Path, weights: str | None = None,
                    step: StepReporter = silent_step) -> tuple[Manifest, list[ArtifactReport]]:
    """Re-run the validation gate of an existing export folder against PyTorch (artifacts hash-checked first)."""
    folder = Path(folder)
    manifest = read_manifest(folder, verify=True)
    card = get_card(manifest.model)
    profile = profile_from_dict(manifest.profile)
    recorded = manifest.weights
    if weights is None and recorded.get("file"):
        raise EvitError(f"{folder} was exported from {recorded['file']}: pass it with --weights")
    if weights is not None and recorded.get("sha256") and sha256_file(Path(weights)) != recorded["sha256"]:
        raise EvitError(f"{weights} is not the checkpoint this export was made from ({recorded.get('file')})")
    spec = ExportSpec(manifest.input_size, manifest.batch.size, manifest.batch.dynamic,
                      list(profile.validation.photos), profile.validation.noise)
    with step(f"build {card.name}"):
        model = create_model(card.name, weights, ema=bool(recorded.get("ema")))
        apply_transforms(model, profile.transforms, manifest.precision)
        units = export_units(model, card, spec)
    return manifest, validate_units(units, manifest.artifacts, folder, profile, step)
