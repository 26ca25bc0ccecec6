"""``evit-deploy bench``: latency of PyTorch eager and exported artifacts, reported beside the paper; ``bench
import``: the same report from what a phone or a Jetson measured with a device bundle."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from ..errors import EvitError
from .device_cmds import DEFAULTS, device_options, settings_from
from .output import RichSteps, comparison_table, progress_bar, reference_table, results_table


class DefaultGroup(click.Group):
    """A group whose first argument, unless it names a subcommand, goes to the default subcommand with every
    argument: ``bench MODEL ...`` is ``bench measure MODEL ...``; ``bench import ...`` is the import."""

    default = "measure"

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                            list[str]]:
        if args and args[0] in self.commands:
            return super().resolve_command(ctx, args)
        return self.default, self.commands[self.default], args

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "MODEL_OR_EXPORT [OPTIONS]")
        formatter.write_usage(ctx.command_path, "import RESULTS --bundle BUNDLE [OPTIONS]")


@click.group(cls=DefaultGroup, invoke_without_command=True, no_args_is_help=False,
             context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.pass_context
def bench(ctx: click.Context) -> None:
    """Benchmark here, or import what a device measured.

    \b
    evit-deploy bench MODEL_OR_EXPORT [OPTIONS]   measure PyTorch eager and every artifact on this machine
                                                  (--adb SERIAL: on an attached Android phone instead)
    evit-deploy bench import RESULTS --bundle B   report a phone's or Jetson's own measurements (device bundle)

    The options of each: evit-deploy bench MODEL --help, evit-deploy bench import --help.
    """
    if ctx.invoked_subcommand is None:
        raise EvitError("give a MODEL or an EXPORT_DIR to benchmark (or --list-reference, --paper-table), or "
                        "`bench import RESULTS --bundle BUNDLE`")


@bench.command("measure")
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
@click.option("--compare", "compare_with", metavar="NAMES",
              help="Competitors measured beside MODEL in the same run, comma-separated (segformer-b1,sam-vit-h; "
                   "see --list-comparisons): each exported for --target, validated and timed interleaved with MODEL.")
@click.option("--paper-table", type=click.Choice(["cityscapes", "ade20k", "imagenet", "sam"]),
              help="Measure a comparison table of the paper: its EfficientViT models and competitors (no MODEL).")
@click.option("--models", "table_models", metavar="NAMES",
              help="With --paper-table: only these models of the table, comma-separated.")
@click.option("--budget-s", type=click.FloatRange(min=0, min_open=True),
              help="With --compare/--paper-table: a time budget in seconds; models estimated to exceed it are "
                   "skipped (and named).")
@click.option("--list-comparisons", is_flag=True, help="Show the paper's tables, claims and competitors.")
@click.option("--adb", "adb_serial", metavar="SERIAL",
              help="Measure EXPORT_DIR on this attached Android phone instead: device bundle, adb push, run, pull, "
                   "import (--runs/--warmup/--threads apply there).")
@click.option("--device-name", help="With --adb: the phone's name on every row (e.g. \"Pixel 8 (Tensor G3)\").")
@click.option("--tool-binary", type=click.Path(dir_okay=False),
              help="With --adb: host path of the device tool to push (android_aarch64_benchmark_model; "
                   "onnxruntime_perf_test for .ort exports); default: already on the phone.")
@device_options
def measure(model_or_export: str | None, target: str, weights: str | None, imgsz: tuple[int, ...], batches: str,
            runs: int, warmup: int, threads: int | None, baselines: str, output: str | None, ema: bool,
            eval_from: str | None, eval_limit: int | None, list_reference: bool, compare_with: str | None,
            paper_table: str | None, table_models: str | None, budget_s: float | None, list_comparisons: bool,
            adb_serial: str | None,
            device_name: str | None, tool_binary: str | None, taskset: str | None, op_profiling: bool,
            no_xnnpack: bool, device_dir: str) -> None:
    """Measure MODEL (exported for --target first) or an EXPORT_DIR: PyTorch eager (and torch.compile with
    --baselines eager,compile) and every artifact.

    Backends run interleaved (one call each per round) with the same threads, input and batch; the report
    (report.json, report.md, report.html) carries the paper's figures for the model, each with its device.

    With --compare or --paper-table, the paper's competitors are exported for the same target, validated against
    their own PyTorch modules and timed in the same rounds; the report puts the paper's ratios (with their devices)
    beside the ratios measured here, and counted params/MACs beside the paper's.
    """
    from ..bench.report import check_report_folder, write_reports

    console = Console()
    if list_reference:
        console.print(reference_table())
        return
    if list_comparisons:
        from .output import comparisons_table

        console.print(comparisons_table())
        return
    if len(imgsz) > 2:
        raise click.BadParameter("give at most two values (H and W)", param_hint="--imgsz")
    if compare_with or paper_table or table_models or budget_s:
        if adb_serial:
            raise EvitError("--adb measures one export on a phone; --compare/--paper-table run here")
        if baselines.replace(" ", "") != "eager":
            raise EvitError("--baselines applies to one model's benchmark; --compare/--paper-table time PyTorch eager")
        _compare(model_or_export, target, weights, imgsz, batches, runs, warmup, threads, output, ema, eval_from,
                 compare_with, paper_table, table_models, budget_s)
        return
    if not model_or_export:
        raise EvitError("give a MODEL or an EXPORT_DIR to benchmark (or --list-reference, --paper-table)")
    is_export = Path(model_or_export).is_dir()
    if adb_serial:
        if not is_export:
            raise EvitError("--adb measures an export folder: export for mobile-cpu-tflite or mobile-cpu-ort first")
        _adb(model_or_export, adb_serial, device_name, output, weights, tool_binary,
             settings_from(threads or DEFAULTS.threads, runs, warmup, DEFAULTS.warmup_ms, taskset, op_profiling,
                           no_xnnpack, device_dir))
        return
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
        from ..artifacts import read_manifest
        from ..compare.subjects import export_subject

        subject = export_subject(read_manifest(model_or_export, verify=False).model, weights)  # a competitor's?
        report = bench_export(model_or_export, settings, weights, progress_bar, subject=subject)
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


def _adb(export: str, serial: str, device_name: str | None, output: str | None, weights: str | None,
         tool_binary: str | None, settings) -> None:  # noqa: ANN001 - DeviceSettings
    from ..bench.report import check_report_folder, write_reports
    from ..device.adb import adb_bench
    from ..device.importer import report_name

    if output:
        check_report_folder(Path(output))
    report = adb_bench(export, serial, device_name, settings, weights, tool_binary, RichSteps())
    folder = Path(output or Path("bench") / report_name(report))
    _show(report, write_reports(report, folder))


@bench.command("import")
@click.argument("results", type=click.Path(exists=True))
@click.option("--bundle", "-b", "bundle_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="The device bundle the results were produced with (evit-deploy device-bundle).")
@click.option("--device-name", help="The device, on every row (e.g. \"Galaxy S23 (Snapdragon 8 Gen 2)\").")
@click.option("--output", "-o", type=click.Path(file_okay=False),
              help="Report folder (default: ./bench/<model>-<device name>/).")
def import_command(results: str, bundle_dir: str, device_name: str | None, output: str | None) -> None:
    """Report what a phone or Jetson measured with a device bundle: RESULTS is the bundle's results/ folder or
    one file (a benchmark_model log or op-profile CSV, an onnxruntime_perf_test log, a trtexec --exportTimes,
    --exportProfile or --exportOutput JSON).

    Writes report.json/.md/.html like `bench`: every row labelled with the device, beside the paper's figure for
    that device class (Snapdragon 8Gen1 for phones, Jetson Nano / AGX Orin for Jetsons), the slowest layers when
    profiled, and the device outputs checked against PyTorch with the export's tolerance. Results of another
    bundle or model, or files that are not the tool's output, are refused.
    """
    from ..bench.report import check_report_folder, write_reports
    from ..device.importer import import_results, report_name

    if output:
        check_report_folder(Path(output))
    report = import_results(results, bundle_dir, device_name)
    folder = Path(output or Path("bench") / report_name(report))
    _show(report, write_reports(report, folder))


def _show(report: dict, folder: Path) -> None:
    console = Console()
    console.print(results_table(report))
    for c in report["correctness"]:
        verdict = "[green]pass[/]" if c["passed"] else "[red]FAIL[/]: " + "; ".join(c["failures"])
        console.print(f"correctness on {c['device']} ({len(c['samples'])} golden inputs): {verdict}")
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


def _split(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def _compare(model: str | None, target: str, weights: str | None, imgsz: tuple[int, ...], batches: str, runs: int,
             warmup: int, threads: int | None, output: str | None, ema: bool, eval_from: str | None,
             compare_with: str | None, paper_table: str | None, table_models: str | None,
             budget_s: float | None) -> None:
    """``bench MODEL --compare ...`` and ``bench --paper-table ...``: checked before any work, then run."""
    from ..bench.report import check_report_folder, write_reports
    from ..compare.plan import plan_compare, plan_table
    from ..export.profiles import load_profile
    from ..export.request import ExportRequest, preflight

    if eval_from is not None:
        raise EvitError("--eval measures one export's accuracy; it does not combine with --compare/--paper-table")
    if paper_table and (model or compare_with):
        raise EvitError("--paper-table measures a whole table: give no MODEL and no --compare (use --models to "
                        "choose models of the table)")
    if paper_table and (weights or ema):
        raise EvitError("--weights/--ema load MODEL's checkpoint; a --paper-table run uses random weights for every "
                        "model (latency does not depend on weights)")
    if table_models and not paper_table:
        raise EvitError("--models chooses models of a --paper-table; with a MODEL use --compare")
    if not (paper_table or compare_with):
        raise EvitError("--budget-s limits a --compare or --paper-table run")
    profile = load_profile(target)
    if paper_table:
        plan = plan_table(paper_table, _split(table_models), (imgsz[0], imgsz[-1]) if imgsz else None)
        if imgsz:  # one size for every model: refuse a size none of them takes before any work
            preflight(ExportRequest(next(iter(plan.table.efficientvit)), target, imgsz=imgsz))
        folder = Path(output or Path("bench") / f"paper-{paper_table}-{profile.name}")
    else:
        if not model:
            raise EvitError("--compare needs a MODEL (the EfficientViT model the competitors are measured beside)")
        if Path(model).is_dir():
            raise EvitError("--compare takes a MODEL name, not an export folder: every model is exported for --target")
        names = _split(compare_with)
        if not names:
            raise EvitError("--compare needs competitor names, comma-separated (see --list-comparisons)")
        resolved = preflight(ExportRequest(model, target, weights, imgsz or None, ema=ema))
        plan = plan_compare(model, names, resolved.input_size)
        folder = Path(output or Path("bench") / f"{model}-{profile.name}-compare")
    check_report_folder(folder)  # before minutes of measuring

    from ..bench.harness import BenchSettings, parse_batches
    from ..compare.report import render
    from ..compare.run import CompareSettings, run_comparison

    settings = BenchSettings(parse_batches(batches), runs, warmup)
    if threads:
        settings.threads = threads
    err = Console(stderr=True)
    report = run_comparison(plan, CompareSettings(target, weights, ema, budget_s=budget_s), settings,
                            RichSteps(), progress_bar,
                            warn=lambda message: err.print(f"[yellow]warning[/]: {escape(message)}", soft_wrap=True))
    write_reports(report, folder, render)
    console = Console()
    console.print(comparison_table(report))
    for claim in report["claims"]:
        console.print(f"{claim['baseline']} vs {claim['ours']}: {claim['text']}", markup=False, soft_wrap=True)
    for line in report["count_mismatches"]:
        console.print(line, style="yellow", markup=False, soft_wrap=True)
    for line in [f"{n['model']}: not measured" for n in report["not_measured"]] + report["skipped"]:
        console.print(line, markup=False, soft_wrap=True)
    console.print(f"reports: {folder}/report.md, report.json, report.html", markup=False)
    if not any(r["role"] == "comparison" for r in report["results"]):
        names = [n["model"] for n in report["not_measured"]] + [s.split(":")[0] for s in report["budget"]["skipped"]]
        raise EvitError(f"no competitor was measured: {', '.join(names) or 'none was asked for'} (the reasons are "
                        f"above and in {folder}/report.md)")
