"""The export pipeline: build → transform → export each unit in each format → validate → write atomically.

Everything is written into a temporary folder beside the output and moved into place only when every
artifact passed validation; on any failure nothing is left behind and an existing export is untouched.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import (
    EXPORT,
    BatchInfo,
    Manifest,
    RuntimeInfo,
    read_manifest,
    seal,
    write_manifest,
    written_files,
)
from ..errors import EvitError
from ..files import STAGING_MARKER, commit_staged, sha256_file, staged_dir, writing
from ..host import library_versions
from ..optional import require
from ..signed_exports import sign_export
from ..tasks import ExportSpec, ExportUnit, all_specs, task_spec
from ..zoo import get_card
from .exporters import EXPORTERS, Artifact, ExportContext
from .exporters.base import Int8Options
from .profiles import ExportProfile, profile_from_dict
from .recipes import calibrates, recipes_for
from .request import ExportRequest, preflight
from .steps import StepReporter, silent_step
from .subjects import ExportSubject, zoo_subject
from .transforms import apply_transforms, changes_numerics
from .validate import ArtifactReport, torch_outputs, transform_effect, validate_artifact


class ValidationFailed(EvitError):
    """An artifact was outside its profile's tolerance or produced non-finite values."""


@dataclass
class ReferenceSample:
    """One validation input of a graph (by input name, float32) and PyTorch's outputs on it (by output name)."""

    label: str
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


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


def check_capabilities(profile: ExportProfile, precision: str, dynamic_batch: bool, task: str) -> None:
    """Check once, before any work, that every format of ``profile`` can be exported as asked (each exporter's
    declared :class:`Capabilities`: precision, batch kind, layout, the format it is made from)."""
    for i, fmt in enumerate(profile.formats):
        exporter = EXPORTERS.get(fmt)
        if exporter is None:
            raise EvitError(f"target {profile.name} cannot be exported: no exporter is registered for format '{fmt}' "
                            f"(available formats: {', '.join(EXPORTERS)})")
        caps = exporter.capabilities
        problem = None
        if precision not in caps.precisions:
            problem = f"it produces {', '.join(caps.precisions)}, not {precision}"
        elif ("dynamic" if dynamic_batch else "static") not in caps.batch:
            problem = f"it writes {' or '.join(caps.batch)} batch shapes only (set batch.dynamic accordingly)"
        elif profile.dynamic_hw and "dynamic" not in caps.spatial:
            problem = "it writes a fixed input height and width (set dynamic_hw: false)"
        elif profile.layout not in caps.layouts:
            problem = f"it writes {', '.join(caps.layouts)} graphs, not {profile.layout}"
        elif caps.consumes and caps.consumes not in profile.formats[:i]:
            problem = f"it is made from the {caps.consumes} artifact: list '{caps.consumes}' before '{fmt}' in formats"
        else:
            problem = exporter.settings_problem(profile, precision)
        if problem:
            raise EvitError(f"target {profile.name}: format '{fmt}' cannot be exported: {problem}")
    if profile.dynamic_hw and not task_spec(task).dynamic_hw:
        raise EvitError(f"target {profile.name}: dynamic_hw applies to "
                        f"{' or '.join(s.title for s in all_specs().values() if s.dynamic_hw)} models, not {task}")
    for fmt in profile.formats:  # the recipes' optional libraries, before any work
        for recipe in recipes_for(precision, fmt, profile):
            for module in recipe.requires:
                require(module, f"{precision} for {fmt} ({recipe.name})")


def route(fmt: str, unit: ExportUnit) -> str:
    """The format that exports ``unit`` when the profile asks for ``fmt`` (an exporter's declared fallback)."""
    caps = EXPORTERS[fmt].capabilities
    return fmt if unit.image_input or not caps.image_graphs_only else (caps.fallback or fmt)


