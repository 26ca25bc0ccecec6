"""Builds modules from model cards: one registered builder per task, no per-name branching."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from functools import cache

import torch
from torch import nn

from ..nn.backbones import build_backbone
from ..nn.heads import ClsHead, SamNeck, SegHead
from ..nn.layers import set_norm_eps
from ..nn.models import EfficientViTCls, EfficientViTSam, EfficientViTSamImageEncoder, EfficientViTSeg
from ..nn.sam_decoder import build_sam_mask_decoder, build_sam_prompt_encoder
from .cards import ModelCard, all_cards, get_card

TASK_BUILDERS: dict[str, Callable[[ModelCard], nn.Module]] = {}
RANDOM_WEIGHTS_SEED = 0


class RandomWeightsWarning(UserWarning):
    """A model was built without a checkpoint: its outputs are meaningless."""


def register_task(task: str) -> Callable[[Callable[[ModelCard], nn.Module]], Callable[[ModelCard], nn.Module]]:
    def decorator(fn: Callable[[ModelCard], nn.Module]) -> Callable[[ModelCard], nn.Module]:
        TASK_BUILDERS[task] = fn
        return fn

    return decorator


def _feature_channels(backbone: nn.Module, feature_ids: list[str]) -> list[int]:
    return [backbone.width_list[int(fid.removeprefix("stage"))] for fid in feature_ids]


@register_task("cls")
def _build_cls(card: ModelCard) -> nn.Module:
    backbone = build_backbone(card.backbone, card.act)
    head = ClsHead(backbone.width_list[-1], card.head["widths"], card.num_classes, card.act)
    return EfficientViTCls(backbone, head)


@register_task("seg")
def _build_seg(card: ModelCard) -> nn.Module:
    backbone = build_backbone(card.backbone, card.act)
    h = card.head
    head = SegHead(
        h["feature_ids"], _feature_channels(backbone, h["feature_ids"]), h["strides"], h["width"], h["depth"],
        h["middle"], h["expand_ratio"], h.get("final_expand"), card.num_classes, card.act,
    )
    return EfficientViTSeg(backbone, head)


@register_task("sam")
def _build_sam(card: ModelCard) -> nn.Module:
    backbone = build_backbone(card.backbone, card.act)
    h = card.head
    neck = SamNeck(
        h["feature_ids"], _feature_channels(backbone, h["feature_ids"]), h["width"], h["depth"],
        h["expand_ratio"], h["out_channels"], act=card.act,
    )
    encoder = EfficientViTSamImageEncoder(backbone, neck, h["out_channels"])
    return EfficientViTSam(encoder, build_sam_prompt_encoder(), build_sam_mask_decoder(), card.image_size)


def build_model(card: ModelCard) -> nn.Module:
    """The module of a card in eval mode, with the family's norm eps applied (default init weights)."""
    model = TASK_BUILDERS[card.task](card)
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
