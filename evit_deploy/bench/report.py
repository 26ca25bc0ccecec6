"""Benchmark reports: report.json, report.md (terminal/GitHub table) and report.html with matplotlib plots.

Every figure carries its device: ours are labelled with this machine, the paper's with theirs.
"""

from __future__ import annotations

import base64
import html
import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import EvitError
from ..files import atomic_write, writing
from .reference import family_prefix, hardware_rows, published

ACCURACY_KEYS = (("top1", "ImageNet top-1 (%)"), ("miou", "mIoU (%)"), ("coco_map", "COCO mAP"))


def _fmt(v: float) -> str:
    return f"{v:.2f}" if v < 100 else f"{v:.1f}"


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# {report['model']} on {m['cpu']} ({m['threads']} threads)",
        "",
        f"Target `{report['target']}`, input {report['input_size'][0]}x{report['input_size'][1]}, "
        f"{report['measured']}; median of {report['settings']['runs']} interleaved runs after "
        f"{report['settings']['warmup']} warm-up rounds; {report['created']}. Device of every row below: "
        f"{m['label']}.",
        "",
        "| backend | format | precision | batch | median ms | p90 ms | p99 ms | std ms | img/s | vs PyTorch |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lat = r["latency_ms"]
        ratio = f"{r['ratio_to_pytorch']:.2f}x time" if r["artifact"] else "baseline"
        lines.append(
            f"| {r['backend']} | {r['format']} | {r['precision']} | {r['batch']} | {_fmt(lat['median'])} | "
            f"{_fmt(lat['p90'])} | {_fmt(lat['p99'])} | {_fmt(lat['std'])} | {r['throughput_img_s']:.1f} | {ratio} |"
        )
    if report["skipped"]:
        lines += ["", "Not measured: " + "; ".join(report["skipped"]) + "."]
    ref = report["reference"]["hardware"]
    lines += ["", "## Published figures for this model (not measured here)", ""]
    if ref:
        lines += ["| device | engine | precision | batch | figure | data transfer |", "|---|---|---|---:|---:|---|"]
        for r in ref:
            figure = f"{r['value']} ms" if r["metric"] == "latency_ms" else f"{r['value']} img/s"
            lines.append(f"| {r['device_name']} | {r['engine']} | {r['precision']} | {r['batch'] or 'not stated'} | "
                         f"{figure} | {'included' if r['data_transfer_included'] else 'excluded'} |")
    else:
        lines.append("The paper publishes no hardware figure for this model.")
    facts = report["reference"]["model"] or {}
    acc = ", ".join(f"{label} {facts[k]}" for k, label in ACCURACY_KEYS if k in facts)
    if acc:
        lines += ["", f"Published accuracy: {acc}; MACs {facts.get('macs_G')} G; params {facts.get('params_M')} M."]
    measured = report.get("accuracy")
    if measured:
        values = ", ".join(f"{name} {value:.2f}" for name, value in measured["by_artifact"].items()
                           if value is not None)
        lines += ["", f"Measured {measured['metric']} on {measured['images']} images of {measured['dataset']} "
                  f"(`evit-deploy eval`, official protocol): {values}."]
    lines += ["", "Compare like with like: same batch, same precision, and whether host-device copies are "
              "included (the paper's TensorRT figures include them; CPU backends have none)."]
    return "\n".join(lines) + "\n"


