"""The validation gate: run each artifact with its runtime backend and compare it with PyTorch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import runtime
from ..artifacts import Manifest, confined
from ..metrics import row_cosines
from ..tasks import Agreement, ExportUnit, task_spec
from .exporters.base import Artifact
from .profiles import Tolerance, profile_from_dict


def torch_outputs(unit: ExportUnit, module: torch.nn.Module | None = None) -> list[dict[str, np.ndarray]]:
    """PyTorch outputs of ``module`` (default: the unit's) on every validation input."""
    module = module or unit.module
    results = []
    with torch.inference_mode():
        for _, inputs in unit.validation_inputs:
            out = module(*inputs)
            out = out if isinstance(out, (tuple, list)) else (out,)
            results.append({name: t.float().numpy() for name, t in zip(unit.output_names, out)})
    return results


def _groups(runs: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Runs concatenated along the batch axis, one group per set of output shapes (inputs of several spatial sizes
    validate an export with dynamic height and width)."""
    groups: dict[tuple, list[dict[str, np.ndarray]]] = {}
    for run in runs:
        groups.setdefault(tuple(v.shape[1:] for v in run.values()), []).append(run)
    return [{name: np.concatenate([r[name] for r in members]) for name in members[0]} for members in groups.values()]


def compare(refs: list[np.ndarray], outs: list[np.ndarray]) -> dict[str, float]:
    """Error metrics of ``outs`` against ``refs`` (arrays of possibly different shapes, paired); max relative error
    is the largest |difference| over the largest |reference|; cosine is the minimum over the batch rows."""
    nonfinite = sum(int(np.size(o) - np.isfinite(o).sum()) for o in outs)
    if nonfinite:
        return {"nonfinite": nonfinite, "max_abs": float("nan"), "max_rel": float("nan"), "min_cosine": float("nan")}
    diffs = [np.abs(o.astype(np.float64) - r.astype(np.float64)) for r, o in zip(refs, outs)]
    max_abs = max(float(d.max()) for d in diffs)
    scale = max(max(float(np.abs(r).max()) for r in refs), 1e-30)
    return {
        "nonfinite": 0,
        "max_abs": max_abs,
        "mean_abs": float(sum(d.sum() for d in diffs) / sum(d.size for d in diffs)),
        "max_rel": max_abs / scale,
        "min_cosine": float(min(row_cosines(r, o).min() for r, o in zip(refs, outs))),
    }


def agreement_of(unit: ExportUnit, refs: list[dict[str, np.ndarray]], outs: list[dict[str, np.ndarray]]
                 ) -> float | None:
    """The unit's agreement metric over every group of equal shapes, weighted by the group's size."""
    return weighted_agreement(unit.agreement, refs, outs)


def weighted_agreement(agreement: Agreement | None, refs: list[dict[str, np.ndarray]],
                       outs: list[dict[str, np.ndarray]]) -> float | None:
    """``agreement`` over every group of runs of equal output shapes, weighted by the group's size."""
    if not agreement:
        return None
    pairs = list(zip(_groups(refs), _groups(outs)))
    weights = [next(iter(r.values())).size for r, _ in pairs]
    return float(sum(agreement(r, o) * w for (r, o), w in zip(pairs, weights)) / sum(weights))


@dataclass
class ArtifactReport:
    artifact: str
    role: str
    format: str
    precision: str
    samples: list[str]
    outputs: dict[str, dict[str, float]]
    agreement_name: str
    agreement: float | None
    tolerance: Tolerance
    failures: list[str]
    runtime: dict[str, Any] | None = None  # the backend that ran it and its facts (Backend.facts): the providers
    # ONNX Runtime really used, the precision OpenVINO compiled for

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact, "role": self.role, "format": self.format, "precision": self.precision,
            "passed": self.passed, "samples": self.samples, "outputs": self.outputs,
            "agreement": {"metric": self.agreement_name, "value": self.agreement},
            "tolerance": vars(self.tolerance), "failures": self.failures, "runtime": self.runtime,
        }


def gate(outputs: dict[str, dict[str, float]], agreement: float | None, tol: Tolerance) -> list[str]:
    """Reasons an artifact fails its tolerance (empty list = pass)."""
    failures = []
    for name, m in outputs.items():
        if m["nonfinite"]:
            failures.append(f"{name}: {m['nonfinite']} non-finite values")
            continue
        if m["max_rel"] > tol.max_rel:
            failures.append(f"{name}: max relative error {m['max_rel']:.3g} > {tol.max_rel:g}")
        if m["min_cosine"] < tol.min_cosine:
            failures.append(f"{name}: cosine similarity {m['min_cosine']:.6f} < {tol.min_cosine:g}")
    if agreement is not None and agreement < tol.min_agreement:
        failures.append(f"agreement {agreement:.4f} < {tol.min_agreement:g}")
    return failures


@dataclass(frozen=True)
class Judged:
    """What an artifact's outputs are judged as: its path, role, format, precision and the samples' labels."""

    artifact: str
    role: str
    format: str
    precision: str
    samples: list[str]


def judge(what: Judged, names: tuple[str, ...] | list[str], reference: list[dict[str, np.ndarray]],
          runs: list[dict[str, np.ndarray]], agreement_name: str, agreement: Agreement | None, tol: Tolerance,
          runtime_facts: dict[str, Any] | None) -> ArtifactReport:
    """Gate an artifact's outputs (``runs``, one dict per sample) against PyTorch's (``reference``): the error
    metrics of each output in ``names``, the agreement metric (when every value is finite) and the tolerance."""
    outputs = {name: compare([r[name] for r in reference], [o[name] for o in runs]) for name in names}
    finite = all(m["nonfinite"] == 0 for m in outputs.values())
    agreed = weighted_agreement(agreement, reference, runs) if finite else None
    return ArtifactReport(what.artifact, what.role, what.format, what.precision, what.samples, outputs,
                          agreement_name, agreed, tol, gate(outputs, agreed, tol), runtime_facts)


def validate_artifact(
    unit: ExportUnit, artifact: Artifact, folder: Path, reference: list[dict[str, np.ndarray]], tol: Tolerance,
    threads: int = 0, providers: list[str] | None = None,
) -> ArtifactReport:
    """Run ``artifact`` on the unit's validation inputs and gate it against the PyTorch ``reference``."""
    backend = runtime.open_file(confined(folder, artifact.path), threads, providers)
    runs = []
    for _, inputs in unit.validation_inputs:
        feeds = {name: t.numpy() for name, t in zip(unit.input_names, inputs)}
        result = backend.run(feeds)
        runs.append({name: np.asarray(result[name], dtype=np.float32) for name in unit.output_names})
    what = Judged(artifact.path, unit.role, artifact.format, artifact.precision,
                  [label for label, _ in unit.validation_inputs])
    return judge(what, unit.output_names, reference, runs, unit.agreement_name, unit.agreement, tol,
                 {"backend": backend.name, **backend.facts})


def judge_outputs(manifest: Manifest, what: Judged, reference: list[dict[str, np.ndarray]],
                  runs: list[dict[str, np.ndarray]], runtime_facts: dict[str, Any] | None = None) -> ArtifactReport:
    """Gate outputs an artifact of an export gave elsewhere (a device) against PyTorch's on the same inputs, as
    ``validate`` gates it: every output the reference has, the export's tolerance for ``what.precision`` and the
    agreement metric of the graph in the task spec."""
    graph = task_spec(manifest.task).graph(what.role)
    tol = profile_from_dict(manifest.profile).tolerance(what.precision)
    return judge(what, list(reference[0]), reference, runs, graph.agreement_name, graph.agreement, tol,
                 runtime_facts)


def transform_effect(unit: ExportUnit, original: ExportUnit, reference: list[dict[str, np.ndarray]]) -> dict:
    """How far the transformed PyTorch model is from the untransformed one (reported, not gated)."""
    ref = torch_outputs(original)
    outputs = {name: compare([r[name] for r in ref], [o[name] for o in reference]) for name in unit.output_names}
    agreement = agreement_of(unit, ref, reference)
    return {"role": unit.role, "outputs": outputs, "agreement": {"metric": unit.agreement_name, "value": agreement}}
