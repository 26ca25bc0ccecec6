"""What the benchmark scripts in ``latency/`` share: their common arguments, interleaved timing summarised by
:func:`~evit_deploy.bench.measure.summarize`, the machine and library facts of a report, and writing it."""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..files import atomic_write
from .harness import machine_facts
from .measure import Contender, interleaved, summarize

REPORTS = Path(__file__).resolve().parents[2] / "latency" / "reports"


def script_parser(doc: str, runs: int = 30, warmup: int = 5, threads: int = 2) -> argparse.ArgumentParser:
    """An argument parser with ``--runs``, ``--warmup``, ``--threads`` and ``--out`` (the report folder)."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--runs", type=int, default=runs, help="timed interleaved rounds")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed calls of each contender first")
    parser.add_argument("--threads", type=int, default=threads, help="threads of every backend")
    parser.add_argument("--out", type=Path, default=REPORTS, help="report folder")
    return parser


def time_calls(calls: dict[str, Callable[[], object]], runs: int, warmup: int, batch: int = 1
               ) -> dict[str, dict[str, float]]:
    """Interleaved timing (one call of each per round) → :func:`summarize` per key (ms, img/s)."""
    import torch

    contenders = [Contender(key, call) for key, call in calls.items()]
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interleaved(contenders, runs, warmup)
    return {c.key: summarize(c.times_ms, batch) for c in contenders}


def new_report(threads: int | None, settings: dict[str, Any], results: Any, **extra: Any) -> dict[str, Any]:
    """A report with its creation time, the machine, the library versions, the settings and the results."""
    from ..export.pipeline import versions

    return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_facts(threads or 0), "versions": versions(), "settings": settings, **extra,
            "results": results}


def write_report(out: Path, stem: str, report: dict[str, Any], markdown: str) -> None:
    """``<stem>.json`` and ``<stem>.md`` in ``out``, each written whole; the Markdown is also printed."""
    atomic_write(out / f"{stem}.json", json.dumps(report, indent=2) + "\n")
    atomic_write(out / f"{stem}.md", markdown)
    print(markdown)
