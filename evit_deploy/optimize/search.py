"""The search: cheap first, precise last.

1. **Exports.** Every export variant of every target's space this host can run, each made by the export pipeline
   (validated by its gate) or found in the cache, with the accuracy it loses against PyTorch; one over
   ``--max-drop`` is dropped (its figures kept).
2. **Screen, successive halving.** Round 1 times each export with the runtime's default options at every thread
   count; round 2 crosses the best third of the exports with every runtime option of their space. Each candidate runs
   in its own worker (the measurement protocol with short blocks), in groups; screen figures are cached.
3. **Finalists.** The best candidates and the reference (the ``cpu-openvino`` export as ``export`` makes it by
   default) are timed together by the full protocol: alternating blocks until every 95% CI settles, the native
   tool's figure beside each. The fastest finalist within ``--max-drop`` wins.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..bench.harness import BenchItem, BenchSettings, measure_items, open_item
from ..bench.protocol import ProtocolSettings
from ..bench.schema import Row
from ..bench.worker import Warmup
from ..errors import EvitError
from ..host import cpu_model
from .exports import ExportOutcome, SearchInputs, make_export
from .space import HOST_TARGETS, Candidate, ExportVariant, load_space

REFERENCE_TARGET = "cpu-openvino"
GROUP = 6  # candidates screened together (workers alive at once)
ETA = 3  # successive halving: the best 1/ETA of the exports go on to the runtime-option round
SCREEN = ProtocolSettings(block_s=0.15, min_blocks=3, ci_pct=1000.0, budget_s=30.0, native=False,
                          overhead_calls=3, warmup=Warmup(min_calls=2, min_s=0.2, max_s=5.0, window=3))

Progress = Callable[[str], None]


@dataclass
class OptimizeSettings:
    model: str
    targets: tuple[str, ...] = HOST_TARGETS
    max_drop: float = 1.0
    objective: str = "latency"  # latency (bs1 by default) or throughput (img/s at --batch)
    batch: int = 1
    budget_s: float = 900.0
    finalists: int = 3
    protocol: ProtocolSettings = field(default_factory=ProtocolSettings)  # the finalists' (full) protocol


@dataclass
class Trial:
    """One candidate's figure in one stage."""

    candidate: Candidate
    stage: str  # screen-1, screen-2, final
    row: Row
    cached: bool = False

    @property
    def ms(self) -> float | None:
        return self.row.latency.median


@dataclass
class SearchResult:
    exports: list[ExportOutcome]
    trials: list[Trial]
    finals: list[Trial]
    reference: Trial | None
    winner: Trial | None
    skipped: list[str]
    spaces: dict[str, str]  # target → search space file
    seconds: float


class TrialCache:
    """Screen figures of finished candidates (JSON lines), keyed by the candidate, the search inputs, the package
    versions and the machine: an interrupted or repeated search does not time them again."""

    def __init__(self, root: Path, digest: dict[str, Any]) -> None:
        self.path = root / "trials.jsonl"
        self.salt = json.dumps({**digest, "cpu": cpu_model()}, sort_keys=True)
        self.known: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    self.known[entry["key"]] = entry["row"]
                except (ValueError, KeyError):
                    continue  # a line cut by a kill: that trial is timed again

    def key(self, candidate: Candidate, stage: str, batch: int) -> str:
        return hashlib.sha256(f"{self.salt}|{candidate.key}|{stage}|{batch}".encode()).hexdigest()[:24]

    def get(self, key: str) -> Row | None:
        return Row.from_dict(self.known[key]) if key in self.known else None

    def put(self, key: str, row: Row) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.known[key] = row.to_dict()
        with self.path.open("a") as f:  # appended whole lines: a kill loses at most the line being written
            f.write(json.dumps({"key": key, "row": self.known[key]}) + "\n")


def _item(outcome: ExportOutcome, candidate: Candidate, settings: BenchSettings) -> BenchItem:
    item = open_item(outcome.folder, settings, name=candidate.label, extra={"candidate": candidate.label},
                     require_signature=False)
    item.pytorch = False  # the search compares artifacts; PyTorch is not a candidate
    item.threads = candidate.threads
    item.options = dict(candidate.options)
    return item


def _measure(pairs: list[tuple[Candidate, ExportOutcome]], settings: BenchSettings, stage: str, cache: TrialCache,
             progress: Progress, deadline: float, skipped: list[str]) -> list[Trial]:
    """Screen ``pairs`` in groups (cached figures reused) until ``deadline`` (perf_counter); one trial each, the
    candidates left when time runs out named in ``skipped``."""
    trials, todo = [], []
    for candidate, outcome in pairs:
        key = cache.key(candidate, stage, settings.batches[0])
        row = cache.get(key)
        if row is not None:
            trials.append(Trial(candidate, stage, row, cached=True))
        else:
            todo.append((candidate, outcome, key))
    for start in range(0, len(todo), GROUP):
        group = todo[start:start + GROUP]
        if time.perf_counter() > deadline:
            skipped += [f"{c.label}: not screened ({stage}): the --budget-s ran out" for c, _, _ in todo[start:]]
            break
        progress(f"{stage}: candidates {start + 1}-{start + len(group)} of {len(todo)} (+{len(trials)} cached)")
        items = [_item(outcome, candidate, settings) for candidate, outcome, _ in group]
        rows, _ = measure_items(items, settings)
        for (candidate, _, key), row in zip(group, rows):
            if row.status != "failed":
                cache.put(key, row)
            trials.append(Trial(candidate, stage, row))
    return trials


