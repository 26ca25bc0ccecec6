"""A comparison run: export every model of a :class:`~.plan.Plan` for the target (validated against its own
PyTorch module by the same gate), measure them all interleaved in one run, count their params and MACs, and
assemble the report (results, models, claims, what was not measured and why, the time budget).

A competitor that cannot be built (missing package) or exported (a step fails) is reported in one line and the
run goes on with the others; so are models that the time budget leaves out.
"""

from __future__ import annotations

import contextlib
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..artifacts import FORMATS
from ..bench.harness import BenchItem, BenchSettings, measure_items, new_report, open_item
from ..bench.protocol import Progress, min_rounds_s, untimed_s
from ..bench.schema import Report, Row
from ..errors import EvitError, one_line
from ..export import (
    ExportProfile,
    ExportRequest,
    ExportResult,
    ExportSubject,
    StepReporter,
    load_profile,
    run_export,
    silent_step,
    zoo_subject,
)
from ..tasks import task_spec
from ..zoo import RandomWeightsWarning
from ..zoo.cards import get_card
from .cards import competitors
from .claims import claim_entry, unreached_claims
from .counts import Count, check_counts, count_competitor, count_efficientvit, mismatch_text
from .plan import EFFICIENTVIT, Entry, Plan, pairs
from .subjects import competitor_subject

Warn = Callable[[str], None]


@dataclass
class CompareSettings:
    """How a comparison runs: the target profile, MODEL's checkpoint (competitors have random weights), where the
    exports go, and a time budget in seconds (None: no limit)."""

    target: str = "cpu-ort"
    weights: str | None = None
    ema: bool = False
    exports: Path = Path("exports")
    budget_s: float | None = None


class StepTracker:
    """A StepReporter that passes each step on and remembers the innermost one that failed."""

    def __init__(self, inner: StepReporter) -> None:
        self.inner = inner
        self.failed: str | None = None

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        try:
            with self.inner(name):
                yield
        except BaseException:
            self.failed = self.failed or name
            raise


@dataclass
class Budget:
    """Seconds a run may take. Each model's cost is estimated from its MACs, at the seconds per GMAC of the
    fastest of a few PyTorch calls timed on the first model exported, times the calls its export, validation and
    timing make."""

    limit_s: float | None
    started: float = field(default_factory=time.perf_counter)
    rate_s_per_gmac: float | None = None
    calibrated_on: str | None = None
    estimates_s: dict[str, float] = field(default_factory=dict)
    reserved_s: float = 0.0  # the kept models' worker starts, warm-ups and overhead calls: not for the timed rounds
    min_rounds_s: float = 0.0  # the kept models' share of the rounds every run makes, however little is left
    skipped: list[str] = field(default_factory=list)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def fits(self, cost_s: float) -> bool:
        """Whether a model estimated at ``cost_s`` fits beside what was spent and what the kept models need."""
        return self.limit_s is None or self.elapsed() + self.reserved_s + self.min_rounds_s + cost_s <= self.limit_s

    def keep(self, costs: tuple[float, float]) -> None:
        """Reserve a kept model's (untimed, minimum rounds) seconds."""
        self.reserved_s += costs[0]
        self.min_rounds_s += costs[1]

    def timed_s(self) -> float:
        """What the timed rounds may take: the budget less what was spent and what is reserved."""
        return self.limit_s - self.elapsed() - self.reserved_s

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": self.limit_s, "spent_s": round(self.elapsed(), 1), "rate_s_per_gmac": self.rate_s_per_gmac,
                "calibrated_on": self.calibrated_on, "estimates_s": {k: round(v, 1) for k, v in
                                                                     self.estimates_s.items()},
                "reserved_s": round(self.reserved_s, 1), "min_rounds_s": round(self.min_rounds_s, 1),
                "skipped": self.skipped,
                "method": "a call's seconds = GMACs at the measured size x seconds per GMAC of the fastest of a "
                          "few PyTorch calls (timed on the first model); a model's estimate = its export and "
                          "validation calls, and per row its worker's start, warm-up, overhead pairs and the two "
                          "rounds every run makes; the timed rounds of every model share what is left of the budget "
                          "after the reserved part"}