def png(fig) -> str:  # noqa: ANN001 - matplotlib Figure
    """A matplotlib figure as a base64 PNG (for an <img> data URL)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(report: dict[str, Any]) -> dict[str, str]:
    """Base64 PNGs: latency per backend/precision/batch, and accuracy vs latency beside the paper's points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    fig, ax = plt.subplots(figsize=(7, 3.2))
    labels = [f"{r['format']} {r['precision']}\nbatch {r['batch']}" for r in report["results"]]
    med = [r["latency_ms"]["median"] for r in report["results"]]
    whiskers = [[m - r["latency_ms"]["min"] for m, r in zip(med, report["results"])],
                [r["latency_ms"]["p90"] - m for m, r in zip(med, report["results"])]]
    ax.barh(labels, med, xerr=whiskers, color="#4c72b0", capsize=3)
    ax.set_xlim(left=0)
    ax.set_xlabel(f"latency, ms: bar median, whiskers min..p90 ({report['machine']['label']})")
    ax.invert_yaxis()
    out["latency"] = png(fig)
    plt.close(fig)

    facts = report["reference"]["model"] or {}
    key = next(((k, label) for k, label in ACCURACY_KEYS if k in facts), None)
    if key:
        fig, ax = plt.subplots(figsize=(7, 4))
        family = [m for m in published()["models"] if m["model"].startswith(family_prefix(report["model"]))
                  and key[0] in m]
        by_model = {m["model"]: m[key[0]] for m in family}
        for device, marker in (("jetson-agx-orin", "s"), ("jetson-nano", "^")):
            pts = [(r["value"], by_model[r["model"]], r["model"]) for r in hardware_rows(family=family_prefix(
                report["model"])) if r["device"] == device and r["model"] in by_model and r["metric"] == "latency_ms"]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker,
                           label=f"paper: {published()['devices'][device]} (TensorRT fp16, bs1)")
                for x, y, name in pts:
                    ax.annotate(name.removeprefix("efficientvit-"), (x, y), fontsize=7, alpha=0.7)
        ours = [r for r in report["results"] if r["batch"] == min(report["settings"]["batches"])]
        measured = report.get("accuracy") or {}
        for r in ours:
            value = measured.get("by_artifact", {}).get(r["artifact"] or "pytorch")
            source = (f"accuracy measured on {measured['images']} {measured['dataset']} images" if value is not None
                      else "published accuracy")
            ax.scatter(r["latency_ms"]["median"], facts[key[0]] if value is None else value, marker="o", s=60,
                       edgecolors="black", label=f"this machine: {r['format']} {r['precision']} bs{r['batch']}, "
                                                 f"{source} ({report['machine']['label']})")
        ax.set_xscale("log")
        ax.set_xlabel("latency, ms (log; each point on its own device)")
        ax.set_ylabel(key[1] + (" (ours: measured; paper: published)" if measured else " (published)"))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        out["accuracy_vs_latency"] = png(fig)
        plt.close(fig)
    return out


def html_page(report: dict[str, Any], md: str) -> str:
    images = plots(report)
    body = [f"<h1>{html.escape(report['model'])}: latency report</h1>", f"<pre>{html.escape(md)}</pre>"]
    captions = {"latency": "Latency per backend, precision and batch, measured here (median; min to p90).",
                "accuracy_vs_latency": "Published accuracy against latency: the paper's points on its devices "
                                       "beside ours on this machine. Devices differ: read ratios, not positions."}
    for name, data in images.items():
        body.append(f"<figure><img src='data:image/png;base64,{data}'/><figcaption>{captions[name]}"
                    "</figcaption></figure>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>evit-deploy bench</title></head><body>"
            + "\n".join(body) + "</body></html>\n")


REPORT_FILES = ("report.json", "report.md", "report.html")


def _is_our_report(folder: Path) -> bool:
    try:
        doc = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and {"results", "machine", "model"} <= set(doc)


def check_report_folder(folder: Path) -> None:
    """Refuse a report folder whose report files are not a previous report of ours (or that is a file)."""
    if folder.exists() and not folder.is_dir():
        raise EvitError(f"report folder {folder} exists and is not a folder")
    existing = [name for name in REPORT_FILES if (folder / name).exists()]
    if existing and not _is_our_report(folder):
        raise EvitError(f"refusing to overwrite {folder / existing[0]}: it is not a benchmark report written by "
                        "evit-deploy; choose another --output folder")
    existing_parent = next(p for p in (folder, *folder.parents) if p.exists())
    with writing(f"write the benchmark report to {folder}"):  # a read-only place fails now, not after measuring
        tempfile.TemporaryFile(dir=existing_parent).close()


def render(report: dict[str, Any]) -> dict[str, str]:
    """{file name: text}: report.md and report.html of an export's benchmark."""
    md = markdown(report)
    return {"report.md": md, "report.html": html_page(report, md)}


def write_reports(report: dict[str, Any], folder: str | Path,
                  renderer: Callable[[dict[str, Any]], dict[str, str]] = render) -> Path:
    """Write report.json, and report.md and report.html as ``renderer`` draws them (a comparison run has its own),
    into ``folder`` (created if needed). Report files already there are replaced only when they are a previous
    report of ours; anything else is refused."""
    folder = Path(folder)
    check_report_folder(folder)
    files = {"report.json": json.dumps(report, indent=2) + "\n", **renderer(report)}
    with writing(f"write the benchmark report to {folder}"):
        for name, text in files.items():  # each file appears whole or not at all
            atomic_write(folder / name, text)
    return folder
