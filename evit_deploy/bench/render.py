"""The one renderer of every report (:class:`~.schema.Report`): report.md, report.html (the Markdown and the plots)
and the writing of a report folder. The rows table, the protocol and the machine are drawn for every report; what
one kind of report adds is drawn by the section functions of :mod:`.sections`, each only when its data is there.

Every figure carries its device: ours are labelled with the machine they ran on, published ones with theirs.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from ..files import Owner, atomic_write, check_own_files, fixed_files, writing
from .native import AGREEMENT
from .schema import GENERATOR, SCHEMA, Report, Row, is_ours
from .sections import PLOTS, SECTIONS

REPORT_FILES = ("report.json", "report.md", "report.html")
PROTOCOL_NOTE = (
    "Each backend runs in its own worker process: it loads once, warms up to a steady state, then runs blocks of "
    "calls when told to, so no other runtime's threads compete with it. Blocks alternate between the workers (and the "
    "native tools) in rotating order until every median's 95% confidence interval is within the target or the budget "
    "runs out. A timed call includes handing the input over and reading the outputs back, as a user's call does; the "
    "harness's own share of it is measured against the runtime's bare call.")


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.1f}"


def precision_label(row: Row) -> str:
    """The row's precision, and what the runtime reported it really runs when that differs (int8: its float parts)."""
    ran = row.settings.get("inference_precision")
    if not ran or ran == row.precision:
        return row.precision
    if row.precision.startswith("int8"):
        return f"{row.precision} (float parts {ran})"
    return f"{row.precision} (runs {ran})"


def native_cells(row: Row) -> tuple[str, str]:
    """(native ms, ours/native) cells of a row."""
    n = row.native
    if n is None:
        return "-", "-"
    if n.status != "measured" or n.latency is None:
        return n.status, "-"
    flag = "" if n.ratio is None or AGREEMENT[0] <= n.ratio <= AGREEMENT[1] else " ⚠"
    return ms(n.latency.median), f"{n.ratio:.2f}{flag}" if n.ratio is not None else "-"


def _ci(row: Row) -> str:
    ci = row.latency.ci_pct
    return "-" if ci is None else f"±{ci:.1f}%"


def _p10_p90(row: Row) -> str:
    lat = row.latency
    return "-" if lat.p10 is None else f"{ms(lat.p10)}–{ms(lat.p90)}"