def _best(trials: list[Trial]) -> list[Trial]:
    return sorted([t for t in trials if t.ms is not None and t.row.status != "failed"], key=lambda t: t.ms)


def reference_variant(batch: int) -> ExportVariant:
    """What ``evit-deploy export MODEL --target cpu-openvino`` makes (its default: auto precision, dynamic batch)."""
    return ExportVariant(REFERENCE_TARGET, "default", "auto", static=False, batch=batch)


def make_exports(settings: OptimizeSettings, inputs: SearchInputs, progress: Progress, step: Any, started: float
                 ) -> tuple[dict[str, str], list[tuple[Any, ExportOutcome]], list[str]]:
    """Stage 1: every export variant of the targets' spaces this host can make, each with its accuracy (cached);
    at most half of ``--budget-s``. Returns (target → space file, [(space, outcome)], skipped lines)."""
    skipped: list[str] = []
    spaces, per_target = {}, []
    for target in settings.targets:
        space = load_space(target)
        spaces[target] = space.source
        per_target.append([(space, v) for v in space.variants(skipped, settings.batch)])
    # each target's exports in turn (its first, then every target's second, ...): a tight budget still tries every
    # target's default export before any target's last variant
    variants = [pair for group in itertools.zip_longest(*per_target) for pair in group if pair is not None]
    digest = inputs.digest()
    made: list[tuple[Any, ExportOutcome]] = []
    per_export: list[float] = []
    for space, variant in variants:
        if per_export and time.perf_counter() - started + (sum(per_export) / len(per_export)) > settings.budget_s / 2:
            skipped.append(f"{variant.label}: not exported: the --budget-s {settings.budget_s:g} s would not leave "
                           "time to time the candidates (half of it goes to exports)")
            continue
        progress(f"export {variant.label}")
        outcome = make_export(variant, inputs, digest, step)
        if not outcome.cached:
            per_export.append(outcome.seconds)
        made.append((space, outcome))
        if outcome.error:
            skipped.append(f"{variant.label}: export failed: {outcome.error}")
    return spaces, made, skipped


def run_search(settings: OptimizeSettings, inputs: SearchInputs, progress: Progress = lambda text: None,
               step: Any = None) -> SearchResult:
    """The search of the module docstring; raises a one-line error only when nothing can be searched."""
    from ..export.steps import silent_step

    started = time.perf_counter()
    spaces, made, skipped = make_exports(settings, inputs, progress, step or silent_step, started)
    digest = inputs.digest()
    cache = TrialCache(inputs.cache, digest)
    accepted = [(space, o) for space, o in made if o.folder and o.drop is not None and o.drop <= settings.max_drop]
    if not accepted:
        measured = sorted((o for _, o in made if o.drop is not None), key=lambda o: o.drop)[:3]
        closest = "; ".join(f"{o.variant.label} loses {o.drop:.2f}" for o in measured) or "none exported"
        raise EvitError(f"no candidate is within --max-drop {settings.max_drop:g} points (closest: {closest})")

    bench = BenchSettings([settings.batch], ["eager"], replace(SCREEN, threads=settings.protocol.threads))
    # 2. screen: every export with the runtime's defaults at each thread count, then the best third of the exports
    #    with every runtime option of their space
    first = [(c, o) for space, o in accepted for c in space.candidates(o.variant, all_options=False)]
    finals_s = min(settings.protocol.budget_s, settings.budget_s / 4)  # kept for the finalists
    deadline = started + settings.budget_s - finals_s
    trials = _measure(first, bench, "screen-1", cache, progress, deadline, skipped)
    by_export: dict[str, float] = {}
    for t in _best(trials):
        by_export.setdefault(t.candidate.variant.label, t.ms)
    keep = sorted(by_export, key=by_export.get)[:max(1, math.ceil(len(by_export) / ETA))]
    second = [(c, o) for space, o in accepted if o.variant.label in keep
              for c in space.candidates(o.variant, all_options=True) if c.options]
    trials += _measure(second, bench, "screen-2", cache, progress, deadline, skipped)

    # 3. finalists and the reference, by the full protocol, in one alternation
    finalists = []
    for t in _best(trials):
        if t.candidate.label not in {f.candidate.label for f in finalists}:
            finalists.append(t)
        if len(finalists) == settings.finalists:
            break
    reference_outcome = make_export(reference_variant(settings.batch), inputs, digest, step)
    ref_candidate = Candidate(reference_outcome.variant, settings.protocol.threads)
    outcome_of = {o.variant.label: o for _, o in accepted}
    pairs = [(t.candidate, outcome_of[t.candidate.variant.label]) for t in finalists]
    if reference_outcome.folder is not None:
        pairs.append((ref_candidate, reference_outcome))
    progress(f"finalists: {len(finalists)} and the default {REFERENCE_TARGET} export, full protocol")
    left = started + settings.budget_s - time.perf_counter()
    full = BenchSettings([settings.batch], ["eager"],
                         replace(settings.protocol, budget_s=max(10.0, min(settings.protocol.budget_s, left))))
    rows, _ = measure_items([_item(o, c, full) for c, o in pairs], full)
    finals = [Trial(c, "final", r) for (c, _), r in zip(pairs, rows)]
    reference = finals.pop() if reference_outcome.folder is not None else None
    ranked = _best(finals)
    winner = ranked[0] if ranked else None
    if reference_outcome.error:
        skipped.append(f"reference {REFERENCE_TARGET} export failed: {reference_outcome.error}")
    return SearchResult([o for _, o in made], trials, finals, reference, winner, skipped, spaces,
                        time.perf_counter() - started)
