"""``evit-deploy bench``: latency of PyTorch eager and exported artifacts, reported beside the paper."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from ..errors import EvitError
from .output import RichSteps, progress_bar, reference_table, results_table


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
@click.option("--baselines", default="eager", show_default=True,
              help="PyTorch rows, comma-separated: eager (the reference of every ratio), compile (torch.compile with "
                   "inductor, timed after compiling; its compile time is reported apart).")
@click.option("--output", "-o", type=click.Path(file_okay=False), help="Report folder (default: ./bench/<name>/).")
@click.option("--ema", is_flag=True, help="Load the checkpoint's EMA weights (state_dict_ema / model_ema).")
@click.option("--eval", "eval_from", type=click.Path(exists=True),
              help="Put measured accuracy on the plots: a dataset folder (evaluated now, see `evit-deploy eval`) or "
                   "the eval.json of an earlier evaluation of this export.")
@click.option("--eval-limit", type=click.IntRange(min=1), help="With --eval DATASET: the first N images only.")
@click.option("--list-reference", is_flag=True, help="Show the published figures the reports compare against.")
def bench(model_or_export: str | None, target: str, weights: str | None, imgsz: tuple[int, ...], batches: str,
          runs: int, warmup: int, threads: int | None, baselines: str, output: str | None, ema: bool,
          eval_from: str | None,
          eval_limit: int | None, list_reference: bool) -> None:
    """Measure MODEL (exported for --target first) or an EXPORT_DIR: PyTorch eager (and torch.compile with
    --baselines eager,compile) and every artifact.

    Backends run interleaved (one call each per round) with the same threads, input and batch; the report
    (report.json, report.md, report.html) carries the paper's figures for the model, each with its device.
    """
    from ..bench.report import check_report_folder, write_reports

    console = Console()
    if list_reference:
        console.print(reference_table())
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

    from ..bench.harness import BenchSettings, bench_export, bench_model, parse_baselines, parse_batches

    settings = BenchSettings(parse_batches(batches), runs, warmup, baselines=parse_baselines(baselines))
    check_report_folder(folder)  # before minutes of measuring
    if threads:
        settings.threads = threads
    if is_export:
        report = bench_export(model_or_export, settings, weights, progress_bar)
    else:
        report = bench_model(model_or_export, target, settings, weights, imgsz or None, step=RichSteps(),
                             progress=progress_bar, ema=ema)
    if eval_from is not None:
        report["accuracy"] = _measured_accuracy(Path(eval_from), report, weights, ema, eval_limit)
    write_reports(report, folder)
    console.print(results_table(report))
    if report["skipped"]:
        console.print("not measured: " + "; ".join(report["skipped"]))
    console.print(f"reports: {folder}/report.md, report.json, report.html")


def _measured_accuracy(source: Path, report: dict, weights: str | None, ema: bool, limit: int | None) -> dict:
    """The accuracy of the benchmarked export: read from an eval.json, or measured now on a dataset folder."""
    from ..eval import EvalSettings, bench_accuracy, evaluate, read_report

    if source.is_file() or (source / "eval.json").is_file():
        evaluation = read_report(source)
        if evaluation["model"] != report["model"]:
            raise EvitError(f"{source} evaluates {evaluation['model']}, not {report['model']}")
    else:
        evaluation = evaluate(report["export"], EvalSettings(str(source), weights=weights, ema=ema, limit=limit))
    return bench_accuracy(evaluation)
