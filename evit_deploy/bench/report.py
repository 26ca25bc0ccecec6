"""Benchmark reports: report.json, report.md (terminal/GitHub table) and report.html with matplotlib plots.

Every figure carries its device: ours are labelled with this machine, the paper's with theirs.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..files import atomic_write, check_report_dir, writing
from .reference import device_class_devices, family_prefix, hardware_rows, published

CLASS_WORDS = {"phone": "phones", "jetson": "Jetsons", "datacenter-gpu": "datacenter GPUs"}
ACCURACY_KEYS = (("top1", "ImageNet top-1 (%)"), ("miou", "mIoU (%)"), ("coco_map", "COCO mAP"))


def is_baseline(row: dict[str, Any]) -> bool:
    """The PyTorch eager row, which every ratio is against."""
    return row["format"] == "pytorch-eager"


def precision_label(row: dict[str, Any]) -> str:
    """The row's precision, and what the runtime reported it really runs when that differs (int8: its float
    parts)."""
    precision = row["precision"]
    ran = (row.get("runtime") or {}).get("inference_precision")
    if not ran or ran == precision:
        return precision
    return f"{precision} (float parts {ran})" if precision.startswith("int8") else f"{precision} (runs {ran})"


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if v < 100 else f"{v:.1f}"


def headline_ms(row: dict[str, Any]) -> float:
    """The figure a row is plotted and ranked by: its median, or its mean where the tool reports no median."""
    lat = row["latency_ms"]
    return lat["median"] if lat.get("median") is not None else lat["mean"]


def _transfer(row: dict[str, Any]) -> str:
    included = row.get("data_transfer_included")
    return "n/a (CPU)" if included is None else ("included" if included else "excluded")


def _reference_lines(report: dict[str, Any]) -> list[str]:
    ref = report["reference"]["hardware"]
    device_class = report["reference"].get("device_class")
    which = f"for this model on {CLASS_WORDS.get(device_class, device_class)}" if device_class else "for this model"
    lines = ["", f"## Published figures {which} (not measured here)", ""]
    if ref:
        lines += ["| device | engine | precision | batch | figure | data transfer |", "|---|---|---|---:|---:|---|"]
        for r in ref:
            figure = f"{r['value']} ms" if r["metric"] == "latency_ms" else f"{r['value']} img/s"
            lines.append(f"| {r['device_name']} | {r['engine']} | {r['precision']} | {r['batch'] or 'not stated'} | "
                         f"{figure} | {_transfer(r)} |")
        sources = list(dict.fromkeys(r["source"] for r in ref))
        lines += ["", "Source: " + "; ".join(sources) + "."]
    else:
        lines.append(f"The paper publishes no figure {which}.")
    facts = report["reference"]["model"] or {}
    acc = ", ".join(f"{label} {facts[k]}" for k, label in ACCURACY_KEYS if k in facts)
    if acc:
        lines += ["", f"Published accuracy: {acc}; MACs {facts.get('macs_G')} G; params {facts.get('params_M')} M."]
    return lines


def markdown(report: dict[str, Any]) -> str:
    if report.get("imported"):
        return imported_markdown(report)
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
        ratio = "baseline" if is_baseline(r) else f"{r['ratio_to_pytorch']:.2f}x time"
        lines.append(
            f"| {r['backend']} | {r['format']} | {precision_label(r)} | {r['batch']} | {_fmt(lat['median'])} | "
            f"{_fmt(lat['p90'])} | {_fmt(lat['p99'])} | {_fmt(lat['std'])} | {r['throughput_img_s']:.1f} | {ratio} |"
        )
    compiled = [r for r in report["results"] if r.get("compile_s") is not None]
    if compiled:
        lines += ["", "torch.compile (inductor) rows are timed after compiling; compile time, not in the latency: "
                  + ", ".join(f"batch {r['batch']} {r['compile_s']:.1f} s" for r in compiled) + "."]
    ran = [f"{r['artifact']}: {r['runtime']['inference_precision']}" for r in report["results"]
           if (r.get("runtime") or {}).get("inference_precision")]
    if ran:
        lines += ["", "Inference precision the runtime reported for its compiled model (float parts of int8): "
                  + ", ".join(dict.fromkeys(ran)) + "."]
    if report["skipped"]:
        lines += ["", "Not measured: " + "; ".join(report["skipped"]) + "."]
    lines += _reference_lines(report)
    measured = report.get("accuracy")
    if measured:
        values = ", ".join(f"{name} {value:.2f}" for name, value in measured["by_artifact"].items()
                           if value is not None)
        lines += ["", f"Measured {measured['metric']} on {measured['images']} images of {measured['dataset']} "
                  f"(`evit-deploy eval`, official protocol): {values}."]
    lines += ["", "Compare like with like: same batch, same precision, and whether host-device copies are "
              "included (the paper's TensorRT figures include them; CPU backends have none)."]
    return "\n".join(lines) + "\n"


def imported_markdown(report: dict[str, Any]) -> str:
    """report.md of ``bench import``: the device's own measurements, the paper's rows for its class, the slowest
    layers and the correctness of its outputs."""
    m, imp, st = report["machine"], report["imported"], report["settings"]
    threads = f", {st['threads']} threads" if st.get("threads") else ""
    pin = f", pinned with taskset {st['taskset']}" if st.get("taskset") else ""
    lines = [
        f"# {report['model']} on {m['label']}",
        "",
        f"**Measured on the device, not here**: {m['where']}. Bundle `{imp['bundle_id']}`, target "
        f"`{report['target']}`, input {report['input_size'][0]}x{report['input_size'][1]}, {report['measured']}, "
        f"batch {st['batches'][0]}{threads}{pin}; warm-up {st['warmup']}; imported {report['created']}. Device of "
        f"every row below: {m['label']}.",
        "",
        "| device | tool | format | precision | batch | runs | median ms | mean ms | p90 ms | p99 ms | min ms | max ms "
        "| std ms | img/s |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lat = r["latency_ms"]
        ips = f"{r['throughput_img_s']:.1f}" if r.get("throughput_img_s") else "-"
        lines.append(f"| {r['device']} | {r['backend']} | {r['format']} | {r['precision']} | {r['batch']} | "
                     f"{r['runs'] or '-'} | {_fmt(lat['median'])} | {_fmt(lat['mean'])} | {_fmt(lat['p90'])} | "
                     f"{_fmt(lat['p99'])} | {_fmt(lat['min'])} | {_fmt(lat['max'])} | {_fmt(lat['std'])} | {ips} |")
    for r in report["results"]:
        lines += ["", f"`{r['backend']}` reports the {r['statistic']} (\"-\": a figure it does not report; none is "
                  f"estimated). Host-device copies: {r['host_device_copies']}. Source: `{r['source']['file']}` "
                  f"(sha256 {r['source']['sha256'][:12]}…)."]
        if r.get("memory_mb"):
            lines.append("Memory (MB, as the tool reports it): "
                         + ", ".join(f"{k} {v:.1f}" for k, v in r["memory_mb"].items()) + ".")
    if report["skipped"]:
        lines += ["", "Not measured: " + "; ".join(report["skipped"]) + "."]
    lines += _reference_lines(report)
    layers = report.get("layers")
    if layers:
        every = f" over {layers['iterations']} profiled iterations" if layers.get("iterations") else ""
        lines += ["", f"## Slowest layers on the device ({len(layers['top'])} of {layers['layers']}, average "
                  f"per inference{every}; `{layers['source']}`)", "",
                  "| layer | type | avg ms | % of time |", "|---|---|---:|---:|"]
        for t in layers["top"]:
            pct = f"{t['percent']:.1f}" if t.get("percent") is not None else "-"
            lines.append(f"| `{t['name'][:80]}` | {t['type'] or '-'} | {t['avg_ms']:.3f} | {pct} |")
    lines += ["", "## Correctness of the device's outputs", ""]
    if report.get("correctness"):
        lines += ["| artifact | precision | samples | output | max rel. error | min cosine | agreement | result |",
                  "|---|---|---:|---|---:|---:|---:|---|"]
        for c in report["correctness"]:
            agreement = c["agreement"]["value"]
            agree = f"{c['agreement']['metric']} {agreement:.4f}" if agreement is not None else "-"
            result = "pass" if c["passed"] else "FAIL: " + "; ".join(c["failures"])
            for name, met in c["outputs"].items():
                rel = f"{met['max_rel']:.3g}" if not met["nonfinite"] else f"{met['nonfinite']} non-finite"
                cos = f"{met['min_cosine']:.6f}" if not met["nonfinite"] else "-"
                lines.append(f"| {c['artifact']} | {c['precision']} | {len(c['samples'])} | {name} | {rel} | {cos} | "
                             f"{agree} | {result} |")
            tol = c["tolerance"]
            lines += ["", f"Against {c['reference']}: max rel. error ≤ {tol['max_rel']:g}, cosine ≥ "
                      f"{tol['min_cosine']:g}, agreement ≥ {tol['min_agreement']:g} (the export's `validate` gate)."]
    else:
        lines.append("No device outputs were imported: correctness not checked (nothing is assumed).")
    if imp["checks"]:
        lines += ["", "Checked that the results belong to the bundle: " + "; ".join(imp["checks"]) + "."]
    if imp["ignored"]:
        lines += ["", "Ignored files (not output of the tool): " + ", ".join(f"`{i}`" for i in imp["ignored"]) + "."]
    lines += ["", "Compare like with like: the paper's phone figures are TFLite fp32 at batch 1 on a Snapdragon "
              "8Gen1's CPU; its Jetson figures TensorRT fp16 at batch 1 with data transfer included, at maximum "
              "clocks."]
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
    rows = report["results"]
    labels = [f"{r['format']} {r['precision']}\nbatch {r['batch']}" for r in rows]
    med = [headline_ms(r) for r in rows]
    upper = [r["latency_ms"]["p90"] if r["latency_ms"].get("p90") is not None else r["latency_ms"]["max"]
             for r in rows]
    lower = [r["latency_ms"]["min"] if r["latency_ms"].get("min") is not None else m for m, r in zip(med, rows)]
    whiskers = [[m - lo for m, lo in zip(med, lower)], [hi - m if hi is not None else 0 for m, hi in zip(med, upper)]]
    ax.barh(labels, med, xerr=whiskers, color="#4c72b0", capsize=3)
    ax.set_xlim(left=0)
    partial = any(r["latency_ms"].get("median") is None or r["latency_ms"].get("p90") is None for r in rows)
    what = ("bar median (mean where the tool gives none), whiskers min..p90 (max where no p90)" if partial
            else "bar median, whiskers min..p90")
    ax.set_xlabel(f"latency, ms: {what} ({report['machine']['label']})")
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
        device_class = report["reference"].get("device_class")
        devices = device_class_devices(device_class) if device_class else ["jetson-agx-orin", "jetson-nano"]
        for device, marker in zip(devices, ("s", "^", "D", "v")):
            rows = [r for r in hardware_rows(family=family_prefix(report["model"]))
                    if r["device"] == device and r["model"] in by_model and r["metric"] == "latency_ms"]
            pts = [(r["value"], by_model[r["model"]], r["model"]) for r in rows]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker,
                           label=f"paper: {published()['devices'][device]} ({rows[0]['engine']} "
                                 f"{rows[0]['precision']}, bs1)")
                for x, y, name in pts:
                    ax.annotate(name.removeprefix("efficientvit-"), (x, y), fontsize=7, alpha=0.7)
        ours = [r for r in report["results"] if r["batch"] == min(report["settings"]["batches"])]
        measured = report.get("accuracy") or {}
        who = "device" if report.get("imported") else "this machine"
        for r in ours:
            value = measured.get("by_artifact", {}).get(r["artifact"] or "pytorch")
            source = (f"accuracy measured on {measured['images']} {measured['dataset']} images" if value is not None
                      else "published accuracy")
            ax.scatter(headline_ms(r), facts[key[0]] if value is None else value, marker="o", s=60,
                       edgecolors="black", label=f"{who}: {r['format']} {r['precision']} bs{r['batch']}, "
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
    where = f"measured on {report['machine']['label']}" if report.get("imported") else "measured here"
    captions = {"latency": f"Latency per backend, precision and batch, {where} (median; min to p90).",
                "accuracy_vs_latency": "Published accuracy against latency: the paper's points on its devices "
                                       f"beside ours ({where}). Devices differ: read ratios, not positions."}
    for name, data in images.items():
        body.append(f"<figure><img src='data:image/png;base64,{data}'/><figcaption>{captions[name]}"
                    "</figcaption></figure>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>evit-deploy bench</title></head><body>"
            + "\n".join(body) + "</body></html>\n")


REPORT_FILES = ("report.json", "report.md", "report.html")


def check_report_folder(folder: Path) -> None:
    """Refuse a report folder whose report files are not a previous report of ours (or that is a file)."""
    check_report_dir(folder, REPORT_FILES, {"results", "machine", "model"}, "benchmark report")


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
