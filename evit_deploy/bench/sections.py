"""What one kind of report adds to the rows, drawn by :mod:`.render` only when its data is there: published figures,
measured accuracy, a comparison's claims and counted params/MACs, an import's correctness checks and slowest layers,
a script's own tables; and the plots (latency per row, accuracy against latency, the paper's figure redrawn).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .reference import device_class_devices, family_prefix, hardware_rows, published
from .schema import Report

CLASS_WORDS = {"phone": "phones", "jetson": "Jetsons", "datacenter-gpu": "datacenter GPUs"}
ACCURACY_KEYS = (("top1", "ImageNet top-1 (%)"), ("miou", "mIoU (%)"), ("coco_map", "COCO mAP"))


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.1f}"


def _num(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}g}"


def _printed(v: float | None) -> str:
    return "–" if v is None else f"{v:g}"


def references(report: Report) -> list[str]:
    """The published figures for the report's model (device class of an import), never measured here."""
    if report.kind not in ("bench", "import"):
        return []
    device_class = report.sections.get("device_class")
    which = f"for this model on {CLASS_WORDS.get(device_class, device_class)}" if device_class else "for this model"
    lines = ["", f"## Published figures {which} (not measured here)", ""]
    if report.references:
        lines += ["| device | engine | precision | batch | figure | data transfer |", "|---|---|---|---:|---:|---|"]
        for r in report.references:
            figure = f"{r.value} ms" if r.metric == "latency_ms" else f"{r.value} img/s"
            lines.append(f"| {r.device_name} | {r.engine} | {r.precision} | {r.batch or 'not stated'} | {figure} | "
                         f"{r.data_transfer or 'not stated'} |")
        lines += ["", "Source: " + "; ".join(dict.fromkeys(r.source for r in report.references)) + "."]
    else:
        lines.append(f"No figure is published {which}.")
    facts = report.sections.get("published_model") or {}
    acc = ", ".join(f"{label} {facts[k]}" for k, label in ACCURACY_KEYS if k in facts)
    if acc:
        lines += ["", f"Published accuracy: {acc}; MACs {facts.get('macs_G')} G; params {facts.get('params_M')} M."]
    return lines


def accuracy(report: Report) -> list[str]:
    measured = report.sections.get("accuracy")
    if not measured:
        return []
    values = ", ".join(f"{name} {value:.2f}" for name, value in measured["by_artifact"].items() if value is not None)
    return ["", f"Measured {measured['metric']} on {measured['images']} images of {measured['dataset']} "
                f"(`evit-deploy eval`, official protocol): {values}."]


def claims(report: Report) -> list[str]:
    if report.kind != "comparison":
        return []
    lines = ["", "## The paper's ratios beside the ones measured here", ""]
    if report.claims:
        for c in report.claims:
            head = "".join(f"“{h['text']}” ({h['where']}); " for h in c.headlines)
            lines.append(f"- **{c.baseline} vs {c.ours}**: {head}{c.text}.")
            for p in c.paper:
                what = "latency ms" if p["metric"] == "latency_ms" else "throughput img/s"
                lines.append(f"  - paper, {p['device']} {p['settings']} ({what}; {p['scope']}): {p['baseline']:g} "
                             f"vs {p['ours']:g} → {p['ratio']:.2f}×")
            for m in c.measured:
                lines.append(f"  - measured here, {m['backend']} {m['format']} {m['precision']} bs{m['batch']}: "
                             f"{m['baseline_median_ms']:.2f} ms / {m['ours_median_ms']:.2f} ms = {m['speedup']:.2f}×")
    else:
        lines.append("No pair of an EfficientViT model and a competitor was measured.")
    unreached = report.sections.get("claims_not_reached")
    if unreached:
        lines += ["", "Headline claims of this table this run does not speak to: " + "; ".join(unreached) + "."]
    return lines


