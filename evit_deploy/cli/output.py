"""Terminal output of long jobs: step-by-step progress (a spinner while a step runs, a tick and its time when
it ends), a progress bar, and the benchmark tables."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


class RichSteps:
    """A StepReporter (``with steps("export ONNX"): ...``) printing to stderr."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            with self.console.status(f"{name} …"):
                yield
        except BaseException:
            self.console.print(f"[red]✗[/] {name}")
            raise
        self.console.print(f"[green]✓[/] {name} [dim]({time.perf_counter() - started:.1f}s)[/]")


@contextlib.contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[], None]]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"measuring {label}", total=total)
        yield lambda: progress.advance(task)


def reference_table() -> Table:
    from ..bench.reference import hardware_rows, published

    doc = published()
    table = Table(title="published EfficientViT hardware figures (engine, precision and batch per row)",
                  caption=doc["source"])
    for col in ("model", "device", "engine", "batch", "figure", "accuracy"):
        table.add_column(col, no_wrap=col in ("model", "device"))
    facts = {m["model"]: m for m in doc["models"]}
    for r in hardware_rows():
        m = facts[r["model"]]
        acc = next((f"{k} {m[k]}" for k in ("top1", "miou", "coco_map") if k in m), "-")
        figure = f"{r['value']} ms" if r["metric"] == "latency_ms" else f"{r['value']} img/s"
        table.add_row(r["model"], r["device_name"], f"{r['engine']} {r['precision']}", str(r["batch"] or "not stated"),
                      figure, acc)
    return table


@contextlib.contextmanager
def progress_line() -> Iterator[Callable[[str], None]]:
    """A live status line on stderr for a measurement: each call replaces the text (loading, round n, settled)."""
    console = Console(stderr=True)
    with console.status("measuring …") as status:
        yield lambda text: status.update(f"measuring: {text}")


def results_table(report) -> Table:  # noqa: ANN001 - bench.schema.Report
    """A report's rows in the terminal (the same columns as report.md)."""
    from ..bench.render import ms, native_cells, precision_label

    several = len({r.model for r in report.rows}) > 1
    imported = report.kind == "import"
    table = Table(title=f"{report.title}: {report.machine.label}",
                  caption="measured on the device, imported" if imported else
                  "each backend in its own process, alternating blocks; vs eager: time ratio")
    cols = (["model"] if several else []) + ["backend", "format", "precision", "batch", "median ms", "p10-p90 ms",
                                             "95% CI", "img/s", "vs eager", "native ms", "ours/native", "status"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("model", "backend", "format", "precision", "status")
                         else "right")
    for r in report.rows:
        lat = r.latency
        if imported:
            ratio = "n/a"
        else:
            ratio = "baseline" if r.is_baseline else (f"{r.ratio_to_eager:.2f}x" if r.ratio_to_eager else "-")
        ci = f"±{lat.ci_pct:.1f}%" if lat.ci_pct is not None else "-"
        spread = f"{ms(lat.p10)}-{ms(lat.p90)}" if lat.p10 is not None else "-"
        ips = f"{r.throughput_img_s:.1f}" if r.throughput_img_s else "-"
        native, vs = native_cells(r)
        table.add_row(*([r.model] if several else []), r.backend, r.format, precision_label(r), str(r.batch),
                      ms(lat.headline), spread, ci, ips, ratio, native, vs, r.status)
    return table


def comparisons_table() -> Table:
    """The paper's tables and competitors, and whether each can be measured here (packages found, not imported)."""
    from ..compare.cards import NOTES, competitors, paper_tables, unbuilt_claims
    from ..compare.plan import missing_package
    from ..optional import EXTRAS

    table = Table(title="the paper's comparisons (evit-deploy bench compare MODEL NAMES, or bench paper-table TABLE)")
    for col in ("table", "model", "paper row", "paper figures", "measurable here"):
        table.add_column(col, no_wrap=col in ("table", "model"))
    for t in paper_tables().values():
        for name, row in t.efficientvit.items():
            figures = ", ".join(f"{t.columns[d].device_name} {v:g}" for d, v in row.figures.items())
            table.add_row(t.name, name, row.paper_name, figures, "yes (EfficientViT, this package)")
        for card in competitors().values():
            row = card.rows.get(t.name)
            if row is None:
                continue
            figures = ", ".join(f"{t.columns[d].device_name} {v:g}" for d, v in row.figures.items()) or "-"
            missing = missing_package(card) if card.measurable else None
            status = ("not measured: " + card.unavailable if not card.measurable else
                      f"needs pip install 'evit-deploy[{EXTRAS.get(missing, missing)}]'"
                      + (" beside a matching torchvision (make compare-timm-env)" if card.builder in NOTES else "")
                      if missing else
                      f"yes ({card.builder})")
            table.add_row(t.name, card.name, f"{row.paper_name} ({row.source})", figures, status)
        for claim in t.claims.values():
            table.add_row(t.name, f"claim {claim.ratio:g}×", claim.text, f"{claim.baseline} vs {claim.ours}", "")
    for claim in unbuilt_claims().values():  # the paper's claims outside these tables: one line each, with why
        table.add_row("-", f"claim {claim.id}", claim.text, "-", claim.reason)
    return table
