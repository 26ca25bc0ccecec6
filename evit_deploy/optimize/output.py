"""What a search leaves: the report (the typed report of every benchmark: every trial's settings, median and spread,
native ms, accuracy, size and export time; the Pareto front of latency against accuracy drop as a plot) and the
winner as an ordinary export folder whose ``export.json`` records the runtime settings chosen and the search that
chose them, so ``predict``, ``serve``, ``triton`` and ``bench`` run it that way without flags.

The output folder is staged and moved into place whole (never half-written); a folder that is not a previous
search output of ours is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..artifacts import read_manifest, write_manifest
from ..bench.harness import new_report
from ..bench.render import render
from ..bench.schema import Report
from ..files import Owner, atomic_write, commit_staged, staged_dir, writing
from .search import OptimizeSettings, SearchResult, Trial

RECORD = "optimize.json"  # in the output folder: what the search wrote (marks the folder as ours)
WINNER = "winner"


def _row(trial: Trial, outcome_of: dict[str, Any]) -> Any:
    row = trial.row
    outcome = outcome_of.get(trial.candidate.variant.label)
    row.model = trial.candidate.label
    row.extra.update(stage=trial.stage + (" (cached)" if trial.cached else ""),
                     drop=None if outcome is None or outcome.drop is None else round(outcome.drop, 3),
                     size_mb=None if outcome is None else round(outcome.size_bytes / 1e6, 2),
                     export_s=None if outcome is None else round(outcome.seconds, 1))
    return row


def pareto(points: list[tuple[float, float]]) -> set[int]:
    """Indices of the points no other point beats on both latency and accuracy drop (lower is better for both)."""
    front = set()
    for i, (ms, drop) in enumerate(points):
        if not any((m <= ms and d <= drop) and (m < ms or d < drop) for j, (m, d) in enumerate(points) if j != i):
            front.add(i)
    return front


def build_report(result: SearchResult, settings: OptimizeSettings, accuracy_source: str) -> Report:
    report = new_report("optimize", f"{settings.model}: the fastest export for this machine within "
                                    f"{settings.max_drop:g} accuracy points", _bench_settings(settings),
                        model=settings.model)
    outcome_of = {o.variant.label: o for o in result.exports}
    finals = ([result.reference] if result.reference else []) + result.finals
    report.rows = [_row(t, outcome_of) for t in finals + result.trials]
    if result.reference:
        result.reference.row.extra["stage"] = "final (reference: the default cpu-openvino export)"
    report.columns = {"stage": "stage", "drop": "drop (points)", "size_mb": "size MB", "export_s": "export s"}
    report.skipped = result.skipped
    trials = [t for t in result.trials + result.finals if t.ms is not None]
    points = [(t.ms, outcome_of[t.candidate.variant.label].drop or 0.0) for t in trials]
    front = pareto(points)
    report.sections["pareto"] = [
        {"label": t.candidate.label, "ms": ms, "drop": drop, "stage": t.stage, "front": i in front,
         "winner": result.winner is not None and t is result.winner}
        for i, (t, (ms, drop)) in enumerate(zip(trials, points))]
    if result.reference and result.reference.ms:
        report.sections["pareto_reference"] = {"label": "default cpu-openvino export", "ms": result.reference.ms}
    report.sections["tables"] = [{
        "title": "Exports made (each validated by its gate; accuracy against PyTorch)",
        "columns": ["export", "precision", "batch axis", "export s", "size MB", "drop (points)", "within --max-drop",
                    "note"],
        "rows": [[o.variant.label, o.variant.precision, "static" if o.variant.static else "dynamic",
                  round(o.seconds, 1), round(o.size_bytes / 1e6, 2) if o.size_bytes else None,
                  None if o.drop is None else round(o.drop, 3),
                  "-" if o.drop is None else ("yes" if o.drop <= settings.max_drop else "**no**"),
                  o.error or ("cached" if o.cached else "")] for o in result.exports],
        "note": f"Accuracy: {accuracy_source}."}]
    report.sections["search"] = search_record(result, settings, accuracy_source)
    report.notes = _notes(result, settings)
    report.machine.finish()
    return report


def _bench_settings(settings: OptimizeSettings) -> Any:
    from ..bench.harness import BenchSettings

    return BenchSettings([settings.batch], ["eager"], settings.protocol)


def _notes(result: SearchResult, settings: OptimizeSettings) -> list[str]:
    notes = [f"Searched {', '.join(result.spaces)} ({len(result.exports)} exports, {len(result.trials)} screen "
             f"trials, {len(result.finals)} finalists) in {result.seconds:.0f} s; the spaces are "
             + ", ".join(f"`{Path(p).name}`" for p in result.spaces.values()) + " (export_profiles/search/)."]
    w, ref = result.winner, result.reference
    if w is not None:
        notes.append(f"Winner: {w.candidate.label}, median {w.ms:.3f} ms at batch {settings.batch}"
                     + (f", native tool {w.row.native.latency.median:.3f} ms" if w.row.native and w.row.native.latency
                        else ""))
        if ref is not None and ref.ms:
            notes.append(f"Against the default cpu-openvino export in the same alternation: {ref.ms / w.ms:.2f}x "
                         "faster (our medians)" + (
                             f", {ref.row.native.latency.median / w.row.native.latency.median:.2f}x by the native tools"
                             if _both_native(w, ref) else "") + ".")
    notes.append("Screen rounds use short blocks (each candidate in its own worker, in groups): they rank; only the "
                 "finalists' figures come from the full protocol (alternating blocks until every 95% CI settles, "
                 "the native tool beside each).")
    return notes


def _both_native(a: Trial, b: Trial) -> bool:
    return all(t.row.native and t.row.native.latency and t.row.native.latency.median for t in (a, b))


def search_record(result: SearchResult, settings: OptimizeSettings, accuracy_source: str) -> dict[str, Any]:
    """What the winner's export.json records of the search that chose it."""
    w, ref = result.winner, result.reference
    return {
        "objective": settings.objective, "batch": settings.batch, "max_drop": settings.max_drop,
        "accuracy": accuracy_source, "spaces": {k: Path(v).name for k, v in result.spaces.items()},
        "exports": len(result.exports), "screen_trials": len(result.trials), "finalists": len(result.finals),
        "winner": w.candidate.label if w else None, "winner_ms": w.ms if w else None,
        "reference": "default cpu-openvino export", "reference_ms": ref.ms if ref else None,
        "seconds": round(result.seconds, 1),
    }