def rows_table(report: Report) -> list[str]:
    several = len({r.model for r in report.rows}) > 1
    extra = list(report.columns.items())
    head = (["model"] if several else []) + ["backend", "format", "precision", "batch", "median ms", "p10–p90 ms",
                                             "95% CI", "img/s", "vs eager", "native ms", "ours/native", "status"]
    head += [label for _, label in extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < (4 if several else 3) else "---:"
                                                             for i in range(len(head))) + "|"]
    for r in report.rows:
        ratio = "baseline" if r.is_baseline else (f"{r.ratio_to_eager:.2f}x" if r.ratio_to_eager else "-")
        ips = f"{r.throughput_img_s:.1f}" if r.throughput_img_s else "-"
        native, vs = native_cells(r)
        cells = ([r.model] if several else []) + [r.backend, r.format, precision_label(r), str(r.batch),
                                                  ms(r.latency.headline), _p10_p90(r), _ci(r), ips, ratio, native, vs,
                                                  r.status]
        cells += [_cell(r.extra.get(key)) for key, _ in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _settings_text(settings: dict[str, Any]) -> str:
    shown = {k: v for k, v in settings.items() if k not in ("kernels_by_precision",) and v not in (None, "", [])}
    return ", ".join(f"{k} {v}" for k, v in shown.items()) or "defaults"


def row_notes(report: Report) -> list[str]:
    """Per row: what the runtime ran with, the harness overhead, the native tool's command, and any problem."""
    lines = []
    several = len({x.model for x in report.rows}) > 1
    for r in report.rows:
        name = f"{r.model + ': ' if several else ''}{r.artifact or r.format} bs{r.batch}"
        parts = []
        if r.status != "ok":
            parts.append(f"**{r.status}**: {r.error}")
        if r.settings:
            parts.append(f"{r.backend} ran with {_settings_text(r.settings)}")
        if r.latency.n:
            parts.append(f"{r.latency.n} calls in {r.latency.blocks} blocks")
        if r.overhead:
            parts.append(f"harness overhead {r.overhead.ms:.3f} ms ({r.overhead.pct:.1f}% of the call)")
        if r.load_s is not None:
            parts.append(f"load {r.load_s:.1f} s")
        n = r.native
        if n is not None:
            if n.status == "measured" and n.latency:
                parts.append(f"`{' '.join(n.command)}` median {ms(n.latency.median)} ms over {n.latency.blocks} runs "
                             f"(95% CI ±{n.latency.ci_pct or 0:.1f}%)")
                if n.differs:
                    parts.append(f"**ours/native {n.ratio:.2f} is outside {AGREEMENT[0]}–{AGREEMENT[1]}**; what "
                                 "differs: " + "; ".join(n.differs))
            else:
                parts.append(f"native tool {n.tool}: {n.status}" + (f" ({n.detail})" if n.detail else ""))
        if parts:
            lines.append(f"- {name}: " + "; ".join(parts) + ".")
    return lines


def _intro(report: Report) -> list[str]:
    m, s = report.machine, report.settings
    facts = []
    if report.target:
        facts.append(f"target `{report.target}`")
    if report.input_size:
        facts.append(f"input {report.input_size[0]}x{report.input_size[1]}")
    facts.append(report.measured)
    if s.get("block_s") is not None:
        facts.append(f"blocks of {s['block_s']:g} s, at least {s.get('min_blocks')}, until every 95% CI is within "
                     f"±{s.get('ci_pct'):g}% or {s.get('budget_s'):g} s pass")
    if s.get("weights"):
        facts.append(f"weights: {s['weights']}")
    load = ""
    if m.load_start is not None:
        load = f" Load average at start {m.load_start[0]:.2f}" + (f", at end {m.load_end[0]:.2f}" if m.load_end else "")
        load += "."
    flags = f" CPU flags: {', '.join(m.cpu_flags)}." if m.cpu_flags else ""
    return [f"# {report.title}", "", "; ".join(facts) + f"; {report.created}.", "",
            f"Device of every measured row: {m.label}" + (f" ({m.cores} cores)" if m.cores else "") + "." + flags
            + load]


def markdown(report: Report) -> str:
    lines = _intro(report)
    if report.rows:
        lines += ["", *rows_table(report)]
        notes = row_notes(report)
        if notes:
            lines += ["", "## Rows in detail", "", *notes]
    if report.kind != "import" and report.rows:
        lines += ["", "## How a row is measured", "", PROTOCOL_NOTE]
    if report.skipped:
        lines += ["", "Not measured: " + "; ".join(report.skipped) + "."]
    for section in SECTIONS:
        lines += section(report)
    if report.notes:
        lines += ["", "## Reading it", "", *[f"- {n}" for n in report.notes]]
    return "\n".join(lines) + "\n"


def png(fig: Any) -> str:
    """A matplotlib figure as a base64 PNG (for an <img> data URL)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def html_page(report: Report, md: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    body = [f"<h1>{html.escape(report.title)}</h1>", f"<pre>{html.escape(md)}</pre>"]
    for plot in PLOTS:
        drawn = plot(report)
        if drawn is None:
            continue
        fig, caption = drawn
        body.append(f"<figure><img src='data:image/png;base64,{png(fig)}'/><figcaption>{html.escape(caption)}"
                    "</figcaption></figure>")
        plt.close(fig)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>evit-deploy report</title></head><body>"
            + "\n".join(body) + "</body></html>\n")


def render(report: Report) -> dict[str, str]:
    """{file name: text} of a report folder."""
    md = markdown(report)
    return {"report.json": report.to_json(), "report.md": md, "report.html": html_page(report, md)}


# The ownership rule of report folders (evit_deploy.files): report.json says it is ours; the files are fixed.
REPORT = Owner("report", REPORT_FILES[0], fixed_files(REPORT_FILES[1:], is_ours))


def check_report_folder(folder: Path) -> None:
    """Refuse a report folder whose report files are not a previous report of ours (or that is a file)."""
    check_own_files(folder, REPORT, REPORT_FILES)


def write_report(report: Report, folder: str | Path) -> Path:
    """Write report.json, report.md and report.html into ``folder`` (created if needed). Report files already there
    are replaced only when they are a previous report of ours; anything else is refused."""
    folder = Path(folder)
    check_report_folder(folder)
    with writing(f"write the report to {folder}"):
        for name, text in render(report).items():  # each file appears whole or not at all
            atomic_write(folder / name, text)
    return folder


__all__ = ["GENERATOR", "SCHEMA", "check_report_folder", "markdown", "render", "write_report"]
