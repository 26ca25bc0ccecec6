"""``evit-deploy device-bundle``: an export as a self-contained folder for a phone (adb + LiteRT benchmark_model /
onnxruntime_perf_test) or a Jetson (trtexec), with golden inputs and PyTorch reference outputs."""

from __future__ import annotations

from collections.abc import Callable

import click
from rich.console import Console

from ..device.settings import DEVICES, DeviceSettings
from .options import weights_opt
from .output import RichSteps
from .sign_cmds import require_signature_option

DEFAULTS = DeviceSettings()


def device_options(f: Callable) -> Callable:
    """The device-run settings ``device-bundle`` and ``bench adb`` share."""
    for decorator in reversed([
        click.option("--threads", default=DEFAULTS.threads, show_default=True, type=click.IntRange(min=1),
                     help="Phone: inference threads."),
        click.option("--runs", default=DEFAULTS.runs, show_default=True, type=click.IntRange(min=1),
                     help="Timed inferences (benchmark_model --num_runs, perf_test -r, trtexec --iterations)."),
        click.option("--warmup", default=DEFAULTS.warmup_runs, show_default=True, type=click.IntRange(min=0),
                     help="Phone: warm-up inferences (benchmark_model --warmup_runs)."),
        click.option("--taskset", metavar="MASK", help="Pin the phone's timing run to the cores of this hex mask "
                     "(its big cores, e.g. f0 = cores 4-7) with taskset."),
        click.option("--op-profiling", is_flag=True, help="Phone: per-op profile (benchmark_model "
                     "--enable_op_profiling, written as CSV)."),
        click.option("--no-xnnpack", is_flag=True, help="Phone: run LiteRT's built-in kernels (--use_xnnpack=false) "
                     "or ONNX Runtime's CPU provider instead of XNNPACK."),
        click.option("--device-dir", default=DEFAULTS.device_dir, show_default=True,
                     help="Phone: working folder on the device."),
    ]):
        f = decorator(f)
    return f


def settings_from(threads: int, runs: int, warmup: int, warmup_ms: int, taskset: str | None, op_profiling: bool,
                  no_xnnpack: bool, device_dir: str) -> DeviceSettings:
    return DeviceSettings(threads=threads, runs=runs, warmup_runs=warmup, warmup_ms=warmup_ms, xnnpack=not no_xnnpack,
                          op_profiling=op_profiling, taskset=taskset, device_dir=device_dir).check()


@click.command("device-bundle")
@click.argument("export_dir", type=click.Path(file_okay=False))
@click.option("--device", "-d", required=True, type=click.Choice(list(DEVICES)),
              help="android: adb + LiteRT benchmark_model (.tflite) or onnxruntime_perf_test (.ort); jetson: trtexec.")
@click.option("--output", "-o", type=click.Path(file_okay=False),
              help="Bundle folder (default: ./device-bundles/<export>-<device>/).")
@weights_opt("It makes the PyTorch reference outputs.")
@click.option("--warmup-ms", default=DEFAULTS.warmup_ms, show_default=True, type=click.IntRange(min=0),
              help="Jetson: trtexec --warmUp in milliseconds.")
@device_options
@click.option("--force", is_flag=True, help="Move an existing output folder that is not a bundle aside (kept).")
@require_signature_option
def device_bundle(export_dir: str, device: str, output: str | None, weights: str | None, threads: int, runs: int,
                  warmup: int, warmup_ms: int, taskset: str | None, op_profiling: bool, no_xnnpack: bool,
                  device_dir: str, force: bool, require_signature: str | None) -> None:
    """Write a self-contained bundle of EXPORT_DIR for a device that does not run Python: the artifact, golden
    inputs (the export's validation photos and noise, pre-processed as its validation did; raw .bin and .npy),
    PyTorch's outputs on them, run.sh with the exact command lines, a README and bundle.json (settings and the
    sha256 of every file).

    After running it on the device: evit-deploy bench import results --bundle BUNDLE --device-name "..."
    """
    from ..device.bundle import make_bundle

    settings = settings_from(threads, runs, warmup, warmup_ms, taskset, op_profiling, no_xnnpack, device_dir)
    folder = make_bundle(export_dir, device, output, settings, weights, force, RichSteps(), require_signature)
    console = Console()
    console.print(f"[bold green]bundle[/] {folder}: see {folder}/README.md, then run {folder}/run.sh "
                  f"{'over adb' if device == 'android' else 'on the Jetson'}")
    console.print(f"import: evit-deploy bench import {folder}/results --bundle {folder} --device-name \"...\"")

