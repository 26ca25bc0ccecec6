"""Export pipeline: profiles, transforms, exporters, validation.

The names below are the package's public API: every other package (the CLI, bench, compare, device) imports
these, never the modules behind them. They are imported on first use, so ``import evit_deploy.export`` stays cheap.

- the pipeline: :class:`ExportRequest` → :func:`preflight` (checks before any work) → :func:`run_export`
  (:class:`ExportResult`; :class:`ValidationFailed`); :func:`validate_export` re-runs the gate on a folder;
- golden inputs and the gate, for artifacts run elsewhere (a device): :func:`reference_samples` (the validation
  inputs of a graph and PyTorch's outputs on them), :func:`judge_outputs` (an :class:`ArtifactReport` for outputs
  the artifact gave, as ``validate`` gates them; :class:`Judged` names what was run);
- targets: :class:`ExportProfile`, :func:`load_profile`, :func:`list_profiles`; what is exported:
  :class:`ExportSubject`, :func:`zoo_subject`; :data:`EXPORTERS` (format → exporter);
- progress: :data:`StepReporter`, :func:`silent_step`;
- TensorRT engines: :func:`build_folder` (build/rebuild an export's engines), :func:`folder_plans` (an export's
  engine plans), :func:`build_script` / :data:`BUILD_SCRIPT` / :data:`JETPACK` (the Jetson build script).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:  # the same names, for readers and type checkers
    from .exporters import EXPORTERS
    from .pipeline import (
        ExportResult,
        ReferenceSample,
        ValidationFailed,
        reference_samples,
        run_export,
        validate_export,
    )
    from .profiles import ExportProfile, list_profiles, load_profile
    from .request import ExportRequest, preflight
    from .steps import StepReporter, silent_step
    from .subjects import ExportSubject, OnnxNeeds, zoo_subject
    from .trt.bundle import BUILD_SCRIPT, JETPACK, build_script
    from .trt.rebuild import build_folder, folder_plans
    from .validate import ArtifactReport, Judged, judge_outputs

_API = {
    "EXPORTERS": "evit_deploy.export.exporters",
    **dict.fromkeys(("ExportResult", "ReferenceSample", "ValidationFailed", "reference_samples", "run_export",
                     "validate_export"), "evit_deploy.export.pipeline"),
    **dict.fromkeys(("ExportProfile", "list_profiles", "load_profile"), "evit_deploy.export.profiles"),
    **dict.fromkeys(("ExportRequest", "preflight"), "evit_deploy.export.request"),
    **dict.fromkeys(("StepReporter", "silent_step"), "evit_deploy.export.steps"),
    **dict.fromkeys(("ExportSubject", "OnnxNeeds", "zoo_subject"), "evit_deploy.export.subjects"),
    **dict.fromkeys(("BUILD_SCRIPT", "JETPACK", "build_script"), "evit_deploy.export.trt.bundle"),
    **dict.fromkeys(("build_folder", "folder_plans"), "evit_deploy.export.trt.rebuild"),
    **dict.fromkeys(("ArtifactReport", "Judged", "judge_outputs"), "evit_deploy.export.validate"),
}

__all__ = [
    "BUILD_SCRIPT", "EXPORTERS", "JETPACK", "ArtifactReport", "ExportProfile", "ExportRequest", "ExportResult",
    "ExportSubject", "Judged", "OnnxNeeds", "ReferenceSample", "StepReporter", "ValidationFailed", "build_folder",
    "build_script", "folder_plans", "judge_outputs", "list_profiles", "load_profile", "preflight", "reference_samples",
    "run_export", "silent_step", "validate_export", "zoo_subject",
]

__getattr__ = lazy_names("evit_deploy.export", _API, globals())
