"""``evit-deploy demo``: the main job on a built-in default — zoo, export, validate, benchmark, predict."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ..export import EXPORTERS, load_profile
from ..samples import SAMPLE_PHOTOS, sample_photo
from ..zoo import get_card
from .options import weights_option
from .output import RichSteps, progress_line, results_table
from .zoo_cmds import zoo_rows, zoo_table

DEFAULT_MODEL = "efficientvit-b1-r224"
DEMO_TARGETS = ("cpu-ort", "mobile-cpu-tflite")


def _available(target: str) -> bool:
    return all(fmt in EXPORTERS for fmt in load_profile(target).formats)


@click.command()
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Classification model to run.")
@weights_option
@click.option("--budget-s", default=30.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds of timed benchmark blocks per export.")
@click.option("--output", "-o", default="demo-output", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the exports and reports.")
def demo(model: str, weights: str | None, budget_s: float, output: str) -> None:
    """List the zoo, export MODEL for cpu-ort (and mobile-cpu-tflite when available), validate, benchmark
    it against PyTorch eager, and classify a sample photo with the exported model."""
    from ..bench.harness import BenchSettings, bench_export
    from ..bench.protocol import ProtocolSettings
    from ..bench.render import write_report
    from ..export import ExportRequest, preflight, run_export
    from ..predict import Predictor

    console = Console()
    card = get_card(model)
    if card.task != "cls":
        raise click.BadParameter(f"{model} is a {card.task} model; the demo runs a classifier", param_hint="--model")
    out = Path(output)
    for target in DEMO_TARGETS:  # bad input (a missing checkpoint, an output folder not ours) fails before any work
        preflight(ExportRequest(model, target, weights, output=str(out / f"{model}-{target}")))
    console.print(zoo_table(zoo_rows()))
    for target in DEMO_TARGETS:
        if not _available(target):
            console.print(f"[yellow]skipping {target}[/]: its exporter is not available in this version")
            continue
        console.rule(f"{model} → {target}")
        result = run_export(ExportRequest(model, target, weights, output=str(out / f"{model}-{target}")), RichSteps())
        with progress_line() as progress:
            report = bench_export(result.folder, BenchSettings(protocol=ProtocolSettings(budget_s=budget_s)), weights,
                                  progress=progress)
        folder = write_report(report, out / f"bench-{model}-{target}")
        console.print(results_table(report))
        console.print(f"reports: {folder}")

        photo = SAMPLE_PHOTOS[1]
        top = Predictor.from_export(result.folder)(sample_photo(photo), top_k=5)
        table = Table(title=f"{result.folder.name} on sample photo '{photo}'"
                      + ("" if weights else " (random weights: meaningless)"))
        for col in ("rank", "class", "probability"):
            table.add_column(col, justify="left" if col == "class" else "right")
        for rank, (i, name, p) in enumerate(zip(top.indices, top.labels, top.scores), start=1):
            table.add_row(str(rank), f"{name} ({i})", f"{p:.4f}")
        console.print(table)