def counts(report: Report) -> list[str]:
    models = report.sections.get("models")
    if not models:
        return []
    label = report.sections["paper"]["accuracy"]["label"]
    lines = ["", "## Params and MACs: counted here beside the paper's", "",
             "| model | paper name | params M (counted / paper) | MACs G (counted / paper) | at | "
             f"{label} (paper) | check |", "|---|---|---:|---:|---|---:|---|"]
    for name, m in models.items():
        paper, counted = m["paper"] or {}, m["counted"] or {}
        at = "x".join(map(str, counted.get("at", []))) or "–"
        check = ("**>5% off** (see below)" if m["mismatch"] else (m["count_error"] or
                 ("within 5%" if m["count_check"] else "no paper figure")))
        lines.append(f"| {name} | {paper.get('paper_name', '–')} | {_num(counted.get('params_M'), 4)} / "
                     f"{_printed(paper.get('params_M'))} | {_num(counted.get('macs_G'), 4)} / "
                     f"{_printed(paper.get('macs_G'))} | {at} | {_printed(paper.get('accuracy'))} | {check} |")
    lines += [f"- {t}" for t in report.sections.get("count_mismatches", [])]
    not_measured = report.sections.get("not_measured", [])
    if not_measured:
        lines += ["", "## Not measured", "", *[f"- {n['model']}: {n['reason']}" for n in not_measured]]
    budget = report.sections.get("budget") or {}
    if budget.get("seconds") is not None:
        lines += ["", f"Time budget {budget['seconds']:g} s, spent {budget['spent_s']:g} s ({budget['method']}; "
                      f"calibrated on {budget['calibrated_on']})."]
    return lines


def imported(report: Report) -> list[str]:
    imp = report.sections.get("imported")
    if not imp:
        return []
    lines = ["", f"**Measured on the device, not here**: {report.machine.where}. Bundle `{imp['bundle_id']}`."]
    for r in report.rows:
        how = r.extra
        lines.append(f"- `{r.backend}` reports the {how.get('statistic', 'median')} (\"-\": a figure it does not "
                     f"report; none is estimated). Host-device copies: {how.get('host_device_copies', 'n/a')}. Source: "
                     f"`{how.get('source_file', '?')}` (sha256 {str(how.get('source_sha256', ''))[:12]}…).")
        if how.get("memory_mb"):
            lines.append("  Memory (MB, as the tool reports it): "
                         + ", ".join(f"{k} {v:.1f}" for k, v in how["memory_mb"].items()) + ".")
    layers = report.sections.get("layers")
    if layers:
        every = f" over {layers['iterations']} profiled iterations" if layers.get("iterations") else ""
        lines += ["", f"## Slowest layers on the device ({len(layers['top'])} of {layers['layers']}, average "
                      f"per inference{every}; `{layers['source']}`)", "",
                  "| layer | type | avg ms | % of time |", "|---|---|---:|---:|"]
        for t in layers["top"]:
            pct = f"{t['percent']:.1f}" if t.get("percent") is not None else "-"
            lines.append(f"| `{t['name'][:80]}` | {t['type'] or '-'} | {t['avg_ms']:.3f} | {pct} |")
    lines += ["", "## Correctness of the device's outputs", ""]
    correctness = report.sections.get("correctness") or []
    if correctness:
        lines += ["| artifact | precision | samples | output | max rel. error | min cosine | agreement | result |",
                  "|---|---|---:|---|---:|---:|---:|---|"]
        for c in correctness:
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
                          f"{tol['min_cosine']:g}, agreement ≥ {tol['min_agreement']:g} (the export's `validate` "
                          "gate)."]
    else:
        lines.append("No device outputs were imported: correctness not checked (nothing is assumed).")
    if imp.get("checks"):
        lines += ["", "Checked that the results belong to the bundle: " + "; ".join(imp["checks"]) + "."]
    if imp.get("ignored"):
        lines += ["", "Ignored files (not output of the tool): " + ", ".join(f"`{i}`" for i in imp["ignored"]) + "."]
    return lines


