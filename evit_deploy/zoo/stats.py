"""Parameter and MAC counts of zoo models, counted on the meta device (no memory, no real compute).

MACs = FLOPs / 2 as counted by ``torch.utils.flop_counter`` (convolutions and matrix products), of the graph the
task's latency figures time (SAM: the image encoder at its input size); parameters count the whole model.
Counting a large model at full resolution takes a second or so (the whole zoo: half a minute on 2 cores), so the
counts at each card's input size ship with the cards (``models/counts.json``, written by ``python -m
evit_deploy.zoo.stats``; ``tests/test_zoo.py`` checks every one against a fresh count), and other sizes are cached per
package version in the user cache folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from .._paths import data_dir
from ..files import atomic_write
from ..tasks import task_spec
from .cards import all_cards, get_card
from .registry import meta_model


@dataclass(frozen=True)
class ModelStats:
    params: int
    macs: int
    input_size: tuple[int, int]


def _cache_file() -> Path:
    from .. import __version__

    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "evit-deploy" / f"model-stats-{__version__}-torch{torch.__version__}.json"


def count_macs(name: str, input_size: tuple[int, int] | None = None, batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass of the task's timed graph (SAM: the image encoder)."""
    card = get_card(name)
    size = tuple(input_size or card.input_size)
    spec = task_spec(card.task)
    graph = spec.graph_module(meta_model(name), spec.timed_role)  # the graph latency figures time
    x = torch.empty(batch, 3, *size, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        graph(x)
    return counter.get_total_flops() // 2


def count_params(name: str) -> int:
    return sum(p.numel() for p in meta_model(name).parameters())


SHIPPED = "counts.json"  # in the models data folder: {name: {input_size, params, macs}} at each card's size


@cache
def shipped_counts() -> dict[str, dict]:
    """The counts that ship with the cards (empty if the file is missing), read once per process."""
    try:
        return json.loads((data_dir("models") / SHIPPED).read_text())["models"]
    except (OSError, ValueError, KeyError):
        return {}


def write_shipped_counts() -> Path:
    """Count every card at its input size and write ``models/counts.json`` (what ``python -m`` runs)."""
    counts = {card.name: {"input_size": list(card.input_size), "params": count_params(card.name),
                          "macs": count_macs(card.name)} for card in all_cards().values()}
    path = data_dir("models") / SHIPPED
    rows = ",\n".join(f"  {json.dumps(name)}: {json.dumps(counts[name], sort_keys=True)}" for name in sorted(counts))
    atomic_write(path, f'{{"generated_by": "python -m evit_deploy.zoo.stats", "torch": "{torch.__version__}",\n'
                       f' "models": {{\n{rows}\n }}\n}}\n')
    shipped_counts.cache_clear()
    return path


def model_stats(name: str, input_size: tuple[int, int] | None = None) -> ModelStats:
    """Params and MACs at ``input_size`` (default: the card's): shipped for the card's size, else counted once and
    cached across runs."""
    size = tuple(input_size or get_card(name).input_size)
    shipped = shipped_counts().get(name)
    if shipped and tuple(shipped["input_size"]) == size:
        return ModelStats(int(shipped["params"]), int(shipped["macs"]), size)
    key = f"{name}@{size[0]}x{size[1]}"
    path = _cache_file()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        cache[key] = {"params": count_params(name), "macs": count_macs(name, size)}
        try:
            atomic_write(path, json.dumps(cache, indent=0, sort_keys=True))
        except OSError:
            pass  # a read-only home only costs a recount next time
    entry = cache[key]
    return ModelStats(int(entry["params"]), int(entry["macs"]), size)


if __name__ == "__main__":
    print(f"wrote {write_shipped_counts()}")
