"""Evaluation reports: ``eval.json`` (the layout below), ``eval.md`` (a table, per-class IoU) and terminal lines.

``eval.json``: ``{"model", "dataset": {"kind", "path", "images", "limit"}, "results": [{"backend", "format",
"precision", "artifact", "metrics": {...}, "agreement_with_pytorch", "images_per_s", "protocol_deviations"}],
"published": {...}}`` plus when and where it ran.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import EvitError
from ..files import Owner, atomic_write, check_own_files, fixed_files, writing
from ..tasks import task_spec

REPORT_FILES = ("eval.json", "eval.md")
LABELS = {"top1": "top-1 %", "top5": "top-5 %", "miou": "mIoU %", "pixel_acc": "pixel acc. %",
          "miou_small": "mIoU S", "miou_medium": "mIoU M", "miou_large": "mIoU L"}


def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def row_name(result: dict[str, Any]) -> str:
    return "PyTorch (eager, fp32)" if result["artifact"] is None else (
        f"{result['artifact']} ({result['backend']}, {result['precision']})")


def summary_line(result: dict[str, Any], task: str) -> str:
    """One terminal line for a backend's result."""
    metrics = ", ".join(f"{LABELS[k]} {_fmt(result['metrics'].get(k), 2)}" for k in task_spec(task).protocol.headline)
    extra = []
    if result["agreement_with_pytorch"] is not None:
        extra.append(f"agrees with PyTorch on {100 * result['agreement_with_pytorch']:.3f}%")
    if result["images_per_s"]:
        extra.append(f"{result['images_per_s']:.1f} img/s in the model")
    extra += result["protocol_deviations"]
    return f"{row_name(result)}: {metrics}" + (f" ({'; '.join(extra)})" if extra else "")


def markdown(report: dict[str, Any]) -> str:
    task, data = report["protocol"]["task"], report["dataset"]
    keys = task_spec(task).protocol.headline
    lines = [f"# {report['model']} on {data['kind']}", "",
             f"{data['images']} images of {data['path']}" + (f" (--limit {data['limit']})" if data["limit"] else "")
             + f"; {report['created']}; {report['machine']['label']}. Official evaluation protocol "
             f"({report['protocol']['primary_metric']}; input {report['protocol']['input_size']}).", "",
             "| backend | " + " | ".join(LABELS[k] for k in keys) + " | agreement with PyTorch | img/s (model) "
             "| protocol deviations |",
             "|---|" + "---:|" * len(keys) + "---:|---:|---|"]
    for r in report["results"]:
        agree = "-" if r["agreement_with_pytorch"] is None else f"{100 * r['agreement_with_pytorch']:.3f}%"
        speed = "-" if not r["images_per_s"] else f"{r['images_per_s']:.1f}"
        lines.append(f"| {row_name(r)} | " + " | ".join(_fmt(r["metrics"].get(k)) for k in keys)
                     + f" | {agree} | {speed} | {'; '.join(r['protocol_deviations']) or '-'} |")
    if report["published"]:
        lines += ["", "Published (the paper / official repository, full validation set, PyTorch): "
                  + ", ".join(f"{k} {v}" for k, v in report["published"].items()) + "."]
    if report["skipped"]:
        lines += ["", "Not evaluated: " + "; ".join(report["skipped"]) + "."]
    if report["results"] and "per_class_iou" in report["results"][0]["metrics"]:  # segmentation
        names = list(report["results"][0]["metrics"]["per_class_iou"])
        lines += ["", "## Per-class IoU (%)", "", "| class | " + " | ".join(row_name(r) for r in report["results"])
                  + " |", "|---|" + "---:|" * len(report["results"])]
        for name in names:
            lines.append(f"| {name} | " + " | ".join(_fmt(r["metrics"]["per_class_iou"][name], 2)
                                                      for r in report["results"]) + " |")
    lines += ["", f"Whole pass: {report['wall_seconds']:.1f} s, {report['images_per_s_wall']:.1f} images/s "
              "(decoding in worker threads, every backend run on each batch).", ""]
    return "\n".join(lines)


def _ours(doc: object) -> bool:
    return isinstance(doc, dict) and {"model", "dataset", "results"} <= set(doc)


# The ownership rule of evaluation reports (evit_deploy.files): eval.json says it is ours; the files are fixed.
EVAL_REPORT = Owner("evaluation report", REPORT_FILES[0], fixed_files(REPORT_FILES[1:], _ours))


def check_report_folder(folder: Path) -> None:
    """Refuse a folder whose eval files are not ours, or one we cannot write, before any evaluation."""
    check_own_files(folder, EVAL_REPORT, REPORT_FILES)


def write_report(report: dict[str, Any], folder: Path) -> Path:
    check_report_folder(folder)
    with writing(f"write the evaluation report to {folder}"):
        atomic_write(folder / "eval.json", json.dumps(report, indent=2) + "\n")
        atomic_write(folder / "eval.md", markdown(report))
    return folder


def read_report(path: Path) -> dict[str, Any]:
    """A previous ``eval.json`` (the file, or the folder holding it)."""
    path = path / "eval.json" if path.is_dir() else path
    try:
        doc = json.loads(path.read_text())
        doc["model"], doc["dataset"]["kind"], doc["results"]  # noqa: B018 - required keys
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EvitError(f"{path} is not an eval.json of evit-deploy ({type(exc).__name__}: {exc})") from None
    return doc
