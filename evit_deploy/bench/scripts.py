"""What the benchmark scripts in ``latency/`` share: their common arguments (the measurement protocol's), the
protocol itself for export folders (:func:`~.harness.measure_items`), and the one report model and renderer, written
as ``<stem>.json``, ``<stem>.md`` and ``<stem>.html`` in the reports folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..files import Owner, atomic_write, check_own_files, fixed_files, writing
from .harness import BenchSettings, new_report
from .protocol import ProtocolSettings
from .render import html_page, markdown
from .schema import Report, is_ours

REPORTS = Path(__file__).resolve().parents[2] / "latency" / "reports"
DEFAULTS = ProtocolSettings()


def script_parser(doc: str, threads: int = 2, budget_s: float = DEFAULTS.budget_s) -> argparse.ArgumentParser:
    """An argument parser with the protocol's options (as ``bench run`` has them) and ``--out`` (the reports
    folder)."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--threads", type=int, default=threads, help="threads of every backend")
    parser.add_argument("--block-s", type=float, default=DEFAULTS.block_s, help="seconds of calls per block")
    parser.add_argument("--min-blocks", type=int, default=DEFAULTS.min_blocks, help="blocks before a row settles")
    parser.add_argument("--ci", type=float, default=DEFAULTS.ci_pct, help="settled: 95%% CI within +- this %%")
    parser.add_argument("--budget-s", type=float, default=budget_s, help="seconds of timed blocks at most")
    parser.add_argument("--no-native", action="store_true", help="skip the native benchmark tools")
    parser.add_argument("--out", type=Path, default=REPORTS, help="report folder")
    return parser


def settings_from(args: argparse.Namespace, batches: list[int] | None = None,
                  baselines: list[str] | None = None) -> BenchSettings:
    """The :class:`BenchSettings` of a script's parsed arguments."""
    protocol = ProtocolSettings(threads=args.threads, block_s=args.block_s, min_blocks=args.min_blocks,
                                ci_pct=args.ci, budget_s=args.budget_s, native=not args.no_native)
    return BenchSettings(batches or [1], baselines or ["eager"], protocol)


def script_report(title: str, settings: BenchSettings, script: str, **fields: Any) -> Report:
    """A ``script`` report (machine, library versions and settings filled in); ``script``: the file that wrote it."""
    report = new_report("script", title, settings, **fields)
    report.notes.append(f"Produced by `latency/{script}`.")
    return report


def _earlier_script_report(doc: Any) -> bool:
    """A report of a benchmark script from before the typed report (its machine and results, no generator)."""
    return isinstance(doc, dict) and "machine" in doc and ("results" in doc or "result" in doc)


def script_report_owner(stem: str) -> Owner:
    """The ownership rule of one script's report files (evit_deploy.files): ``<stem>.json`` is a report of ours."""
    return Owner("benchmark report", f"{stem}.json",
                 fixed_files((f"{stem}.md", f"{stem}.html"), lambda doc: is_ours(doc) or _earlier_script_report(doc)))


def write_script_report(out: Path, stem: str, report: Report) -> None:
    """``<stem>.json``, ``<stem>.md`` and ``<stem>.html`` in ``out``, each written whole; the Markdown is printed.
    Files of those names that are not a report of ours are refused (before anything is written)."""
    check_own_files(out, script_report_owner(stem), (f"{stem}.json", f"{stem}.md", f"{stem}.html"))
    report.machine.finish()
    md = markdown(report)
    with writing(f"write the report to {out}"):
        atomic_write(out / f"{stem}.json", report.to_json())
        atomic_write(out / f"{stem}.md", md)
        atomic_write(out / f"{stem}.html", html_page(report, md))
    print(md)
