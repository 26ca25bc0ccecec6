"""``evit-deploy bench``: latency of PyTorch eager and exported artifacts, reported beside the paper."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import EvitError
from .progress import RichSteps


@contextlib.contextmanager
def _bar(label: str, total: int) -> Iterator[Callable[[], None]]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"measuring {label}", total=total)
        yield lambda: progress.advance(task)


def _reference_table() -> Table:
    from ..bench.reference import published

    doc = published()
    table = Table(title="published EfficientViT hardware figures (TensorRT fp16, data transfer included)",
                  caption=doc["source"])
    for col in ("model", "device", "batch", "figure", "accuracy"):
        table.add_column(col, no_wrap=col in ("model", "device"))
    facts = {m["model"]: m for m in doc["models"]}
    for r in doc["hardware"]:
        m = facts[r["model"]]
        acc = next((f"{k} {m[k]}" for k in ("top1", "miou", "coco_map") if k in m), "-")
        figure = f"{r['value']} ms" if r["metric"] == "latency_ms" else f"{r['value']} img/s"
        table.add_row(r["model"], doc["devices"][r["device"]], str(r["batch"] or "not stated"), figure, acc)
    return table


def _results_table(report: dict) -> Table:
    table = Table(title=f"{report['model']}: {report['machine']['label']}", caption="vs PyTorch: time ratio")
    for col in ("backend", "format", "precision", "batch", "median ms", "p90 ms", "std ms", "img/s", "vs PyTorch"):
        table.add_column(col, justify="left" if col in ("backend", "format", "precision") else "right")
    for r in report["results"]:
        lat = r["latency_ms"]
        ratio = f"{r['ratio_to_pytorch']:.2f}x" if r["artifact"] else "baseline"
        table.add_row(r["backend"], r["format"], r["precision"], str(r["batch"]), f"{lat['median']:.2f}",
                      f"{lat['p90']:.2f}", f"{lat['std']:.2f}", f"{r['throughput_img_s']:.1f}", ratio)
    return table


@click.command()
@click.argument("model_or_export", required=False)
@click.option("--target", "-t", default="cpu-ort", show_default=True, help="Export profile (when given a MODEL).")
@click.option("--weights", "-w", type=click.Path(dir_okay=False), help="Official checkpoint (.pt/.safetensors).")
@click.option("--imgsz", type=click.IntRange(min=1), multiple=True,
              help="Input size: --imgsz H [W] (square if one value).")
@click.option("--batch", "batches", default="1", show_default=True, help="Batch sizes, comma-separated (1,4,16).")
@click.option("--runs", default=30, show_default=True, type=click.IntRange(min=1), help="Timed rounds per batch.")
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(min=0), help="Warm-up calls each.")
@click.option("--threads", type=click.IntRange(min=1), help="Threads for every backend (default: all cores).")
@click.option("--output", "-o", type=click.Path(file_okay=False), help="Report folder (default: ./bench/<name>/).")
@click.option("--ema", is_flag=True, help="Load the checkpoint's EMA weights (state_dict_ema / model_ema).")
@click.option("--list-reference", is_flag=True, help="Show the published figures the reports compare against.")
def bench(model_or_export: str | None, target: str, weights: str | None, imgsz: tuple[int, ...], batches: str,
          runs: int, warmup: int, threads: int | None, output: str | None, ema: bool, list_reference: bool) -> None:
    """Measure MODEL (exported for --target first) or an EXPORT_DIR: PyTorch eager and every artifact.

    Backends run interleaved (one call each per round) with the same threads, input and batch; the report
    (report.json, report.md, report.html) carries the paper's figures for the model, each with its device.
    """
    from ..bench.report import check_report_folder, write_reports

    console = Console()
    if list_reference:
        console.print(_reference_table())
        return
    if not model_or_export:
        raise EvitError("give a MODEL or an EXPORT_DIR to benchmark (or --list-reference)")
    if len(imgsz) > 2:
        raise click.BadParameter("give at most two values (H and W)", param_hint="--imgsz")
    is_export = Path(model_or_export).is_dir()
    name = Path(model_or_export).name if is_export else f"{model_or_export}-{Path(target).stem}"
    folder = Path(output or Path("bench") / name)
    if not is_export:
        from ..export.request import ExportRequest, preflight

        preflight(ExportRequest(model_or_export, target, weights, imgsz or None, ema=ema))

    from ..bench.harness import BenchSettings, bench_export, bench_model, parse_batches

    settings = BenchSettings(parse_batches(batches), runs, warmup)
    check_report_folder(folder)  # before minutes of measuring
    if threads:
        settings.threads = threads
    if is_export:
        report = bench_export(model_or_export, settings, weights, _bar)
    else:
        report = bench_model(model_or_export, target, settings, weights, imgsz or None, step=RichSteps(),
                             progress=_bar, ema=ema)
    write_reports(report, folder)
    console.print(_results_table(report))
    if report["skipped"]:
        console.print("not measured: " + "; ".join(report["skipped"]))
    console.print(f"reports: {folder}/report.md, report.json, report.html")
