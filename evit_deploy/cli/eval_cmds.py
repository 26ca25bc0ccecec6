"""``evit-deploy eval``: accuracy of an export (every artifact, beside PyTorch) on the user's dataset."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from .options import ema_option, threads_opt, weights_opt
from .sign_cmds import require_signature_option

DATASET_KINDS = ("imagenet", "cityscapes", "ade20k", "coco")


@contextlib.contextmanager
def counting_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n=1: progress.advance(task, n)


@click.command("eval")
@click.argument("target")
@click.option("--data", required=True, type=click.Path(exists=True),
              help="The dataset folder (or a COCO instances_*.json), in the layout it ships in.")
@click.option("--dataset", type=click.Choice(DATASET_KINDS), help="The dataset kind (default: from the layout).")
@click.option("--labels", type=click.Path(dir_okay=False, exists=True),
              help="ImageNet as a flat folder: a file of 'filename,class_index' lines.")
@weights_opt("It builds the PyTorch reference row.")
@ema_option
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate the first N images (sorted by file name).")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1), help="Images per model run.")
@threads_opt()
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1),
              help="Threads decoding and pre-processing images ahead of the model runs.")
@click.option("--no-pytorch", is_flag=True, help="Evaluate the artifacts only (no PyTorch reference row).")
@click.option("--output", "-o", type=click.Path(file_okay=False), help="Report folder (default: ./eval/<name>/).")
@require_signature_option
def eval_command(target: str, data: str, dataset: str | None, labels: str | None, weights: str | None, ema: bool,
                 limit: int | None, batch: int, threads: int | None, workers: int, no_pytorch: bool,
                 output: str | None, require_signature: str | None) -> None:
    """Accuracy of TARGET (an export folder: each runnable artifact and PyTorch on the same images; or a zoo
    model name: PyTorch) on a dataset, with the official evaluation protocol: ImageNet top-1/top-5,
    Cityscapes/ADE20K mIoU, COCO box-prompted mIoU. Writes eval.json and eval.md.

    \b
    Layouts (as the datasets ship; nothing is downloaded):
      imagenet    val/n01440764/*.JPEG ... (class folders by WordNet id), or a flat folder with --labels
      cityscapes  leftImg8bit/val/<city>/*_leftImg8bit.png + gtFine/val/<city>/*_gtFine_labelIds.png
      ade20k      ADEChallengeData2016/images/validation/*.jpg + annotations/validation/*.png
      coco        annotations/instances_val2017.json + val2017/*.jpg (the ground-truth boxes are the prompts)
    """
    from rich.console import Console

    from ..eval.report import check_report_folder, summary_line, write_report
    from ..eval.runner import EvalSettings, evaluate

    folder = Path(output or Path("eval") / Path(target).name)
    check_report_folder(folder)
    settings = EvalSettings(data, dataset, labels, weights, ema, limit, batch, threads, workers, not no_pytorch,
                            require_signature)
    report = evaluate(target, settings, counting_bar)
    write_report(report, folder)
    console = Console()
    for result in report["results"]:
        console.print(summary_line(result, report["protocol"]["task"]), highlight=False)
    if report["published"]:
        console.print("published: " + ", ".join(f"{k} {v}" for k, v in report["published"].items()), highlight=False)
    for reason in report["skipped"]:
        console.print(f"[yellow]not evaluated[/]: {reason}")
    console.print(f"reports: {folder}/eval.md, eval.json")
