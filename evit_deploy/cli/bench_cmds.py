"""``evit-deploy bench``: one subcommand per way of measuring — ``run`` (an export, or a model exported first),
``compare`` (a model beside the paper's competitors), ``paper-table`` (a table of the paper), ``adb`` (an export on
an attached phone), ``import`` (what a device measured with a bundle) — and ``reference``/``comparisons`` (the
published figures). Every one writes the same report (report.json, report.md, report.html)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from ..errors import EvitError
from .device_cmds import DEFAULTS, device_options, settings_from
from .options import (
    batch_option,
    check_imgsz,
    ema_option,
    imgsz_option,
    output_option,
    protocol_from,
    protocol_options,
    run_budget_protocol_options,
    target_option,
    threads_option,
    weights_option,
)
from .output import RichSteps, progress_line, reference_table, results_table
from .sign_cmds import require_signature_option


class DefaultGroup(click.Group):
    """A group whose first argument, unless it names a subcommand, goes to ``run``: ``bench MODEL ...`` is
    ``bench run MODEL ...``."""

    default = "run"

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                            list[str]]:
        if args and (args[0] in self.commands or args[0].startswith("-")):
            return super().resolve_command(ctx, args)
        return self.default, self.commands[self.default], args


@click.group(cls=DefaultGroup)
def bench() -> None:
    """Measure latency the way the device's own tools do, and report it beside the paper's figures.

    \b
    evit-deploy bench run MODEL_OR_EXPORT      PyTorch eager (and compiled) and every artifact, here
    evit-deploy bench compare MODEL NAMES      MODEL beside the paper's competitors, same run
    evit-deploy bench paper-table TABLE        a comparison table of the paper (cityscapes, ade20k, imagenet, sam)
    evit-deploy bench adb EXPORT SERIAL        an export on an attached Android phone (device bundle over adb)
    evit-deploy bench import RESULTS -b BUNDLE what a phone or Jetson measured with a device bundle
    evit-deploy bench video EXPORT VIDEO       a video end to end beside the model alone
    evit-deploy bench reference                the published figures reports compare against
    evit-deploy bench comparisons              the paper's tables, claims and competitors

    How a row is measured: each backend runs alone in its own worker process, warmed up, in blocks that alternate
    with the other rows (and with the vendor's own tool on the same file, where it is installed) until every
    median's 95% confidence interval is within --ci % or --budget-s runs out. `bench MODEL` is `bench run MODEL`.
    """


def _report_done(report, folder: Path) -> None:  # noqa: ANN001 - schema.Report
    console = Console()
    console.print(results_table(report))
    for row in report.rows:
        if row.status != "ok":
            console.print(f"[yellow]{row.status}[/]: {escape(row.artifact or row.format)} bs{row.batch}: "
                          f"{escape(row.error or '')}", soft_wrap=True)
    if report.skipped:
        console.print("not measured: " + escape("; ".join(report.skipped)), soft_wrap=True)
    console.print(f"reports: {folder}/report.md, report.json, report.html", markup=False)


@bench.command("run")
@click.argument("model_or_export")
@target_option
@weights_option
@ema_option
@imgsz_option
@batch_option
@threads_option
@click.option("--baselines", default="eager", show_default=True,
              help="PyTorch rows, comma-separated: eager (the reference of every ratio), compile (torch.compile with "
                   "inductor, compiled in its worker before timing; the compile time is reported apart).")
@protocol_options
@click.option("--eval", "eval_from", type=click.Path(exists=True),
              help="Put measured accuracy on the plots: a dataset folder (evaluated now, see `evit-deploy eval`) or "
                   "the eval.json of an earlier evaluation of this export.")
@click.option("--eval-limit", type=click.IntRange(min=1), help="With --eval DATASET: the first N images only.")
@require_signature_option
@output_option("./bench/<name>/")
def run_command(model_or_export: str, target: str, weights: str | None, ema: bool, imgsz: tuple[int, ...],
                batches: str, threads: int | None, baselines: str, block_s: float, min_blocks: int, ci_pct: float,
                budget_s: float, warmup_s: float, no_native: bool, eval_from: str | None, eval_limit: int | None,
                require_signature: str | None, output: str | None) -> None:
    """Measure an EXPORT folder, or MODEL exported for --target first: PyTorch eager (and torch.compile with
    --baselines eager,compile) and every artifact, each in its own worker process, with the native tool's median
    beside each artifact (benchmark_app for OpenVINO, litert-benchmark for TFLite, trtexec for TensorRT) where it is
    installed."""
    from ..bench.harness import BenchSettings, bench_export, bench_model, parse_baselines, parse_batches
    from ..bench.protocol import check_settings
    from ..bench.render import check_report_folder, write_report

    is_export = Path(model_or_export).is_dir()
    size = check_imgsz(imgsz)
    if not is_export:
        from ..export import ExportRequest, preflight

        preflight(ExportRequest(model_or_export, target, weights, size, ema=ema))
    settings = BenchSettings(parse_batches(batches), parse_baselines(baselines),
                             protocol_from(threads, block_s, min_blocks, ci_pct, budget_s, warmup_s, no_native))
    check_settings(settings.protocol)
    name = Path(model_or_export).name if is_export else f"{model_or_export}-{Path(target).stem}"
    folder = Path(output or Path("bench") / name)
    check_report_folder(folder)  # before minutes of measuring
    with progress_line() as progress:
        if is_export:
            report = bench_export(model_or_export, settings, weights, ema, progress, require_signature)
        else:
            report = bench_model(model_or_export, target, settings, weights, size, step=RichSteps(),
                                 progress=progress, ema=ema)
    if eval_from is not None:
        report.sections["accuracy"] = _measured_accuracy(Path(eval_from), report, weights, ema, eval_limit)
    _report_done(report, write_report(report, folder))


def _measured_accuracy(source: Path, report, weights: str | None, ema: bool,  # noqa: ANN001 - schema.Report
                       limit: int | None) -> dict:
    """The accuracy of the benchmarked export: read from an eval.json, or measured now on a dataset folder."""
    from ..eval import EvalSettings, bench_accuracy, evaluate, read_report

    if source.is_file() or (source / "eval.json").is_file():
        evaluation = read_report(source)
        if evaluation["model"] != report.model:
            raise EvitError(f"{source} evaluates {evaluation['model']}, not {report.model}")
    else:
        evaluation = evaluate(report.export, EvalSettings(str(source), weights=weights, ema=ema, limit=limit))
    return bench_accuracy(evaluation)


def _split(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def _run_plan(plan, target: str, weights: str | None, ema: bool, batches: str, threads: int | None,  # noqa: ANN001
              protocol: tuple, budget_s: float | None, folder: Path) -> None:
    """Export, validate and measure every model of a comparison plan; write and show the report."""
    from ..bench.harness import BenchSettings, parse_batches
    from ..bench.protocol import check_settings
    from ..bench.render import check_report_folder, write_report
    from ..compare.run import CompareSettings, run_comparison

    check_report_folder(folder)  # before minutes of measuring
    settings = BenchSettings(parse_batches(batches), protocol=protocol_from(threads, *protocol))
    check_settings(settings.protocol)
    err = Console(stderr=True)
    with progress_line() as progress:
        report = run_comparison(plan, CompareSettings(target, weights, ema, budget_s=budget_s), settings,
                                RichSteps(), progress,
                                warn=lambda message: err.print(f"[yellow]warning[/]: {escape(message)}",
                                                               soft_wrap=True))
    write_report(report, folder)
    console = Console()
    for claim in report.claims:
        console.print(f"{claim.baseline} vs {claim.ours}: {claim.text}", markup=False, soft_wrap=True)
    for line in report.sections["count_mismatches"]:
        console.print(line, style="yellow", markup=False, soft_wrap=True)
    for line in [f"{n['model']}: not measured" for n in report.sections["not_measured"]]:
        console.print(line, markup=False, soft_wrap=True)
    _report_done(report, folder)
    if not any(r.role == "comparison" for r in report.rows):
        names = [n["model"] for n in report.sections["not_measured"]] + [
            s.split(":")[0] for s in report.sections["budget"]["skipped"]]
        raise EvitError(f"no competitor was measured: {', '.join(names) or 'none was asked for'} (the reasons are "
                        f"above and in {folder}/report.md)")


def _comparison_options(f):  # noqa: ANN001, ANN202 - the options compare and paper-table share
    for decorator in reversed((target_option, imgsz_option, batch_option, threads_option,
                               run_budget_protocol_options)):
        f = decorator(f)
    return f


def _run_budget() -> float | None:
    """``--budget-s`` given on a compare/paper-table run bounds the whole run: models estimated to exceed it are
    skipped (and named), the workers' starts, warm-ups and overhead calls are reserved, and the timed blocks share
    what is left. Not given: no limit on exports, the protocol's
    default on the blocks."""
    ctx = click.get_current_context()
    explicit = ctx.get_parameter_source("budget_s") is not click.core.ParameterSource.DEFAULT
    return ctx.params["budget_s"] if explicit else None


@bench.command("compare")
@click.argument("model")
@click.argument("competitors")
@weights_option
@ema_option
@_comparison_options
@output_option("./bench/<model>-<target>-compare/")
def compare_command(model: str, competitors: str, weights: str | None, ema: bool, target: str, imgsz: tuple[int, ...],
                    batches: str, threads: int | None, block_s: float, min_blocks: int, ci_pct: float,
                    budget_s: float, warmup_s: float, no_native: bool, output: str | None) -> None:
    """Measure MODEL beside the paper's COMPETITORS (comma-separated, e.g. segformer-b1,sam-vit-h; see `bench
    comparisons`): each exported for --target, validated against its own PyTorch module and timed in the same
    alternation; the report puts the paper's ratios (with their devices) beside the ratios measured here, and
    counted params/MACs beside the paper's. --budget-s bounds the whole run (exports included)."""
    from ..compare.plan import plan_compare
    from ..export import ExportRequest, load_profile, preflight

    if Path(model).is_dir():
        raise EvitError("bench compare takes a MODEL name, not an export folder: every model is exported for --target")
    names = _split(competitors)
    if not names:
        raise EvitError("bench compare needs competitor names, comma-separated (see `evit-deploy bench comparisons`)")
    resolved = preflight(ExportRequest(model, target, weights, check_imgsz(imgsz), ema=ema))
    plan = plan_compare(model, names, resolved.input_size)
    folder = Path(output or Path("bench") / f"{model}-{load_profile(target).name}-compare")
    protocol = (block_s, min_blocks, ci_pct, budget_s, warmup_s, no_native)
    _run_plan(plan, target, weights, ema, batches, threads, protocol, _run_budget(), folder)


@bench.command("paper-table")
@click.argument("table", type=click.Choice(["cityscapes", "ade20k", "imagenet", "sam"]))
@click.option("--models", "table_models", metavar="NAMES", help="Only these models of the table, comma-separated.")
@_comparison_options
@output_option("./bench/paper-<table>-<target>/")
def paper_table_command(table: str, table_models: str | None, target: str, imgsz: tuple[int, ...], batches: str,
                        threads: int | None, block_s: float, min_blocks: int, ci_pct: float, budget_s: float,
                        warmup_s: float, no_native: bool, output: str | None) -> None:
    """Measure a comparison TABLE of the paper: its EfficientViT models and competitors (random weights: latency
    does not depend on them), each claim's pair in the same alternation. --budget-s bounds the whole run (exports
    included): models that would not fit are skipped and named."""
    from ..compare.plan import plan_table
    from ..export import ExportRequest, load_profile, preflight

    size = check_imgsz(imgsz)
    plan = plan_table(table, _split(table_models), (size[0], size[-1]) if size else None)
    if size:  # one size for every model: refuse a size none of them takes before any work
        preflight(ExportRequest(next(iter(plan.table.efficientvit)), target, imgsz=size))
    folder = Path(output or Path("bench") / f"paper-{table}-{load_profile(target).name}")
    protocol = (block_s, min_blocks, ci_pct, budget_s, warmup_s, no_native)
    _run_plan(plan, target, None, False, batches, threads, protocol, _run_budget(), folder)


@bench.command("adb")
@click.argument("export_dir", type=click.Path(file_okay=False, exists=True))
@click.argument("serial")
@click.option("--device-name", help="The phone's name on every row (e.g. \"Pixel 8 (Tensor G3)\").")
@click.option("--tool-binary", type=click.Path(dir_okay=False),
              help="Host path of the device tool to push (android_aarch64_benchmark_model; onnxruntime_perf_test "
                   "for .ort exports); default: already on the phone.")
@weights_option
@device_options
@require_signature_option
@output_option("./bench/<model>-<device name>/")
def adb_command(export_dir: str, serial: str, device_name: str | None, tool_binary: str | None,
                weights: str | None, threads: int, runs: int, warmup: int, taskset: str | None, op_profiling: bool,
                no_xnnpack: bool, device_dir: str, require_signature: str | None, output: str | None) -> None:
    """Measure EXPORT_DIR on the attached Android phone SERIAL: device bundle, adb push, run its own benchmark
    tool, pull, import (correctness checked against PyTorch)."""
    from ..bench.render import check_report_folder, write_report
    from ..device.adb import adb_bench
    from ..device.importer import report_name

    if output:
        check_report_folder(Path(output))
    settings = settings_from(threads, runs, warmup, DEFAULTS.warmup_ms, taskset, op_profiling, no_xnnpack, device_dir)
    report = adb_bench(export_dir, serial, device_name, settings, weights, tool_binary, RichSteps(),
                       require_signature)
    _show_import(report, write_report(report, Path(output or Path("bench") / report_name(report))))


@bench.command("import")
@click.argument("results", type=click.Path(exists=True))
@click.option("--bundle", "-b", "bundle_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="The device bundle the results were produced with (evit-deploy device-bundle).")
@click.option("--device-name", help="The device, on every row (e.g. \"Galaxy S23 (Snapdragon 8 Gen 2)\").")
@require_signature_option
@output_option("./bench/<model>-<device name>/")
def import_command(results: str, bundle_dir: str, device_name: str | None, require_signature: str | None,
                   output: str | None) -> None:
    """Report what a phone or Jetson measured with a device bundle: RESULTS is the bundle's results/ folder or
    one file (a benchmark_model log or op-profile CSV, an onnxruntime_perf_test log, a trtexec --exportTimes,
    --exportProfile or --exportOutput JSON).

    Every row is labelled with the device, beside the paper's figure for that device class (Snapdragon 8Gen1 for
    phones, Jetson Nano / AGX Orin for Jetsons), with the slowest layers when profiled, and the device outputs
    checked against PyTorch with the export's tolerance. Results of another bundle or model, or files that are not
    the tool's output, are refused. BUNDLE may be the folder `optimize --device` wrote: then every candidate's
    results (each bundle's results/) are read and ranked, and the report names the winner.
    """
    from ..bench.render import check_report_folder, write_report
    from ..device.importer import import_results, report_name

    if output:
        check_report_folder(Path(output))
    from ..optimize.device import finish, is_device_search

    if is_device_search(Path(bundle_dir)):  # an `optimize --device` folder: every candidate, ranked
        report = finish(Path(bundle_dir), device_name)
        folder = write_report(report, Path(output or Path("bench") / f"{report.model}-optimize-device"))
        _show_import(report, folder)
        Console().print(report.notes[0], markup=False, soft_wrap=True)
        return
    report = import_results(results, bundle_dir, device_name, require_signature)
    _show_import(report, write_report(report, Path(output or Path("bench") / report_name(report))))


def _show_import(report, folder: Path) -> None:  # noqa: ANN001 - schema.Report
    console = Console()
    console.print(results_table(report))
    for c in report.sections.get("correctness") or []:
        verdict = "[green]pass[/]" if c["passed"] else "[red]FAIL[/]: " + escape("; ".join(c["failures"]))
        console.print(f"correctness on {escape(c['device'])} ({len(c['samples'])} golden inputs): {verdict}")
    if report.skipped:
        console.print("not measured: " + escape("; ".join(report.skipped)), soft_wrap=True)
    console.print(f"reports: {folder}/report.md, report.json, report.html", markup=False)


@bench.command("video")
@click.argument("export_dir", type=click.Path(file_okay=False, exists=True))
@click.argument("source", type=click.Path(dir_okay=False, exists=True))
@threads_option
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(min=1),
              help="Alternating blocks of model-only and end-to-end runs.")
@click.option("--memory-frames", nargs=2, type=click.IntRange(min=1), default=(60, 600), show_default=True,
              help="Peak RSS after these two frame counts of the file played in a loop.")
@click.option("--no-memory", is_flag=True, help="Skip the looped memory run.")
@require_signature_option
@output_option("./bench/<export>-video/")
def video_command(export_dir: str, source: str, threads: int | None, repeats: int, memory_frames: tuple[int, int],
                  no_memory: bool, require_signature: str | None, output: str | None) -> None:
    """Frames per second of EXPORT_DIR on the video file SOURCE: the model alone beside the whole pipeline (decode
    → pre-processing → inference → post-processing/drawing → encoding, as `predict --source` runs it), where the
    time goes per stage, and whether memory stays flat over a looped run."""
    from ..artifacts import read_manifest
    from ..bench.render import check_report_folder, write_report
    from ..video.bench import bench_video, video_report

    folder = Path(output or Path("bench") / f"{Path(export_dir).name}-video")
    check_report_folder(folder)
    read_manifest(export_dir, verify=True, require_signature=require_signature)
    with progress_line() as progress:
        progress(f"{Path(source).name} through {Path(export_dir).name}")
        result = bench_video(export_dir, source, threads=threads, repeats=repeats,
                             memory_frames=None if no_memory else tuple(memory_frames))
    _report_done(video_report(result), write_report(video_report(result), folder))


@bench.command("reference")
def reference_command() -> None:
    """The published figures the reports compare against (device, engine, precision and batch per row)."""
    Console().print(reference_table())


@bench.command("comparisons")
def comparisons_command() -> None:
    """The paper's comparison tables, headline claims and competitors, and whether each is measurable here."""
    from .output import comparisons_table

    Console(width=200).print(comparisons_table())