def tables(report: Report) -> list[str]:
    """A script's own tables: ``sections["tables"]`` = [{"title", "columns": [...], "rows": [[...], ...]}]."""
    lines = []
    for t in report.sections.get("tables", []):
        lines += ["", f"## {t['title']}", "", "| " + " | ".join(t["columns"]) + " |",
                  "|" + "|".join("---" for _ in t["columns"]) + "|"]
        lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in t["rows"]]
        if t.get("note"):
            lines += ["", t["note"]]
    return lines


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


SECTIONS: list[Callable[[Report], list[str]]] = [accuracy, claims, counts, imported, tables, references]


# ------------------------------------------------------------------------------------------------------ plots


def latency_plot(report: Report) -> tuple[Any, str] | None:
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows if r.latency.headline is not None]
    if not rows:
        return None
    several = len({r.model for r in rows}) > 1
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    labels = [f"{r.model.removeprefix('efficientvit-') + ' ' if several else ''}{r.format} {r.precision} bs{r.batch}"
              for r in rows]
    med = [r.latency.headline for r in rows]
    low = [m - (r.latency.p10 if r.latency.p10 is not None else m) for m, r in zip(med, rows)]
    high = [(r.latency.p90 if r.latency.p90 is not None else m) - m for m, r in zip(med, rows)]
    ax.barh(labels, med, xerr=[low, high], color="#4c72b0", capsize=3, label="ours: median, whiskers p10–p90")
    natives = [(i, r.native.latency.median) for i, r in enumerate(rows)
               if r.native and r.native.latency and r.native.latency.median]
    if natives:
        ax.scatter([v for _, v in natives], [i for i, _ in natives], marker="D", color="tab:orange", zorder=3,
                   label="the native tool's median (same file, threads, shape)")
    ax.set_xlim(left=0)
    ax.set_xlabel(f"latency, ms ({report.machine.label})")
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="lower right")
    where = f"measured on {report.machine.label}"
    return fig, f"Latency per row, {where} (median; p10 to p90; diamonds: the vendor's own tool)."


def accuracy_plot(report: Report) -> tuple[Any, str] | None:
    import matplotlib.pyplot as plt

    facts = report.sections.get("published_model") or {}
    key = next(((k, label) for k, label in ACCURACY_KEYS if k in facts), None)
    if report.kind not in ("bench", "import") or not key or not report.model:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    prefix = family_prefix(report.model)
    by_model = {m["model"]: m[key[0]] for m in published()["models"] if m["model"].startswith(prefix) and key[0] in m}
    device_class = report.sections.get("device_class")
    devices = device_class_devices(device_class) if device_class else ["jetson-agx-orin", "jetson-nano"]
    for device, marker in zip(devices, ("s", "^", "D", "v")):
        published_rows = [r for r in hardware_rows(family=prefix) if r["device"] == device and r["model"] in by_model
                          and r["metric"] == "latency_ms"]
        pts = [(r["value"], by_model[r["model"]], r["model"]) for r in published_rows]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker,
                       label=f"published: {published()['devices'][device]} ({published_rows[0]['engine']} "
                             f"{published_rows[0]['precision']}, bs1)")
            for x, y, name in pts:
                ax.annotate(name.removeprefix("efficientvit-"), (x, y), fontsize=7, alpha=0.7)
    measured = report.sections.get("accuracy") or {}
    batch = min((r.batch for r in report.rows), default=1)
    for r in [r for r in report.rows if r.batch == batch and r.latency.headline]:
        value = measured.get("by_artifact", {}).get(r.artifact or "pytorch")
        source = (f"accuracy measured on {measured['images']} {measured['dataset']} images" if value is not None
                  else "published accuracy")
        ax.scatter(r.latency.headline, facts[key[0]] if value is None else value, marker="o", s=60,
                   edgecolors="black", label=f"{r.format} {r.precision} bs{r.batch}, {source} ({report.machine.label})")
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (log; each point on its own device)")
    ax.set_ylabel(key[1] + (" (ours: measured; published otherwise)" if measured else " (published)"))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig, ("Accuracy against latency: published points on their devices beside ours. Devices differ: read "
                 "ratios, not positions.")