def _export_calls(profile: ExportProfile) -> int:
    """Single-image forward passes one model's export and validation make."""
    formats = sum(1 for f in profile.formats if FORMATS[f].runnable)
    samples = len(profile.validation.photos) + profile.validation.noise
    return samples * (1 + formats) + 2 * formats


def _measure_costs(call_s: float, profile: ExportProfile, bench: BenchSettings) -> tuple[float, float]:
    """(seconds outside the timed rounds, seconds of the rounds every run makes) of one model's rows, for a
    single-image call of ``call_s`` seconds: each baseline and runnable artifact at each batch."""
    per_batch = len(bench.baselines) + sum(1 for f in profile.formats if FORMATS[f].runnable)
    calls = [call_s * b for b in bench.batches for _ in range(per_batch)]
    return (sum(untimed_s(c, bench.protocol) for c in calls), sum(min_rounds_s(c, bench.protocol) for c in calls))


CALIBRATION_CALLS = 5  # at least this many timed calls ...
CALIBRATION_S = 0.3  # ... over at least this long (at most 4x as many calls): the fastest one calibrates


def _seconds_per_gmac(subject: ExportSubject, result: ExportResult, gmacs: float) -> float:
    """Seconds per GMAC of the fastest of a few PyTorch calls: one busy moment on the machine (another process
    starting) must not make every later model look too slow for the budget."""
    graph = subject.bench_graph(result.model)
    x = torch.randn(1, 3, *result.manifest.input_size)
    times: list[float] = []
    with torch.inference_mode():
        graph(x)  # warm
        began = time.perf_counter()
        while len(times) < CALIBRATION_CALLS or (time.perf_counter() - began < CALIBRATION_S
                                                 and len(times) < 4 * CALIBRATION_CALLS):
            start = time.perf_counter()
            graph(x)
            times.append(time.perf_counter() - start)
    return min(times) / max(gmacs, 1e-3)


def _subject(entry: Entry, plan: Plan, settings: CompareSettings) -> ExportSubject:
    if entry.role == EFFICIENTVIT:
        mine = entry.name == plan.subject
        return zoo_subject(get_card(entry.name), settings.weights if mine else None, settings.ema and mine)
    return competitor_subject(entry.card, entry.table)


def _count(entry: Entry) -> tuple[Count | None, Count | None, str]:
    """(count at the paper's input size, count at the measured size, error)."""
    paper_size = entry.row.input_size if entry.row else entry.table.input_size
    try:
        if entry.role == EFFICIENTVIT:
            return (count_efficientvit(entry.name, paper_size), count_efficientvit(entry.name, entry.input_size), "")
        paper = count_competitor(entry.card, entry.table, paper_size)
        here = paper if tuple(entry.input_size) == tuple(paper_size) else count_competitor(
            entry.card, entry.table, entry.input_size)
        return paper, here, ""
    except Exception as exc:  # a third-party model that cannot be counted is reported, not fatal
        return None, None, f"could not count params/MACs ({type(exc).__name__}: {one_line(exc, 160)})"