def write_output(result: SearchResult, settings: OptimizeSettings, report: Report, out: Path,
                 force: bool = False) -> Path:
    """The staged output folder moved into place: report files, the winner export and the search record."""
    with writing(f"write the search output {out}"), staged_dir(out, "optimize output") as tmp:
        for name, text in render(report).items():
            atomic_write(tmp / name, text)
        if result.winner is not None:
            winner_export(result, settings, report, tmp / WINNER)
        atomic_write(tmp / RECORD, json.dumps({"generator": "evit-deploy optimize",
                                               "files": sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*")
                                                               if p.is_file()),
                                               "search": report.sections["search"]}, indent=2) + "\n")
        commit_staged(tmp, out, OPTIMIZE_OUTPUT, force)
    return out


def winner_export(result: SearchResult, settings: OptimizeSettings, report: Report, dest: Path) -> None:
    """A copy of the winning export whose export.json runs it as the search chose: threads and runtime options."""
    w = result.winner
    source = next(o.folder for o in result.exports if o.variant.label == w.candidate.variant.label)
    shutil.copytree(source, dest)
    manifest = read_manifest(dest, verify=True)
    manifest.runtime.threads = w.candidate.threads
    if w.candidate.options:
        manifest.runtime.options = {w.row.backend: dict(w.candidate.options)}
    manifest.search = report.sections["search"]
    write_manifest(dest, manifest)


def _declared(doc: Any, name: str) -> list[str] | None:
    """The files an optimize record (host search or device search) lists, or None when ``doc`` is not one."""
    if not isinstance(doc, dict) or doc.get("generator") != "evit-deploy optimize":
        return None
    files = doc.get("files")
    return files if isinstance(files, list) and all(isinstance(f, str) for f in files) else None


OPTIMIZE_OUTPUT = Owner("optimize output", RECORD, _declared)  # the ownership rule of evit_deploy.files
