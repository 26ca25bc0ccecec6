"""Benchmark export folders: PyTorch eager (every ratio's reference), torch.compile on request, and every runnable
artifact, each in its own worker process, timed in alternating blocks by :mod:`.protocol`, with the device's own
benchmark tool beside each artifact where it is installed (:mod:`.native`). The result is a typed
:class:`~.schema.Report`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import runtime
from ..artifacts import FORMATS, ArtifactEntry, Manifest, read_manifest
from ..compare.cards import resolve_competitor
from ..errors import EvitError
from ..host import library_versions
from ..tasks import task_spec
from ..zoo.cards import all_cards
from .native import AGREEMENT, NativeRunner, NativeTarget, tool_for
from .protocol import Contender, Outcome, Progress, ProtocolSettings, run
from .reference import hardware_rows, model_facts
from .schema import Machine, NativeFigure, Overhead, Reference, Report, Row
from .stats import ratio, summarize
from .worker import WorkerSpec

MAX_PYTORCH_BATCH = 64  # the largest batch PyTorch is benchmarked at beside a static-batch export
BASELINES = ("eager", "compile")  # PyTorch rows: eager (every ratio is against it), torch.compile (inductor)
OVERHEAD_LIMIT_PCT = 3.0
NATIVE_TIMEOUT_S = 600.0


@dataclass
class BenchSettings:
    batches: list[int] = field(default_factory=lambda: [1])
    baselines: list[str] = field(default_factory=lambda: ["eager"])  # of BASELINES; eager is always one
    protocol: ProtocolSettings = field(default_factory=ProtocolSettings)

    @property
    def threads(self) -> int:
        return self.protocol.threads

    def to_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "baselines": self.baselines, **self.protocol.to_dict()}


def parse_baselines(text: str) -> list[str]:
    """``eager,compile`` → ["eager", "compile"]; eager is the reference every ratio is against, so it is required."""
    names = list(dict.fromkeys(b.strip() for b in text.split(",") if b.strip()))
    unknown = [b for b in names if b not in BASELINES]
    if unknown or "eager" not in names:
        problem = f"'{unknown[0]}' is not one" if unknown else "eager (the reference of every ratio) is missing"
        raise EvitError(f"--baselines takes {', '.join(BASELINES)} (comma-separated, eager included); {problem}")
    return names


def parse_batches(text: str) -> list[int]:
    try:
        batches = sorted({int(b) for b in text.split(",") if b.strip()})
    except ValueError:
        raise EvitError(f"--batch takes comma-separated integers like 1,4,16; got '{text}'") from None
    if not batches or batches[0] < 1:
        raise EvitError(f"--batch needs positive integers; got '{text}'")
    return batches


@dataclass
class BenchItem:
    """One export in a measurement run. ``model``: the name on its rows; ``extra``: added to each of its rows."""

    model: str
    folder: Path
    manifest: Manifest
    weights: str | None = None
    ema: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    role: str | None = None
    competitor: tuple[Any, str] | None = None  # (CompetitorCard, table) when the export is a competitor's
    require_signature: str | bool | None = None  # the key its folder must be signed with (see read_manifest)
    pytorch: bool = True  # measure its PyTorch baselines (False: another item of the same model has them)
    shared_cpu: bool = False  # open the artifacts with idle threads that do not spin (a variant, named in extra)
    options: dict[str, str] = field(default_factory=dict)  # runtime options over the export's (a variant)
    threads: int | None = None  # this item's threads (default: the settings')

    @property
    def gpu(self) -> bool:
        return any(FORMATS[a.format].gpu for a in self.manifest.artifacts)

    @property
    def artifacts(self) -> list[ArtifactEntry]:
        """The runnable artifacts of the task's timed graph (the SAM prompt decoder is light: not benchmarked)."""
        return timed_artifacts(self.manifest)


def timed_artifacts(manifest: Manifest) -> list[ArtifactEntry]:
    """The runnable artifacts of the graph the task's latency figures time (its spec's ``timed_role``)."""
    role = task_spec(manifest.task).timed_role
    return [a for a in manifest.artifacts if a.role == role and a.runnable]


def open_item(folder: str | Path, settings: BenchSettings, weights: str | None = None, ema: bool = False,
              name: str | None = None, extra: dict[str, Any] | None = None, role: str | None = None,
              require_signature: str | bool | None = None) -> BenchItem:
    """An export folder ready to measure: its manifest read (its signature verified when one is required, see
    :func:`~evit_deploy.artifacts.read_manifest`) and every artifact hash-checked here, before any worker starts
    (each worker checks them again as it opens its artifact)."""
    folder = Path(folder)
    manifest = read_manifest(folder, verify=True, require_signature=require_signature)
    b = manifest.batch
    limit = b.max if b.dynamic else max(b.size, MAX_PYTORCH_BATCH)  # static: other batches run PyTorch only
    too_big = [batch for batch in settings.batches if batch > limit]
    if too_big:
        raise EvitError(f"{folder} is benchmarked at batches up to {limit}; got --batch {too_big[0]}")
    for a in timed_artifacts(manifest):  # a missing runtime is one line now, not a failed row after minutes
        runtime.require_runtime(a.path)
    competitor = None
    if manifest.model not in all_cards():  # a competitor's export: resolved here, its card sent to the worker
        card, table = resolve_competitor(manifest.model)
        competitor = (card, table)
    return BenchItem(name or manifest.model, folder, manifest, weights, ema, dict(extra or {}), role, competitor,
                     require_signature)


