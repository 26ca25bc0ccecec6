"""``evit-deploy demo``: the built-in main job on a default model."""

from __future__ import annotations

import click
import torch
from rich.console import Console
from rich.table import Table

from ..processing import classification_input
from ..samples import SAMPLE_PHOTOS, sample_photo
from ..zoo import create_model, get_card
from ..zoo.labels import class_names
from .zoo_cmds import zoo_rows, zoo_table

DEFAULT_MODEL = "efficientvit-b1-r224"


@click.command()
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Classification model to run.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Official checkpoint (.pt or .safetensors).")
@click.option("--image", type=click.Path(dir_okay=False), help="Image file (default: a bundled sample photo).")
@click.option("--top", default=5, show_default=True, type=click.IntRange(1, 20), help="How many classes to show.")
def demo(model: str, weights: str | None, image: str | None, top: int) -> None:
    """List the zoo, then classify a photo with MODEL and print its top classes."""
    console = Console()
    card = get_card(model)
    if card.task != "cls":
        raise click.BadParameter(f"{model} is a {card.task} model; the demo runs a classifier", param_hint="--model")
    console.print(zoo_table(zoo_rows()))
    net = create_model(model, weights)
    source = image or f"scikit-image sample photo '{SAMPLE_PHOTOS[1]}'"
    x = classification_input(image or sample_photo(SAMPLE_PHOTOS[1]), card.input_size[0], card.crop_ratio or 0.95)
    with torch.inference_mode():
        probs = net(x).softmax(dim=-1)[0]
    names = class_names(card.class_names)
    table = Table(title=f"{model} on {source}" + ("" if weights else " (random weights: meaningless)"))
    table.add_column("rank", justify="right")
    table.add_column("class")
    table.add_column("probability", justify="right")
    values, indices = probs.topk(top)
    for rank, (p, i) in enumerate(zip(values.tolist(), indices.tolist()), start=1):
        table.add_row(str(rank), f"{names[i]} ({i})", f"{p:.4f}")
    console.print(table)