def export_unit(unit: ExportUnit, ctx: ExportContext) -> None:
    """Export one graph in each of the profile's formats (routed where an exporter does not take its role)."""
    for fmt in ctx.profile.formats:
        target = route(fmt, unit)
        if target != fmt and (target in ctx.profile.formats or ctx.previous(unit.role, target)):
            continue  # the fallback format is exported in its own turn
        artifact = EXPORTERS[target]().export(unit, ctx)
        if artifact is None:
            continue
        if target != fmt:
            artifact.notes.append(f"the {unit.role} stays {target}: the {fmt} exporter does not convert it; it runs "
                                  f"beside the {fmt} artifacts")
        ctx.artifacts.append(artifact)


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


Gate = Callable[[Path, Manifest], None]  # raises EvitError to refuse a finished (staged) export


def run_export(request: ExportRequest, step: StepReporter = silent_step, gate: Gate | None = None,
               subject: ExportSubject | None = None) -> ExportResult:
    """Export ``request.model`` for ``request.target``; raises EvitError (nothing written) on any failure.

    ``subject``: what to export when it is not the zoo model ``request.model`` (e.g. a competitor of the paper,
    :mod:`evit_deploy.compare`); it goes through the same profile, exporters, validation gate and manifest.
    ``gate`` sees the finished export in its staging folder (manifest written) before it is moved into place,
    and refuses it by raising (e.g. the accuracy gate of ``export --eval DIR --max-drop X``).

    The folder is built in a staging folder beside the output and moved into place only after every artifact
    passed validation. An existing output folder is replaced only when it is a previous export holding nothing
    but what that export wrote; anything else is refused, or moved aside with ``request.force``.
    """
    started = time.perf_counter()
    resolved = preflight(request, subject)
    subject, profile, precision, output = resolved.subject, resolved.profile, resolved.precision, resolved.output
    check_capabilities(profile, precision, profile.batch.dynamic, subject.task)
    spec = ExportSpec(resolved.input_size, resolved.batch, profile.batch.dynamic, list(profile.validation.photos),
                      profile.validation.noise, profile.dynamic_hw)

    with writing(f"write the export {output}"), staged_dir(output, "export folder") as tmp:
        with step(f"build {subject.name}"):
            original = subject.build(spec.input_size)
        with step("apply transforms: " + (", ".join(profile.transforms) or "none")):
            model = copy.deepcopy(original)
            transforms = apply_transforms(model, profile.transforms, precision)
            units = subject.units(model, spec)
        ctx = ExportContext(tmp, subject, profile, precision, spec, step=step,
                            calib=Path(request.calib) if request.calib else None,
                            int8=Int8Options(request.sensitivity, request.max_drop, request.accuracy_drop),
                            auto_precision=bool(resolved.precision_note))
        if calibrates(profile, precision, profile.formats):  # a bad --calib folder fails before any format is written
            with step(f"read calibration images ({ctx.calib or 'bundled sample photos'})"):
                ctx.calibration()
        for unit in units:
            export_unit(unit, ctx)
        if resolved.precision_note:
            for artifact in ctx.artifacts:
                artifact.notes.append(resolved.precision_note)
        with step("PyTorch reference outputs"):
            references = {u.role: torch_outputs(u) for u in units}
        reports = validate_units(units, ctx.artifacts, tmp, profile, step, references)
        effect = None
        if changes_numerics(profile.transforms):
            with step("measure the transforms' effect against the untransformed model"):
                effect = [transform_effect(u, o, references[u.role])
                          for u, o in zip(units, subject.units(original, spec))]
        failed = [r for r in reports if not r.passed]
        if failed:
            first = failed[0]
            raise ValidationFailed(
                f"validation failed for {first.artifact} ({first.precision}): {'; '.join(first.failures)}; "
                "nothing was written"
            )
        with step(f"write {output}"):
            for artifact in ctx.artifacts:
                seal(tmp, artifact)
            manifest = Manifest(
                model=subject.name, task=subject.task, target=profile.name, input_size=spec.input_size,
                precision=precision, batch=BatchInfo(spec.batch, spec.dynamic_batch,
                                                     profile.batch.max if spec.dynamic_batch else spec.batch),
                runtime=RuntimeInfo(profile.runtime.threads, list(profile.runtime.providers)),
                artifacts=ctx.artifacts, files=written_files(tmp),
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                weights=subject.weights(), profile=profile.to_dict(),
                versions=library_versions(), transforms=transforms, preprocessing=subject.preprocess.note(),
                skipped=ctx.skipped, quantization=ctx.quantization,
                validation={
                    "passed": True,
                    "reference": "PyTorch fp32 (this package's modules, same weights, transformed)",
                    "artifacts": [r.to_dict() for r in reports],
                    "transform_effect": effect,
                },
            )
            write_manifest(tmp, manifest)
        if gate is not None:
            gate(tmp, manifest)
        if request.sign is not None:
            with step(f"sign every file with {request.sign}"):
                (tmp / STAGING_MARKER).unlink()  # the signature covers exactly the files that are moved into place
                sign_export(tmp, request.sign, password=request.sign_password)
        with step(f"move into place: {output}"):
            aside = commit_staged(tmp, output, EXPORT, request.force)
    return ExportResult(output, manifest, reports, time.perf_counter() - started, original, aside)