@dataclass
class _Planned:
    """A row to be: its worker's key and what the row says before it is measured."""

    item: BenchItem
    row: Row
    native_key: str | None = None


def _key(item: BenchItem, what: str, batch: int) -> str:
    variant = "".join(f":{k}={v}" for k, v in sorted(item.options.items()))
    variant += (":shared-cpu" if item.shared_cpu else "") + (f":t{item.threads}" if item.threads else "")
    return f"{item.model}:{item.folder.name}{variant}:{what}:bs{batch}"


def _native_contender(planned: _Planned, key: str, threads: int) -> Contender | NativeFigure:
    """The native tool of an artifact row as a contender, or the figure saying why there is none."""
    fmt = planned.row.format
    tool = tool_for(fmt)
    if tool is None:
        return NativeFigure("none", "not applicable", detail=f"no native benchmark tool for {fmt} files on this host "
                                                             "(onnxruntime_perf_test is not in the onnxruntime wheel; "
                                                             "device bundles run it on phones)")
    executable = tool.find()
    if executable is None:
        return NativeFigure(tool.name, "not installed", detail=f"{tool.executable} not found (it comes with "
                                                               f"{tool.comes_with})")
    item, batch = planned.item, planned.row.batch

    def make(info: dict[str, Any], block_s: float) -> NativeRunner:
        target = NativeTarget(item.folder / planned.row.artifact, fmt, batch, info["input_name"],
                              (batch, 3, *item.manifest.input_size), threads, info.get("settings", {}))
        runs = max(10, round(block_s * 1e3 / max(info["est_ms"], 1e-3)))
        return NativeRunner(tool, executable, target, runs, NATIVE_TIMEOUT_S)

    return Contender(key + ":native", native_for=key, make_native=make)


def plan(items: list[BenchItem], batch: int, settings: BenchSettings) -> tuple[list[Contender], dict[str, _Planned],
                                                                                list[str]]:
    """The contenders of one batch size (PyTorch and artifact workers, native tools), the rows they make, and
    what is skipped."""
    contenders, planned, skipped = [], {}, []
    threads = settings.threads
    for item in items:
        base = dict(model=item.model, batch=batch, role=item.role,
                    device="this machine" + (" (GPU)" if item.gpu else ""))
        for baseline in settings.baselines if item.pytorch else ():
            key = _key(item, f"pytorch-{baseline}", batch)
            card, table = item.competitor or (None, None)
            spec = WorkerSpec(key, f"pytorch-{baseline}", str(item.folder), batch, threads, weights=item.weights,
                              ema=item.ema, gpu=item.gpu, warmup=settings.protocol.warmup, competitor=card,
                              table=table, require_signature=item.require_signature)
            contenders.append(Contender(key, spec))
            planned[key] = _Planned(item, Row(backend="pytorch", format=f"pytorch-{baseline}", precision="fp32",
                                              extra=dict(item.extra), **base))
        for a in item.artifacts:
            dim = a.inputs[0].shape[0] if a.inputs else None
            if isinstance(dim, int) and dim != batch:
                skipped.append(f"{item.model}: {a.path} at batch {batch}: static batch {dim}")
                continue
            key = _key(item, a.path, batch)
            spec = WorkerSpec(key, "artifact", str(item.folder), batch, item.threads or threads, artifact=a.path,
                              warmup=settings.protocol.warmup, shared_cpu=item.shared_cpu,
                              require_signature=item.require_signature, options=dict(item.options))
            contenders.append(Contender(key, spec))
            entry = _Planned(item, Row(backend="", format=a.format, precision=a.precision, artifact=a.path,
                                       extra=dict(item.extra), **base))
            planned[key] = entry
            if settings.protocol.native:
                native = _native_contender(entry, key, item.threads or threads)
                if isinstance(native, Contender):
                    contenders.append(native)
                    entry.native_key = native.key
                else:
                    entry.row.native = native
    return contenders, planned, skipped


