"""The report's ``claims``: for each pair the run can speak to, the paper's ratios (each with its device and
settings) beside the ratio measured here, which is the ratio of the two measured medians.

Ratios read as "EfficientViT is N× faster": the competitor's latency over EfficientViT's (the paper's throughput
columns: EfficientViT's throughput over the competitor's).
"""

from __future__ import annotations

from typing import Any

from ..bench.schema import Claim, Row
from .cards import NOTES, CompetitorCard, PaperRow, PaperTable, all_claims, competitors, unbuilt_claims


def paper_ratios(table: PaperTable, baseline: PaperRow | None, ours: PaperRow | None) -> list[dict[str, Any]]:
    """The paper's ratio on every device column where both models have a figure."""
    if baseline is None or ours is None:
        return []
    out = []
    for device, column in table.columns.items():
        b, o = baseline.figures.get(device), ours.figures.get(device)
        if not b or not o:
            continue
        ratio = b / o if column.metric == "latency_ms" else o / b
        out.append({"device": column.device_name, "column": device, "engine": column.engine,
                    "precision": column.precision, "batch": column.batch, "metric": column.metric,
                    "scope": column.scope, "baseline": b, "ours": o, "ratio": ratio,
                    "sources": [baseline.source, ours.source], "settings": column.settings()})
    return out


def deployment_row(rows: list[Row], model: str, batch: int) -> Row | None:
    """The row of ``model``'s deployment artifact at ``batch``: the last artifact of its export's chain (the one
    the runtime would run), else PyTorch eager."""
    mine = [r for r in rows if r.model == model and r.batch == batch]
    artifacts = [r for r in mine if r.artifact]
    return (artifacts or mine or [None])[-1]


def measured_ratios(rows: list[Row], baseline: str, ours: str) -> list[dict[str, Any]]:
    """competitor median / EfficientViT median for every backend, format, precision and batch both have."""
    def key(r: Row) -> tuple:
        return r.backend, r.format, r.precision, r.batch

    theirs = {key(r): r for r in rows if r.model == baseline and r.latency.median}
    out = []
    for r in rows:
        b = theirs.get(key(r)) if r.model == ours and r.latency.median else None
        if b is None:
            continue
        b_ms, o_ms = b.latency.median, r.latency.median
        out.append({"backend": r.backend, "format": r.format, "precision": r.precision, "batch": r.batch,
                    "baseline_median_ms": b_ms, "ours_median_ms": o_ms, "speedup": b_ms / o_ms})
    return out


def _x(value: float) -> str:
    return f"{value:.1f}×" if value >= 10 else f"{value:.2f}×"


def claim_entry(table: PaperTable, baseline: str, ours: str, rows: tuple[PaperRow | None, PaperRow | None],
                results: list[Row], machine: str, batch: int) -> Claim:
    """One pair: the paper's ratios, the headline claim it carries (if any), the ratios measured here, and the
    sentence that puts them side by side."""
    headlines = [c for c in table.claims.values() if (c.baseline, c.ours) == (baseline, ours)]
    paper = paper_ratios(table, *rows)
    measured = measured_ratios(results, baseline, ours)
    ours_row = deployment_row(results, ours, batch)
    main = next((m for m in measured if ours_row and (m["format"], m["precision"], m["batch"]) == (
        ours_row.format, ours_row.precision, ours_row.batch)), measured[0] if measured else None)
    # The headline claims as the paper prints them; else the table's figure column (else any common column).
    shown = [(f"{c.ratio:g}×", p) for c in headlines for p in paper if p["column"] == c.column]
    shown = shown or [(_x(p["ratio"]), p) for p in paper if p["column"] == table.figure_column] or [
        (_x(p["ratio"]), p) for p in paper[:1]]
    if shown:
        said = "paper: " + "; ".join(
            f"{ratio} on {p['device']} {p['settings']}" + (f" ({p['scope']})" if p["scope"] != "whole model" else "")
            for ratio, p in shown)
    else:
        said = "paper: no figure for both models on a common device"
    if main:
        said += (f" — measured here: {_x(main['speedup'])} on {machine} {main['backend']} {main['precision']} "
                 f"bs{main['batch']}")
    else:
        said += " — not measured here on a common backend"
    return Claim(baseline, ours, said,
                 headlines=[{"id": c.id, "text": c.text, "where": c.where, "ratio": c.ratio, "column": c.column,
                             "pair": c.pair, "table": table.name} for c in headlines],
                 paper=paper, measured=measured, speedup=main["speedup"] if main else None,
                 speedup_backend={k: main[k] for k in ("backend", "format", "precision", "batch")} if main else None)


def unreached_claims(table: PaperTable, measured: set[str], unmeasurable: dict[str, str]) -> list[str]:
    """The table's headline claims this run cannot speak to, each with what it would take (``unmeasurable``:
    competitors no package builds, with the reason)."""
    out = []
    for c in table.claims.values():
        missing = [m for m in (c.baseline, c.ours) if m not in measured]
        if not missing:
            continue
        blocked = [m for m in missing if m in unmeasurable]
        why = (f"{blocked[0]} cannot be measured here ({unmeasurable[blocked[0]]})" if blocked
               else f"needs {' and '.join(missing)} in the run")
        out.append(f"{c.id} ({c.ratio:g}×, {c.baseline} vs {c.ours}): {why}")
    return out


def buildable(card: CompetitorCard, probe: bool = False) -> str | None:
    """Why ``card`` cannot be built here (one line), or None when it can. Without ``probe`` only the packages'
    presence is checked (no import); with it they are imported, which also catches a package that is installed
    but broken (timm beside a torchvision built for another torch)."""
    from ..optional import EXTRAS
    from .plan import missing_package  # the no-torch check

    if not card.measurable:
        return card.unavailable
    missing = missing_package(card)
    if missing:
        note = f"; {NOTES[card.builder]}" if card.builder in NOTES else ""
        return (f"{card.name} needs pip install 'evit-deploy[{EXTRAS.get(missing, missing)}]' ({missing} is not "
                f"installed){note}")
    if probe:
        from ..errors import MissingDependency
        from .builders import builder_for

        try:
            builder_for(card)
        except MissingDependency as exc:
            return str(exc)
    return None


def claim_readiness(probe: bool = False) -> list[dict[str, Any]]:
    """Every headline claim of the paper's tables, in table order: its pair, the paper's ratio and device column,
    and ``runnable`` (both models can be built here) or the one-line ``reason`` it cannot be; then the claims no
    table holds (``table`` None, never runnable). What a paper-table run lists for all claims."""
    out = []
    for c in all_claims().values():
        reason = buildable(competitors()[c.baseline], probe)  # the EfficientViT side is this package's own
        out.append({"id": c.id, "table": c.table, "text": c.text, "baseline": c.baseline, "ours": c.ours,
                    "column": c.column, "ratio": c.ratio, "runnable": reason is None, "reason": reason})
    for u in unbuilt_claims().values():
        out.append({"id": u.id, "table": None, "text": u.text, "baseline": None, "ours": None, "column": None,
                    "ratio": None, "runnable": False, "reason": u.reason})
    return out