def paper_figure(report: Report) -> tuple[Any, str] | None:
    """A comparison's figure of the paper redrawn: its points on its device, and the models measured here at their
    measured latency (deployment artifact, smallest batch), each at its published accuracy."""
    import matplotlib.pyplot as plt

    paper, models = report.sections.get("paper"), report.sections.get("models")
    if report.kind != "comparison" or not paper or not models:
        return None
    column = paper["columns"][paper["figure_column"]]
    batch = min((r.batch for r in report.rows), default=1)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    drawn = False
    for role, marker in (("efficientvit", "s"), ("comparison", "^")):
        pts = []
        for row in paper["rows"]:  # every point of the paper's table, measured here or not
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
        for name, m in models.items():
            acc = (m["paper"] or {}).get("accuracy")
            rows = [r for r in report.rows if r.model == name and r.batch == batch and r.latency.median]
            deployed = ([r for r in rows if r.artifact] or rows or [None])[-1]
            if m["role"] == role and deployed and acc is not None:
                pts.append((deployed.latency.median, acc, name, deployed))
        if pts:
            drawn = True
            first = pts[0][3]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker="o", s=70, color=color, edgecolors="black",
                       label=f"{report.machine.label}, {first.backend} {first.precision} bs{batch} "
                             f"({'EfficientViT' if role == 'efficientvit' else 'competitors'}; published accuracy)")
            for x, y, name, _ in pts:
                ax.annotate(f"{name.removeprefix('efficientvit-')} (here)", (x, y), fontsize=7, xytext=(4, -9),
                            textcoords="offset points")
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ax.set_xlabel("ms per image (log): each point on its own device")
    ax.set_ylabel(f"{paper['accuracy']['label']} (published)")
    ax.set_title(paper["title"], fontsize=9)
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig, ("The paper's figure redrawn: its points on its device (TensorRT fp16), and the models measured here "
                 "at their measured latency and published accuracy. Devices differ: read ratios, not positions.")


def pareto_plot(report: Report) -> tuple[Any, str] | None:
    """An ``optimize`` search: every trial's latency against its accuracy drop, the Pareto front joined, the winner
    and the reference marked."""
    import matplotlib.pyplot as plt

    points = report.sections.get("pareto")
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for stage, marker in (("screen-1", "."), ("screen-2", "x"), ("final", "o")):
        pts = [p for p in points if p["stage"] == stage]
        if pts:
            ax.scatter([p["ms"] for p in pts], [p["drop"] for p in pts], marker=marker, alpha=0.6,
                       label=f"{stage} ({len(pts)})")
    front = sorted((p for p in points if p["front"]), key=lambda p: p["ms"])
    if front:
        ax.plot([p["ms"] for p in front], [p["drop"] for p in front], "-", color="tab:green", label="Pareto front")
    for p in points:
        if p["winner"]:
            ax.scatter([p["ms"]], [p["drop"]], marker="*", s=220, color="tab:red", zorder=3,
                       label=f"winner: {p['label']}")
    ref = report.sections.get("pareto_reference")
    if ref:
        ax.axvline(ref["ms"], color="grey", linestyle="--", label=f"{ref['label']} ({ref['ms']:.2f} ms)")
    ax.set_xlabel(f"median ms per call ({report.machine.label})")
    ax.set_ylabel("accuracy drop against PyTorch, points")
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig, "Every trial of the search: latency against accuracy drop, the Pareto front, the winner."


PLOTS: list[Callable[[Report], tuple[Any, str] | None]] = [latency_plot, accuracy_plot, paper_figure, pareto_plot]
