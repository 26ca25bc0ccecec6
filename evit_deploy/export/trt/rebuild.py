"""``evit-deploy build-engine``: build (or rebuild) the engines of an export folder or Jetson bundle on this host
from its ``trt_build.json`` (or plans derived from ``export.json``) and add them to ``export.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...artifacts import ArtifactEntry, Manifest, TensorSpec, read_manifest, write_manifest
from ...errors import EvitError
from ...files import sha256_file
from ...runtime.sidecar import sidecar_path
from ...runtime.trt_common import import_tensorrt
from ..profiles import profile_from_dict
from ..steps import StepReporter, silent_step
from .builder import build_engine, engine_notes
from .plan import EnginePlan, batch_range, make_plan, read_plans


def folder_plans(folder: Path, manifest: Manifest) -> dict[str, EnginePlan]:
    """Build plans of an export folder: its trt_build.json, else one per ONNX artifact of the manifest."""
    plans = read_plans(folder)
    if plans:
        return plans
    profile = profile_from_dict(manifest.profile)
    batch = batch_range(profile.batch, manifest.batch.size, manifest.batch.dynamic)
    for entry in manifest.artifacts:
        if entry.format != "onnx":
            continue
        if entry.precision not in ("fp32", "fp16"):
            raise EvitError(f"{entry.path} is {entry.precision}: TensorRT builds engines from fp32 or mixed "
                            "fp16 ONNX (export with a TensorRT target for int8)")
        plans[entry.role] = make_plan(folder / entry.path, entry.role, entry.precision,
                                      [s.to_dict() for s in entry.inputs], profile.trt, batch)
    if not plans:
        raise EvitError(f"{folder} has no prepared ONNX to build engines from")
    return plans


def build_folder(folder: str | Path, role: str | None = None, timing_cache: str | Path | None = None,
                 step: StepReporter = silent_step) -> list[dict[str, Any]]:
    """Build the engines of an export folder / Jetson bundle here; adds them to export.json (atomically).

    Returns the sidecars. Raises a one-line EvitError without TensorRT.
    """
    folder = Path(folder)
    manifest = read_manifest(folder, verify=True)  # the prepared ONNX must be the one the export validated
    plans = folder_plans(folder, manifest)
    if role is not None:
        if role not in plans:
            raise EvitError(f"{folder} has no engine plan for role '{role}' (roles: {', '.join(plans)})")
        plans = {role: plans[role]}
    import_tensorrt("evit-deploy build-engine")
    sidecars = []
    for plan in plans.values():
        sidecar = build_engine(folder, plan, Path(timing_cache) if timing_cache else None, step)
        sidecars.append(sidecar)
        register_engine(folder, manifest, plan, sidecar, own_timing_cache=timing_cache is None)
    return sidecars


def register_engine(folder: Path, manifest: Manifest, plan: EnginePlan, sidecar: dict[str, Any],
                    own_timing_cache: bool) -> None:
    """Add (or replace) the built engine of ``plan`` in ``folder``'s export.json, with the files it wrote."""
    spec = {s["name"]: TensorSpec(s["name"], tuple(s["shape"]), s["dtype"]) for s in sidecar["inputs"]}
    outs = [TensorSpec(s["name"], tuple(s["shape"]), s["dtype"]) for s in sidecar["outputs"]]
    artifact = ArtifactEntry("trt-engine", plan.role, plan.engine, plan.precision, "NCHW", list(spec.values()), outs,
                             sha256=sha256_file(folder / plan.engine),
                             notes=[*engine_notes(sidecar), "built by evit-deploy build-engine; not yet validated "
                                    "against PyTorch: run evit-deploy validate"])
    manifest.artifacts = [a for a in manifest.artifacts if not (a.format == "trt-engine" and a.role == plan.role)]
    manifest.artifacts.append(artifact)
    new_files = [plan.engine, sidecar_path(Path(plan.engine)).as_posix()]
    if sidecar.get("timing_cache") and own_timing_cache:
        new_files.append(sidecar["timing_cache"])
    manifest.files = sorted(set(manifest.files) | set(new_files))
    write_manifest(folder, manifest)