def run_comparison(plan: Plan, settings: CompareSettings, bench: BenchSettings, step: StepReporter = silent_step,
                   progress: Progress = lambda text: None, warn: Warn = lambda message: None) -> Report:
    """Export, validate and measure every model of ``plan``; the report (see :mod:`evit_deploy.compare`)."""
    profile = load_profile(settings.target)
    budget = Budget(settings.budget_s)
    export_calls = _export_calls(profile)
    not_measured = list(plan.not_measured)
    for item in not_measured:
        warn(f"{item['model']}: not measured: {item['reason']}")

    counts: dict[str, tuple[Count | None, Count | None, str]] = {}
    done: list[tuple[Entry, ExportSubject, ExportResult]] = []
    for entry in plan.entries:
        try:
            subject = _subject(entry, plan, settings)
        except EvitError as exc:  # a competitor's package is missing (the message names the extra)
            not_measured.append({"model": entry.name, "reason": str(exc)})
            warn(f"{entry.name}: not measured: {exc}")
            continue
        counts[entry.name] = _count(entry)
        gmacs = counts[entry.name][1].macs_G if counts[entry.name][1] else None
        costs = None  # (untimed, minimum rounds) seconds of its rows, once a call's time can be estimated
        if budget.rate_s_per_gmac is not None and gmacs is not None:
            call_s = gmacs * budget.rate_s_per_gmac
            costs = _measure_costs(call_s, profile, bench)
            cost = call_s * export_calls + sum(costs)
            budget.estimates_s[entry.name] = cost
            if not budget.fits(cost):
                message = (f"{entry.name}: skipped: estimated {cost:.0f} s ({gmacs:.1f} GMACs per image) would "
                           f"exceed the {budget.limit_s:g} s budget ({budget.elapsed():.0f} s spent, "
                           f"{budget.reserved_s + budget.min_rounds_s:.0f} s reserved for the models before it)")
                budget.skipped.append(message)
                warn(message)
                continue
        tracker = StepTracker(step)
        request = ExportRequest(subject.name, settings.target, settings.weights if entry.name == plan.subject else None,
                                tuple(entry.input_size), ema=settings.ema and entry.name == plan.subject,
                                output=str(settings.exports / f"{subject.name}-{profile.name}"))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RandomWeightsWarning)  # the report says which weights were used
                result = run_export(request, tracker, subject=subject)
        except Exception as exc:
            if entry.name == plan.subject or isinstance(exc, KeyboardInterrupt):
                raise
            reason = (f"not measured on {profile.name}: step '{tracker.failed or 'check the request'}' failed: "
                      f"{one_line(exc) if isinstance(exc, EvitError) else f'{type(exc).__name__}: {one_line(exc)}'}")
            not_measured.append({"model": entry.name, "reason": reason})
            warn(f"{entry.name}: {reason}")
            continue
        if budget.rate_s_per_gmac is None and gmacs:  # the first model exported calibrates the estimates
            budget.rate_s_per_gmac = _seconds_per_gmac(subject, result, gmacs)
            budget.calibrated_on = entry.name
            costs = _measure_costs(gmacs * budget.rate_s_per_gmac, profile, bench)
        if costs is not None:
            budget.keep(costs)
        done.append((entry, subject, result))

    items = [_item(entry, result, bench, settings, plan, counts[entry.name]) for entry, _, result in done]
    if budget.limit_s is not None:  # the timed rounds get what is left once loading, warm-up and overhead are paid
        bench.protocol.budget_s = max(1.0, min(bench.protocol.budget_s, budget.timed_s()))
    rows, skipped = measure_items(items, bench, progress) if items else ([], [])
    return _report(plan, profile, bench, settings, done, items, rows, skipped, counts, not_measured, budget)


def _item(entry: Entry, result: ExportResult, bench: BenchSettings, settings: CompareSettings, plan: Plan,
          count: tuple[Count | None, Count | None, str]) -> BenchItem:
    here = count[1]
    extra = {"table": entry.table.name, "paper_name": entry.row.paper_name if entry.row else None,
             "input_size": list(entry.input_size),
             "params_M": round(count[0].params_M, 3) if count[0] else None,
             "macs_G": round(here.macs_G, 3) if here else None}
    mine = entry.name == plan.subject
    return open_item(result.folder, bench, settings.weights if mine else None, settings.ema and mine, entry.name,
                     extra, entry.role, require_signature=False)  # exported by this run, just now


def unmeasurable() -> dict[str, str]:
    """Competitors no package builds, with the reason."""
    return {c.name: re.split(r"[:(]", c.unavailable)[0].strip() for c in competitors().values() if not c.measurable}


