"""Options every command shares, declared once so a flag means the same everywhere (Polygraphy's argument groups):
the checkpoint, its EMA weights, threads, the target, the input size, batch sizes, the report folder, and the
measurement protocol of ``bench``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import click

from ..bench.protocol import ProtocolSettings

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
PROTOCOL = ProtocolSettings()


def _apply(*decorators: Decorator) -> Decorator:
    def apply(f: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


WEIGHTS_HELP = ("The model's checkpoint (official .pt/.pth/.safetensors, read safely: never code); for an export "
                "folder, the one it was made from (default: the one recorded beside the export, else the zoo's "
                "deterministic random weights).")
THREADS_HELP = "Threads of the runtime (and of PyTorch), at least 1."


def weights_opt(also: str = "") -> Decorator:
    """``--weights/-w``: one meaning everywhere; ``also``: what this command does with it."""
    return click.option("--weights", "-w", type=click.Path(dir_okay=False),
                        help=WEIGHTS_HELP + (f" {also}" if also else ""))


def threads_opt(default_text: str = "the export profile's setting", also: str = "") -> Decorator:
    """``--threads``: at least 1 everywhere (unset: ``default_text``)."""
    return click.option("--threads", type=click.IntRange(min=1), default=None,
                        help=f"{THREADS_HELP} Default: {default_text}." + (f" {also}" if also else ""))


weights_option = weights_opt()
ema_option = click.option("--ema", is_flag=True, help="Load the checkpoint's EMA weights (state_dict_ema / model_ema).")
threads_option = threads_opt("every core")
target_option = click.option("--target", "-t", default="cpu-ort", show_default=True,
                             help="Export profile: a name from `evit-deploy profiles` or a YAML file.")
imgsz_option = click.option("--imgsz", type=click.IntRange(min=1), multiple=True,
                            help="Input size: --imgsz H [W] (square if one value).")
batch_option = click.option("--batch", "batches", default="1", show_default=True,
                            help="Batch sizes, comma-separated (1,4,16).")


def output_option(default_text: str) -> Decorator:
    return click.option("--output", "-o", type=click.Path(file_okay=False),
                        help=f"Report folder (default: {default_text}); a folder holding files that are not a report "
                             "of ours is refused.")


block_s_option = click.option("--block-s", type=click.FloatRange(min=0, min_open=True), default=PROTOCOL.block_s,
                              show_default=True, help="Seconds of calls per block (blocks of the rows alternate).")
min_blocks_option = click.option("--min-blocks", type=click.IntRange(min=2), default=PROTOCOL.min_blocks,
                                 show_default=True, help="Blocks of each row before it may count as settled.")
warmup_s_option = click.option("--warmup-s", type=click.FloatRange(min=0), default=PROTOCOL.warmup.min_s,
                               show_default=True,
                               help="Seconds each backend warms up at least (then until its latency is steady).")
no_native_option = click.option("--no-native", is_flag=True,
                                help="Do not run the native benchmark tools beside the artifacts.")


def _protocol_options(budget_help: str) -> Decorator:
    return _apply(
        block_s_option,
        min_blocks_option,
        click.option("--ci", "ci_pct", type=click.FloatRange(min=0, min_open=True), default=PROTOCOL.ci_pct,
                     show_default=True, help="A row is settled when its median's 95% confidence interval is within "
                                             "± this many %."),
        click.option("--budget-s", type=click.FloatRange(min=0, min_open=True), default=PROTOCOL.budget_s,
                     show_default=True, help=budget_help),
        warmup_s_option,
        no_native_option,
    )


protocol_options = _protocol_options("Seconds of timed blocks at most (loading not counted); rows not settled by "
                                     "then are named.")
# compare / paper-table: an explicit --budget-s bounds the whole run (see cli.bench_cmds._run_budget)
run_budget_protocol_options = _protocol_options(
    "Seconds for the whole run when given (exports included: models estimated not to fit are skipped and named; "
    "the workers' starts, warm-ups and overhead calls are reserved and the timed blocks share what is left). Not "
    "given: no limit on exports, this default on the timed blocks.")


def protocol_from(threads: int | None, block_s: float, min_blocks: int, ci_pct: float, budget_s: float,
                  warmup_s: float, no_native: bool) -> ProtocolSettings:
    settings = ProtocolSettings(block_s=block_s, min_blocks=min_blocks, ci_pct=ci_pct, budget_s=budget_s,
                                warmup=replace(PROTOCOL.warmup, min_s=warmup_s), native=not no_native)
    if threads:
        settings.threads = threads
    return settings


def check_imgsz(imgsz: tuple[int, ...]) -> tuple[int, ...] | None:
    if len(imgsz) > 2:
        raise click.BadParameter("give at most two values (H and W)", param_hint="--imgsz")
    return imgsz or None
