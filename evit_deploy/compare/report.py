"""report.md and report.html of a comparison run: the measured table, the claims side by side, counted params and
MACs beside the paper's, what was not measured and why, and the paper's figure redrawn with the measured points.

Every number carries its device: ours are measured on this machine, the paper's on Jetson / A100 with TensorRT.
"""

from __future__ import annotations

import html
from typing import Any

from ..bench.report import png


def _ms(v: float) -> str:
    return f"{v:.2f}" if v < 100 else f"{v:.1f}"


def _num(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}g}"


def _printed(v: float | None) -> str:
    """A paper figure as the paper prints it."""
    return "–" if v is None else f"{v:g}"


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    size = "x".join(map(str, report["input_size"])) if report["input_size"] else "each model at its paper size"
    lines = [
        f"# {report['paper']['title']}: measured on {report['machine_label']}",
        "",
        f"Target `{report['target']}`, input {size}, batch {', '.join(map(str, s['batches']))}, {s['threads']} "
        f"threads, {report['measured']}; every model exported, validated against its own PyTorch module and timed "
        f"in the same interleaved rounds (median of {s['runs']} after {s['warmup']} warm-up calls each); "
        f"{report['created']}. Weights: {s['weights']}.",
        "",
        "| model | role | backend | format | precision | batch | median ms | p90 ms | img/s | params M (counted) |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lat = r["latency_ms"]
        lines.append(f"| {r['model']} | {r['role']} | {r['backend']} | {r['format']} | {r['precision']} | "
                     f"{r['batch']} | {_ms(lat['median'])} | {_ms(lat['p90'])} | {r['throughput_img_s']:.1f} | "
                     f"{_num(r['params_M'], 4)} |")
    lines += ["", "## The paper's ratios beside the ones measured here", ""]
    if report["claims"]:
        for c in report["claims"]:
            head = "".join(f"“{h['text']}” ({h['where']}); " for h in c["headlines"])
            lines.append(f"- **{c['baseline']} vs {c['ours']}**: {head}{c['text']}.")
            for p in c["paper"]:
                what = "latency ms" if p["metric"] == "latency_ms" else "throughput img/s"
                lines.append(f"  - paper, {p['device']} {p['settings']} ({what}; {p['scope']}): {p['baseline']:g} "
                             f"vs {p['ours']:g} → {p['ratio']:.2f}×")
            for m in c["measured"]:
                lines.append(f"  - measured here, {m['backend']} {m['format']} {m['precision']} bs{m['batch']}: "
                             f"{m['baseline_median_ms']:.2f} ms / {m['ours_median_ms']:.2f} ms = {m['speedup']:.2f}×")
    else:
        lines.append("No pair of an EfficientViT model and a competitor was measured.")
    if report["claims_not_reached"]:
        lines += ["", "Headline claims of this table this run does not speak to: "
                  + "; ".join(report["claims_not_reached"]) + "."]
    lines += ["", "## Params and MACs: counted here beside the paper's", "",
              "| model | paper name | params M (counted / paper) | MACs G (counted / paper) | at | "
              f"{report['paper']['accuracy']['label']} (paper) | check |",
              "|---|---|---:|---:|---|---:|---|"]
    for name, m in report["models"].items():
        paper, counted = m["paper"] or {}, m["counted"] or {}
        at = "x".join(map(str, counted.get("at", []))) or "–"
        check = ("**>5% off** (see below)" if m["mismatch"] else (m["count_error"] or
                 ("within 5%" if m["count_check"] else "no paper figure")))
        lines.append(f"| {name} | {paper.get('paper_name', '–')} | {_num(counted.get('params_M'), 4)} / "
                     f"{_printed(paper.get('params_M'))} | {_num(counted.get('macs_G'), 4)} / "
                     f"{_printed(paper.get('macs_G'))} | {at} | {_printed(paper.get('accuracy'))} | {check} |")
    if report["count_mismatches"]:
        lines += [""] + [f"- {t}" for t in report["count_mismatches"]]
    if report["not_measured"] or report["skipped"]:
        lines += ["", "## Not measured", ""]
        lines += [f"- {n['model']}: {n['reason']}" for n in report["not_measured"]]
        lines += [f"- {s_}" for s_ in report["skipped"]]
    b = report["budget"]
    if b["seconds"] is not None:
        lines += ["", f"Time budget {b['seconds']:g} s, spent {b['spent_s']:g} s ({b['method']}; calibrated on "
                  f"{b['calibrated_on']})."]
    lines += ["", "## Reading it", "",
              f"- {report['paper']['note']}" if report["paper"]["note"] else "",
              "- Competitors run with random weights (latency does not depend on weights); accuracies are the "
              "paper's, not measured here.",
              "- The paper's figures are TensorRT fp16 on its devices with data transfer included; compare ratios, "
              "not absolute numbers, and only at the same batch and precision.",
              "- Measured ratio = the competitor's median latency / EfficientViT's median latency, same backend, "
              "precision, batch and threads, from the rows above."]
    return "\n".join(line for line in lines if line is not None) + "\n"


def figure(report: dict[str, Any]) -> str | None:
    """The paper's accuracy-vs-speed figure redrawn: the paper's points on its device, and the models measured here
    at their measured latency (deployment artifact, smallest batch), each at its published accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .claims import deployment_row

    paper = report["paper"]
    column = paper["columns"][paper["figure_column"]]
    batch = min(report["settings"]["batches"])
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    drawn = False
    for role, marker in (("efficientvit", "s"), ("comparison", "^")):
        pts = []
        for row in paper["rows"]:  # every point of the paper's table (and poster), measured here or not
            value = row["figures"].get(paper["figure_column"])
            if row["role"] == role and value and row["accuracy"] is not None:
                x = value if column["metric"] == "latency_ms" else 1000.0 / value
                pts.append((x, row["accuracy"], row["model"]))
        if pts:
            drawn = True
            how = "latency" if column["metric"] == "latency_ms" else f"1000 / throughput at bs{column['batch']}"
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, alpha=0.55,
                       label=f"paper: {column['device_name']} ({column['engine']} {column['precision']}, {how}), "
                             f"{'EfficientViT' if role == 'efficientvit' else 'competitors'}")
            for x, y, name in pts:
                ax.annotate(name.removeprefix("efficientvit-"), (x, y), fontsize=6, alpha=0.6)
    for role, color in (("efficientvit", "tab:red"), ("comparison", "tab:blue")):
        pts = []
        for name, m in report["models"].items():
            accuracy = (m["paper"] or {}).get("accuracy")
            r = deployment_row(report["results"], name, batch)
            if m["role"] == role and r and accuracy is not None:
                pts.append((r["latency_ms"]["median"], accuracy, name, r))
        if pts:
            drawn = True
            r0 = pts[0][3]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker="o", s=70, color=color, edgecolors="black",
                       label=f"this machine: {report['machine_label']}, {r0['backend']} {r0['precision']} bs{batch}"
                             f" ({'EfficientViT' if role == 'efficientvit' else 'competitors'}; published accuracy)")
            for x, y, name, _ in pts:
                ax.annotate(f"{name.removeprefix('efficientvit-')} (here)", (x, y), fontsize=7,
                            xytext=(4, -9), textcoords="offset points")
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ax.set_xlabel("ms per image (log): each point on its own device")
    ax.set_ylabel(f"{paper['accuracy']['label']} (published)")
    ax.set_title(paper["title"], fontsize=9)
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    data = png(fig)
    plt.close(fig)
    return data


def render(report: dict[str, Any]) -> dict[str, str]:
    """{file name: text} of a comparison report: report.md and report.html (with the redrawn figure)."""
    md = markdown(report)
    body = [f"<h1>{html.escape(report['paper']['title'])}</h1>", f"<pre>{html.escape(md)}</pre>"]
    data = figure(report)
    if data:
        body.append(f"<figure><img src='data:image/png;base64,{data}'/><figcaption>The paper's figure redrawn: its "
                    "points on its device (TensorRT fp16), and the models measured here at their measured latency "
                    "and published accuracy. Devices differ: read ratios, not positions.</figcaption></figure>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>evit-deploy bench: comparison</title></head>"
            "<body>" + "\n".join(body) + "</body></html>\n")
    return {"report.md": md, "report.html": page}