def _report(plan: Plan, profile: ExportProfile, bench: BenchSettings, settings: CompareSettings,
            done: list[tuple[Entry, ExportSubject, ExportResult]], items: list[BenchItem],
            rows: list[Row], skipped: list[str], counts: dict, not_measured: list[dict[str, str]],
            budget: Budget) -> Report:
    report = new_report("comparison", f"{plan.table.title}: measured on this machine", bench, model=plan.title,
                        task=plan.table.task, target=profile.name)
    report.machine.finish()
    measured = {entry.name for entry, _, _ in done}
    paper_rows = {e.name: e.row for e in plan.entries}
    batch = min(bench.batches)
    report.claims = [claim_entry(plan.table, baseline, ours, (paper_rows[baseline], paper_rows[ours]), rows,
                                 report.machine.label, batch) for baseline, ours in pairs(plan, measured)]
    models, mismatches = {}, []
    for entry in plan.entries:
        paper, here, error = counts.get(entry.name, (None, None, ""))
        checks = check_counts(paper, entry.row)
        text = mismatch_text(entry.name, checks, entry.row)
        if text:
            mismatches.append(text)
        export = next((r for e, _, r in done if e.name == entry.name), None)
        models[entry.name] = {
            "role": entry.role, "table": entry.table.name, "measured": entry.name in measured,
            "export": str(export.folder) if export else None,
            "builder": entry.card.builder if entry.card else "evit-deploy zoo",
            "recipe": entry.card.recipe if entry.card else None,
            "input_size": list(entry.input_size),
            "paper": entry.row.to_dict() if entry.row else None,
            "counted": {"params_M": round(paper.params_M, 3), "macs_G": round(paper.macs_G, 3),
                        "at": list(paper.input_size), "macs_G_measured_size": round(here.macs_G, 3),
                        "measured_size": list(here.input_size), "counted_on": paper.device} if paper else None,
            "count_check": checks,
            "count_error": error or None,
            "mismatch": text or None,
            "weights": export.manifest.weights if export else None,
            "export_skipped": export.manifest.skipped if export else [],
        }
    sizes = {tuple(e.input_size) for e in plan.entries}
    measured_what = sorted({task_spec(i.manifest.task).measured for i in items})
    report.rows = rows
    report.input_size = list(next(iter(sizes))) if len(sizes) == 1 else None
    report.measured = ", ".join(measured_what or ["whole model"])
    report.skipped = skipped + budget.skipped + [f"{e.name}: {line}" for e, _, r in done for line in r.manifest.skipped]
    report.settings["weights"] = Path(settings.weights).name if settings.weights else "random"
    report.columns = {"role": "role", "params_M": "params M (counted)"}
    for row in report.rows:
        row.extra["role"] = row.role
    report.notes = [n for n in (
        plan.table.note,
        "Competitors run with random weights (latency does not depend on weights); accuracies are the paper's, not "
        "measured here.",
        "The paper's figures are TensorRT fp16 on its devices with data transfer included; compare ratios, not "
        "absolute numbers, and only at the same batch and precision.",
        "Measured ratio = the competitor's median latency / EfficientViT's median latency, same backend, precision, "
        "batch and threads, from the rows above.") if n]
    report.sections.update({
        "mode": plan.mode,
        "table": plan.table.name,
        "paper": {"title": plan.table.title, "note": plan.table.note,
                  "columns": {k: c.to_dict() for k, c in plan.table.columns.items()},
                  "accuracy": {"key": plan.table.accuracy_key, "label": plan.table.accuracy_label},
                  "figure_column": plan.table.figure_column,
                  "rows": [{"role": EFFICIENTVIT, **row.to_dict()} for row in plan.table.efficientvit.values()]
                  + [{"role": "comparison", **c.rows[plan.table.name].to_dict()} for c in competitors().values()
                     if plan.table.name in c.rows]},
        "models": models,
        "claims_not_reached": unreached_claims(plan.table, measured, unmeasurable()),
        "count_mismatches": mismatches,
        "not_measured": not_measured,
        "budget": budget.to_dict(),
    })
    return report
