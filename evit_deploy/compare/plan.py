"""What a comparison run measures, resolved before any work (no torch): the models (EfficientViT and competitors)
with their paper rows and input sizes, what cannot be measured and why, and the pairs whose ratios it reports.

Two ways in: ``bench compare MODEL a,b`` (every competitor against MODEL, all at MODEL's input size) and
``bench paper-table T [--models ...]`` (the table's models, each at its paper input size unless ``--imgsz``).
"""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass, field

from ..bench.reference import model_facts
from ..errors import EvitError
from ..zoo.cards import get_card
from .cards import (
    BUILDER_PACKAGES,
    CompetitorCard,
    PaperRow,
    PaperTable,
    competitors,
    get_table,
    resolve_competitor,
    table_for,
)

EFFICIENTVIT = "efficientvit"
COMPARISON = "comparison"


@dataclass(frozen=True)
class Entry:
    """One model of the run: ``role`` ``efficientvit`` or ``comparison``; ``row`` its paper row (None: not in the
    paper's table); ``input_size`` the size it is measured at."""

    name: str
    role: str
    table: PaperTable
    row: PaperRow | None
    input_size: tuple[int, int]
    card: CompetitorCard | None = None

    @property
    def accuracy(self) -> float | None:
        return self.row.accuracy if self.row else None


@dataclass
class Plan:
    mode: str  # "compare" (bench compare MODEL ...) or "paper-table"
    table: PaperTable
    entries: list[Entry]
    not_measured: list[dict[str, str]] = field(default_factory=list)  # {"model", "reason"}
    subject: str | None = None  # the EfficientViT model of bench compare

    @property
    def title(self) -> str:
        return self.subject or f"paper-table-{self.table.name}"


def efficientvit_row(table: PaperTable, name: str) -> PaperRow | None:
    """The paper row of an EfficientViT zoo model in ``table``; for a zoo model the table does not list, a row
    made of its published accuracy and README figures (latency/published.yaml) on the table's devices."""
    if name in table.efficientvit:
        return table.efficientvit[name]
    from ..bench.reference import hardware_rows

    facts = model_facts(name) or {}
    figures = {r["device"]: float(r["value"]) for r in hardware_rows(name)
               if r["device"] in table.columns and r["metric"] == table.columns[r["device"]].metric
               and r["batch"] == table.columns[r["device"]].batch}
    card = get_card(name)
    return PaperRow(model=name, table=table.name, paper_name=name, input_size=card.input_size,
                    params_M=facts.get("params_M"), macs_G=facts.get("macs_G"),
                    accuracy=facts.get(table.accuracy_key), figures=figures, source="not-in-paper")


def missing_package(card: CompetitorCard) -> str | None:
    """The package a measurable competitor needs that is not installed here (found without importing), or None."""
    return next((p for p in BUILDER_PACKAGES.get(card.builder or "", ()) if importlib.util.find_spec(p) is None), None)


def _competitor_entry(card: CompetitorCard, table: PaperTable, size: tuple[int, int]) -> Entry:
    card.input_rule.check(card.name, size)  # a size the competitor cannot take: one line naming its constraint
    return Entry(card.name, COMPARISON, table, card.rows.get(table.name), size, card)


def plan_compare(model: str, names: list[str], size: tuple[int, int]) -> Plan:
    """MODEL (a zoo name) against each competitor of ``names``, all at ``size`` (MODEL's resolved input size)."""
    card = get_card(model)
    table = table_for(card.task, card.dataset)
    if table is None:
        raise EvitError(f"the paper compares no {card.task} model on {card.dataset} with competitors")
    plan = Plan("compare", table, [Entry(model, EFFICIENTVIT, table, efficientvit_row(table, model), size)],
                subject=model)
    for name in dict.fromkeys(names):
        competitor, pinned = resolve_competitor(name)
        if competitor.task != card.task or (pinned and pinned != table.name):
            same = [c.name for c in competitors().values() if table.name in c.rows]
            raise EvitError(f"{name} is compared on {pinned or ', '.join(competitor.rows)}, not on {table.name} like "
                            f"{model}; {table.name} competitors: {', '.join(same)}")
        if not competitor.measurable:
            plan.not_measured.append({"model": competitor.name, "reason": competitor.unavailable})
            continue
        plan.entries.append(_competitor_entry(competitor, table, size))
    return plan


def plan_table(name: str, models: list[str] | None, size: tuple[int, int] | None) -> Plan:
    """The paper table ``name``: its EfficientViT rows and competitors (the rows of the paper's table proper
    unless ``models`` names others), each at its paper input size unless ``size`` is given."""
    table = get_table(name)
    chosen = list(dict.fromkeys(models or []))
    evit = [m for m, row in table.efficientvit.items() if (m in chosen if chosen else row.source == "paper")]
    rivals = [c for c in competitors().values() if table.name in c.rows
              and (c.name in chosen if chosen else c.rows[table.name].source == "paper")]
    known = set(table.efficientvit) | {c.name for c in competitors().values() if table.name in c.rows}
    for m in chosen:
        if m not in known:
            close = difflib.get_close_matches(m, sorted(known), n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}?" if close else f"its models: {', '.join(sorted(known))}"
            raise EvitError(f"{m} is not in the paper's {table.name} table; {hint}")
    plan = Plan("paper-table", table, [])
    for m in evit:
        row = table.efficientvit[m]
        plan.entries.append(Entry(m, EFFICIENTVIT, table, row, size or row.input_size))
    for c in rivals:
        if not c.measurable:
            plan.not_measured.append({"model": c.name, "reason": c.unavailable})
            continue
        plan.entries.append(_competitor_entry(c, table, size or c.rows[table.name].input_size))
    return plan


def pairs(plan: Plan, measured: set[str]) -> list[tuple[str, str]]:
    """(competitor, EfficientViT model) pairs the run can speak to, among the ``measured`` models.

    ``bench compare``: every competitor against MODEL. A paper table: every headline claim whose two models were
    measured, and each measured competitor against the EfficientViT model the paper would pair it with: at least
    as accurate, and the fastest such on the table's figure column (the paper's rule for its "up to" ratios).
    """
    rivals = [e for e in plan.entries if e.role == COMPARISON and e.name in measured]
    ours = [e for e in plan.entries if e.role == EFFICIENTVIT and e.name in measured]
    if plan.mode == "compare":
        return [(e.name, plan.subject) for e in rivals] if plan.subject in measured else []
    found = [(c.baseline, c.ours) for c in plan.table.claims.values() if {c.baseline, c.ours} <= measured]
    column = plan.table.columns[plan.table.figure_column]
    for rival in rivals:
        candidates = [e for e in ours if e.accuracy is not None and rival.accuracy is not None
                      and e.accuracy >= rival.accuracy and plan.table.figure_column in e.row.figures]
        if candidates:
            speed = (lambda e: e.row.figures[plan.table.figure_column]) if column.metric == "latency_ms" else (
                lambda e: -e.row.figures[plan.table.figure_column])
            found.append((rival.name, min(candidates, key=speed).name))
        elif ours:
            found.append((rival.name, max(ours, key=lambda e: e.accuracy or 0).name))
    return list(dict.fromkeys(found))