def validate_export(folder: str | Path, weights: str | None = None, step: StepReporter = silent_step,
                    subject: ExportSubject | None = None) -> tuple[Manifest, list[ArtifactReport]]:
    """Re-run the validation gate of an existing export folder against PyTorch (artifacts hash-checked first).
    ``subject``: what was exported when it is not the zoo model the manifest names (a competitor)."""
    folder = Path(folder)
    manifest = read_manifest(folder, verify=True)
    profile, units = reference_units(folder, manifest, weights, step, subject)
    return manifest, validate_units(units, manifest.artifacts, folder, profile, step)


def reference_samples(folder: Path, manifest: Manifest, role: str, weights: str | None = None,
                      step: StepReporter = silent_step) -> list[ReferenceSample]:
    """The validation inputs of graph ``role`` of an export and the PyTorch outputs on them, exactly as its
    validation made them (same weights, transforms and pre-processing): golden inputs for a device."""
    _, units = reference_units(folder, manifest, weights, step)
    unit = next((u for u in units if u.role == role), None)
    if unit is None:
        raise EvitError(f"the {manifest.model} export has no '{role}' graph to make golden inputs for")
    with step(f"PyTorch reference outputs of the {role} on {len(unit.validation_inputs)} golden inputs"):
        references = torch_outputs(unit)
    return [ReferenceSample(label, {name: t.numpy().astype(np.float32) for name, t in zip(unit.input_names, inputs)},
                            ref) for (label, inputs), ref in zip(unit.validation_inputs, references)]


def reference_units(folder: Path, manifest: Manifest, weights: str | None = None, step: StepReporter = silent_step,
                    subject: ExportSubject | None = None) -> tuple[ExportProfile, list[ExportUnit]]:
    """The export's profile and units as its validation built them (same weights, transforms, validation inputs),
    for re-validating it or for golden inputs and PyTorch reference outputs (``device-bundle``)."""
    subject = subject or zoo_subject(get_card(manifest.model), weights, bool(manifest.weights.get("ema")))
    profile = profile_from_dict(manifest.profile)
    recorded = manifest.weights
    if weights is None and recorded.get("file"):
        raise EvitError(f"{folder} was exported from {recorded['file']}: pass it with --weights")
    if weights is not None and recorded.get("sha256") and sha256_file(Path(weights)) != recorded["sha256"]:
        raise EvitError(f"{weights} is not the checkpoint this export was made from ({recorded.get('file')})")
    spec = ExportSpec(manifest.input_size, manifest.batch.size, manifest.batch.dynamic,
                      list(profile.validation.photos), profile.validation.noise, profile.dynamic_hw)
    with step(f"build {subject.name}"):
        model = subject.build(spec.input_size)
        apply_transforms(model, profile.transforms, manifest.precision)
        units = subject.units(model, spec)
    return profile, units
