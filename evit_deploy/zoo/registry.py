"""Builds modules from model cards: the card's task spec builds it (:mod:`evit_deploy.tasks`), no per-name branching."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from functools import cache

import torch
from torch import nn

from ..nn.layers import set_norm_eps
from ..tasks import task_spec
from .cards import ModelCard, all_cards, get_card

RANDOM_WEIGHTS_SEED = 0


class RandomWeightsWarning(UserWarning):
    """A model was built without a checkpoint: its outputs are meaningless."""


def build_model(card: ModelCard) -> nn.Module:
    """The module of a card in eval mode, with the family's norm eps applied (default init weights)."""
    model = task_spec(card.task).build(card)
    set_norm_eps(model, card.norm_eps)
    return model.eval()


def create_model(name: str, weights: str | os.PathLike[str] | None = None, ema: bool = False) -> nn.Module:
    """A zoo model on CPU, fp32, eval mode.

    ``weights``: an official checkpoint (``.pt``/``.pth`` state_dict or ``{"state_dict": ...}``) or a
    ``.safetensors`` file, loaded strictly and without unpickling code; ``ema`` loads its EMA weights. Without
    ``weights`` they are deterministic random values and a :class:`RandomWeightsWarning` names the file to pass.
    """
    from ..checkpoint import load_checkpoint_into

    card = get_card(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        model = build_model(card)
    if weights is None:
        warnings.warn(
            f"{name}: no weights given, using deterministic random weights (outputs are meaningless); "
            f"pass the official checkpoint {card.checkpoint}",
            RandomWeightsWarning,
            stacklevel=2,
        )
    else:
        load_checkpoint_into(model, weights, name, candidates=state_dict_signatures(), ema=ema)
    return model


@cache
def meta_model(name: str) -> nn.Module:
    """The module of a zoo name on the meta device: shapes only, no memory, built in milliseconds."""
    with torch.device("meta"):
        return build_model(get_card(name))


def state_dict_signatures() -> Iterator[tuple[str, dict[str, tuple[int, ...]]]]:
    """(name, {key: shape}) for every zoo model, to tell which model a foreign checkpoint belongs to."""
    for name in all_cards():
        yield name, {k: tuple(v.shape) for k, v in meta_model(name).state_dict().items()}
