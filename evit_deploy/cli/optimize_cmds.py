"""``evit-deploy optimize``: the fastest export of a model for this machine within an accuracy budget, found by
measurement (export profiles' search spaces × thread counts × runtime options; successive halving; the full
measurement protocol for the finalists)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import click
from rich.console import Console

from ..errors import EvitError
from .options import (
    PROTOCOL,
    block_s_option,
    check_imgsz,
    ema_option,
    imgsz_option,
    min_blocks_option,
    no_native_option,
    output_option,
    protocol_from,
    threads_opt,
    warmup_s_option,
    weights_option,
)
from .output import RichSteps, progress_line, results_table

DEVICES = ("host", "android", "jetson")
OBJECTIVES = ("latency", "throughput")
SECONDS_PER_GMAC_EXPORT = 6.0  # rough cost of one export on 2 cores, for the budget check before any work
EXPORT_FLOOR_S = 10.0


@click.command()
@click.argument("model")
@click.option("--device", default="host", show_default=True, type=click.Choice(DEVICES),
              help="Where the winner will run. host: this machine (every CPU target it can run is searched and timed "
                   "here). android, jetson: the device's targets are exported and checked here, and every export "
                   "within --max-drop becomes a device bundle; `bench import` of what the device measured names the "
                   "winner.")
@click.option("--targets", help="Only these targets, comma-separated (default: cpu-ort, cpu-openvino, "
                                "mobile-cpu-tflite, mobile-cpu-ort).")
@click.option("--max-drop", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Accuracy points a candidate may lose against PyTorch (official metric with --eval, else "
                   "agreement on the calibration images).")
@click.option("--eval", "eval_dir", type=click.Path(exists=True),
              help="A dataset folder: accuracy by `evit-deploy eval`'s official protocol (see `eval --help`).")
@click.option("--eval-limit", type=click.IntRange(min=1), help="With --eval: the first N images only.")
@click.option("--budget-s", default=900.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds for the whole search: exports take at most half; what would not fit is skipped, "
                   "named.")
@click.option("--objective", default="latency", show_default=True, type=click.Choice(OBJECTIVES),
              help="latency: ms per call at --batch (1); throughput: images/s at --batch (default 8).")
@click.option("--batch", type=click.IntRange(min=1), help="Batch of every call (default: 1, throughput: 8).")
@imgsz_option
@weights_option
@ema_option
@threads_opt("every core", also="The finalists' and the reference's; the screen tries 1 .. every core.")
@click.option("--finalists", default=3, show_default=True, type=click.IntRange(min=1),
              help="Candidates timed by the full protocol beside the reference.")
@click.option("--ci", "ci_pct", default=PROTOCOL.ci_pct, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="The finalists are settled when every median's 95% CI is within ± this many %.")
@block_s_option
@min_blocks_option
@warmup_s_option
@no_native_option
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False),
              help="The search cache (exports and screen figures; default: ~/.cache/evit-deploy/optimize).")
@click.option("--force", is_flag=True, help="Move an -o folder that is not an optimize output aside (kept, renamed).")
@output_option("./optimize/<model>-<device>/")
def optimize(model: str, device: str, targets: str | None, max_drop: float, eval_dir: str | None,
             eval_limit: int | None, budget_s: float, objective: str, batch: int | None, imgsz: tuple[int, ...],
             weights: str | None, ema: bool, threads: int | None, finalists: int, ci_pct: float, block_s: float,
             min_blocks: int, warmup_s: float, no_native: bool, cache_dir: str | None, force: bool,
             output: str | None) -> None:
    """Find the fastest export of MODEL for this machine within --max-drop points of accuracy.

    \b
    Searched (declared per target in export_profiles/search/<target>.yaml): every CPU target this machine runs
    (cpu-ort, cpu-openvino, mobile-cpu-tflite, mobile-cpu-ort) x every precision each offers (fp32, bf16 and int8
    with its float parts in bf16 where the CPU has bf16, int8 with and without the accuracy-aware fallback, TFLite
    fp16 and dynamic int8) x static vs dynamic batch axis x threads 1..cores x the runtime options that matter
    (ONNX Runtime spinning and graph level, OpenVINO latency/throughput hint, LiteRT XNNPACK).

    Exports are validated by their gate and cached; a short screen ranks every candidate in its own worker process
    (successive halving: the best third of the exports get the runtime-option round); the finalists and the
    default cpu-openvino export are timed together by the full protocol (--block-s, --min-blocks, --ci, --warmup-s
    as in `bench run`), the native tools beside them. Writes the
    report (every trial; the Pareto front of latency and accuracy drop) and the winner as an export folder that
    predict, serve, triton and bench run with the chosen settings. Ctrl-C keeps every finished trial in the cache;
    a rerun resumes.
    """
    from ..export.request import ExportRequest, preflight
    from ..files import check_replaceable
    from ..optimize.device import DEVICE_TARGETS
    from ..optimize.exports import SearchInputs
    from ..optimize.output import OPTIMIZE_OUTPUT, build_report, write_output
    from ..optimize.search import OptimizeSettings, run_search
    from ..optimize.space import HOST_TARGETS, load_space

    size = check_imgsz(imgsz)
    allowed = HOST_TARGETS if device == "host" else DEVICE_TARGETS[device]
    chosen = tuple(t.strip() for t in targets.split(",") if t.strip()) if targets else allowed
    unknown = [t for t in chosen if t not in allowed]
    if unknown:
        raise EvitError(f"optimize --device {device} searches {', '.join(allowed)}; not '{unknown[0]}'")
    resolved = preflight(ExportRequest(model, chosen[0], weights, size, ema=ema))  # unknown model, bad weights
    batch = batch or (8 if objective == "throughput" else 1)
    out = Path(output or Path("optimize") / f"{model}-{device}")
    check_replaceable(out, OPTIMIZE_OUTPUT, force)
    searchable = _runtimes_present(chosen, load_space) if device == "host" else [(t, "") for t in chosen]
    needed = _screen_cost(model, resolved.input_size, searchable)
    if budget_s < needed:
        raise EvitError(f"--budget-s {budget_s:g} is too small for even the screen: the exports alone need about "
                        f"{needed:.0f} s here (give --budget-s {2 * needed:.0f} or more, or fewer --targets)")
    protocol = protocol_from(threads, block_s, min_blocks, ci_pct, PROTOCOL.budget_s, warmup_s, no_native)
    settings = OptimizeSettings(model, tuple(t for t, reason in searchable if not reason), max_drop, objective, batch,
                                budget_s, finalists, protocol)
    cache = Path(cache_dir) if cache_dir else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / \
        "evit-deploy" / "optimize"
    inputs = SearchInputs(model, weights, ema, size and (size[0], size[-1]), max_drop, eval_dir, eval_limit, cache)
    if eval_dir:
        from ..eval.datasets import open_dataset

        open_dataset(eval_dir)  # a layout mistake fails before the search's minutes of work
    if device != "host":
        _device_search(settings, inputs, device, weights, out, force)
        return
    with progress_line() as progress:
        result = run_search(settings, inputs, progress, RichSteps())
    result.skipped += [reason for _, reason in searchable if reason]
    accuracy = next((o.accuracy_source for o in result.exports if o.accuracy_source), "")
    report = build_report(result, settings, accuracy)
    write_output(result, settings, report, out, force)
    console = Console()
    finals = copy.copy(report)
    finals.rows = [r for r in report.rows if r.extra.get("stage", "").startswith("final")]
    console.print(results_table(finals))
    for note in report.notes:
        console.print(note, markup=False, soft_wrap=True)
    for line in result.skipped:
        console.print(f"skipped: {line}", markup=False, soft_wrap=True)
    console.print(f"winner: {out / 'winner'}; report: {out}/report.md, report.json, report.html", markup=False)


def _device_search(settings, inputs, device: str, weights: str | None, out: Path, force: bool) -> None:  # noqa: ANN001
    """--device android|jetson: exports and accuracy here, one bundle per candidate for the device."""
    import time

    from ..device.settings import DeviceSettings
    from ..optimize.device import write_device_search
    from ..optimize.search import make_exports

    with progress_line() as progress:
        _, made, skipped = make_exports(settings, inputs, progress, RichSteps(), time.perf_counter())
    write_device_search([o for _, o in made], device, settings.max_drop, out, DeviceSettings(), weights, RichSteps(),
                        settings.model, force)
    console = Console()
    for line in skipped:
        console.print(f"skipped: {line}", markup=False, soft_wrap=True)
    console.print(f"bundles for the {device}: {out}; run {out}/run.sh there (see each bundle's README.md), then "
                  f"`evit-deploy bench import {out} --bundle {out} --device-name \"...\"` names the winner",
                  markup=False, soft_wrap=True)


def _runtimes_present(targets: tuple[str, ...], load_space) -> list[tuple[str, str]]:  # noqa: ANN001
    """(target, "") for each target whose runtime is installed; (target, reason) for the others (skipped, named)."""
    from ..artifacts import FORMATS
    from ..errors import MissingDependency
    from ..export.profiles import load_profile
    from ..runtime import require_runtime

    out = []
    for target in targets:
        load_space(target)  # a target without a search space is one line now
        profile = load_profile(target)
        try:
            for fmt in profile.formats:
                require_runtime("artifact" + FORMATS[fmt].suffixes[0])  # by suffix; nothing is opened
        except MissingDependency as exc:
            out.append((target, f"{target}: not searched: {exc}"))
            continue
        out.append((target, ""))
    present = [(t, r) for t, r in out if not r]
    if not present:
        raise EvitError("no target can be searched here: " + "; ".join(r for _, r in out))
    return out


def _screen_cost(model: str, size: tuple[int, int], targets: list[tuple[str, str]]) -> float:
    """Rough seconds the exports of a search take (from the model's MACs), for refusing a hopeless budget."""
    from ..optimize.space import load_space
    from ..zoo.stats import model_stats

    gmacs = model_stats(model, size).macs / 1e9
    exports = sum(len(load_space(t).exports) * len(load_space(t).shapes) for t, reason in targets if not reason)
    return exports * (EXPORT_FLOOR_S + SECONDS_PER_GMAC_EXPORT * gmacs) / 2