def _native_figure(outcome: Outcome, row: Row) -> NativeFigure:
    info = outcome.info
    figure = NativeFigure(info.get("tool") or tool_for(row.format).name,
                          "measured" if outcome.status in ("ok", "unsettled") else outcome.status,
                          detail=outcome.error or "", command=info.get("command", []), settings=info.get("told", {}))
    if outcome.blocks:
        figure.latency = summarize(outcome.blocks)
        figure.ratio = ratio(row.latency.median, figure.latency.median)
        if figure.ratio is not None and not AGREEMENT[0] <= figure.ratio <= AGREEMENT[1]:
            figure.differs = list(info["differences"])
            ours_threads = row.settings.get("threads")
            if ours_threads and ours_threads != info["told"].get("threads", ours_threads):
                figure.differs.append(f"threads: ours {ours_threads}, the tool's {info['told']['threads']}")
            if row.overhead and row.overhead.pct > OVERHEAD_LIMIT_PCT:
                figure.differs.append(f"our harness overhead is {row.overhead.pct:.1f}% of the row")
    return figure


def _rows(planned: dict[str, _Planned], outcomes: dict[str, Outcome]) -> list[Row]:
    rows = []
    eager: dict[tuple[str, int], float | None] = {}
    for key, p in planned.items():
        o, row = outcomes[key], p.row
        row.status, row.error = o.status, o.error
        row.latency = summarize(o.blocks)
        if o.info:
            row.backend = row.backend or o.info["backend"]
            row.settings = o.info.get("settings", {})
            row.load_s, row.rss_mb = o.info.get("load_s"), o.info.get("rss_mb")
        if row.backend == "" and not o.info:
            row.backend = "not loaded"
        if o.overhead:
            row.overhead = Overhead(o.overhead["timed_ms"], o.overhead["bare_ms"])
        if p.native_key:
            row.native = _native_figure(outcomes[p.native_key], row)
        if row.is_baseline:
            eager[(row.model, row.batch)] = row.latency.median
        rows.append(row)
    for row in rows:
        row.ratio_to_eager = ratio(row.latency.median, eager.get((row.model, row.batch)))
    return rows


def measure_items(items: list[BenchItem], settings: BenchSettings, progress: Progress = lambda text: None
                  ) -> tuple[list[Row], list[str]]:
    """Every item's PyTorch baselines and artifacts at each batch (one protocol run per batch). Returns (rows,
    skipped)."""
    rows, skipped = [], []
    for batch in settings.batches:
        contenders, planned, skipped_here = plan(items, batch, settings)
        skipped += skipped_here
        outcomes = run(contenders, settings.protocol, lambda text, b=batch: progress(f"batch {b}: {text}"))
        rows += _rows(planned, outcomes)
    return rows, skipped


def references(model: str) -> list[Reference]:
    return [Reference(r["model"], r["device"], r["device_name"], r["engine"], r["precision"], r.get("batch"),
                      r["metric"], r["value"], r["source"], r.get("data_transfer", "")) for r in hardware_rows(model)]


def new_report(kind: str, title: str, settings: BenchSettings, **fields: Any) -> Report:
    return Report(kind=kind, title=title, machine=Machine.here(settings.threads), settings=settings.to_dict(),
                  versions=library_versions(), **fields)


def bench_export(folder: str | Path, settings: BenchSettings, weights: str | None = None, ema: bool = False,
                 progress: Progress = lambda text: None, require_signature: str | bool | None = None) -> Report:
    """Measure PyTorch eager (and compiled, if asked) and each runnable artifact of an export folder.
    ``require_signature``: the key the folder must be signed with (default: ``EVIT_DEPLOY_REQUIRE_SIGNATURE``)."""
    item = open_item(folder, settings, weights, ema, require_signature=require_signature)
    manifest = item.manifest
    report = new_report("bench", f"{item.model}, {manifest.target} export", settings, model=item.model,
                        task=manifest.task, target=manifest.target, export=str(item.folder),
                        input_size=list(manifest.input_size),
                        measured=task_spec(manifest.task).measured)
    report.rows, report.skipped = measure_items([item], settings, progress)
    report.machine.finish()
    report.references = references(item.model)
    facts = model_facts(item.model)
    if facts:
        report.sections["published_model"] = facts
    report.settings["weights"] = Path(weights).name if weights else (manifest.weights.get("file") or "random")
    return report


def bench_model(model: str, target: str, settings: BenchSettings, weights: str | None = None,
                imgsz: tuple[int, ...] | None = None, export_dir: str | None = None,
                step: Callable | None = None, progress: Progress = lambda text: None, ema: bool = False) -> Report:
    """Export ``model`` for ``target`` (validated as usual), then benchmark the export."""
    from ..export import ExportRequest, run_export
    from ..zoo import get_card

    card = get_card(model)
    request = ExportRequest(model, target, weights, imgsz, None, None,
                            export_dir or str(Path("exports") / f"{card.name}-{Path(target).stem}"), ema=ema)
    result = run_export(request, step) if step else run_export(request)
    return bench_export(result.folder, settings, weights, ema, progress, require_signature=False)  # made just now


def speedups(report: Report) -> list[tuple[str, int, float]]:
    """(artifact, batch, PyTorch median / artifact median) for every measured artifact."""
    return [(r.artifact, r.batch, 1 / r.ratio_to_eager) for r in report.rows if r.artifact and r.ratio_to_eager]
