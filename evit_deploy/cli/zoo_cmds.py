"""``evit-deploy models`` and ``evit-deploy info``."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ..tasks import task_names, task_spec
from ..zoo import get_card, list_models
from ..zoo.stats import model_stats

ACCURACY_FIELDS = {"top1": "top-1 %", "miou": "mIoU %", "coco_map": "COCO mAP"}


def _accuracy(published: dict) -> str:
    for key, label in ACCURACY_FIELDS.items():
        if key in published:
            return f"{published[key]:g} {label}"
    return "-"


def _row(name: str) -> dict:
    card = get_card(name)
    stats = model_stats(name)
    return {
        "name": name,
        "task": card.task,
        "dataset": card.dataset,
        "input_size": list(card.input_size),
        "params": stats.params,
        "macs": stats.macs,
        "published": card.published,
        "checkpoint": card.checkpoint,
    }


def zoo_rows(task: str | None = None, show_progress: bool = True) -> list[dict]:
    """One dict per zoo model (counting MACs shows a progress bar the first time)."""
    names = list_models(task)
    with Progress(console=Console(stderr=True), transient=True, disable=not show_progress) as progress:
        job = progress.add_task("counting MACs", total=len(names))
        rows = []
        for name in names:
            rows.append(_row(name))
            progress.advance(job)
    return rows


def zoo_table(rows: list[dict]) -> Table:
    table = Table(title=f"EfficientViT model zoo ({len(rows)} models)")
    table.add_column("name", no_wrap=True)
    for col, justify in [("task", "left"), ("input", "right"), ("params (M)", "right"), ("MACs (G)", "right"),
                         ("published", "right"), ("checkpoint", "left")]:
        table.add_column(col, justify=justify)
    for r in rows:
        table.add_row(
            r["name"], r["task"], "x".join(map(str, r["input_size"])), f"{r['params'] / 1e6:.2f}",
            f"{r['macs'] / 1e9:.2f}", _accuracy(r["published"]), r["checkpoint"],
        )
    return table


@click.command()
@click.option("--task", type=click.Choice(task_names()), help="Only models of this task.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models(task: str | None, as_json: bool) -> None:
    """List the model zoo: name, task, input size, params, MACs (counted), published accuracy."""
    rows = zoo_rows(task, show_progress=not as_json)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        Console().print(zoo_table(rows))


@click.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(model: str, as_json: bool) -> None:
    """Show the card of MODEL with its counted params and MACs."""
    card = get_card(model)
    stats = model_stats(model)
    data = card.to_dict() | {"params": stats.params, "macs": stats.macs}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table(title=model, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("task / dataset", f"{card.task} / {card.dataset}")
    table.add_row("family / arch", f"{card.family} / {card.arch} (card {card.source})")
    table.add_row("input size", "x".join(map(str, card.input_size)))
    if card.image_size:
        table.add_row("SAM frames", f"prompts/masks {card.image_size[0]}, encoder input {card.image_size[1]}")
    if card.num_classes:
        table.add_row("classes", f"{card.num_classes} ({card.class_names})")
    table.add_row("params", f"{stats.params:,} ({stats.params / 1e6:.2f} M)")
    table.add_row("MACs", f"{stats.macs / 1e9:.3f} G at {'x'.join(map(str, stats.input_size))}"
                  + ("" if (spec := task_spec(card.task)).measured == "whole model" else f" ({spec.measured})"))
    table.add_row("activation / norm eps", f"{card.act} / {card.norm_eps:g}")
    table.add_row("backbone", json.dumps(card.backbone))
    table.add_row("head", json.dumps(card.head))
    table.add_row("official checkpoint", card.checkpoint)
    table.add_row("published", ", ".join(f"{k}={v:g}" for k, v in card.published.items()) or "-")
    Console().print(table)

