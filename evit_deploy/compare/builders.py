"""How competitors are built, one registered builder per route (the cards name it): random weights, offline.

Each builder turns a card's ``recipe`` and a :class:`Target` (classes, input size) into a single-input image graph
(``[B,3,H,W]`` → one tensor) with its own I/O names, and says which module the paper's parameter count covers.
Routes: a package's own implementation (transformers: SegFormer, ConvNeXt, Swin, MobileViTV2; segment-anything:
SAM; timm/fastervit: EfficientNetV2, CoAtNet, FasterViT), else the architecture written here from its paper and
authors' configs (``written``: SegNeXt, DeepLabV3+ MobileNetV2-D8; ``written-sam``: the MobileSAM, EdgeSAM and
EfficientSAM image encoders; :mod:`evit_deploy.compare.nets`). Packages are imported lazily through
:func:`evit_deploy.optional.require`: a missing one is a one-line error naming the extra (``[compare]``:
transformers, segment-anything; ``[compare-timm]``: timm, fastervit).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache, partial
from types import ModuleType
from typing import Any

from torch import nn

from ..errors import EvitError, MissingDependency, one_line
from ..optional import require
from .cards import TORCHVISION_NOTE, CompetitorCard


@dataclass(frozen=True)
class Target:
    """What a built graph must fit: the table's class count and the input size (H, W)."""

    num_classes: int | None
    input_size: tuple[int, int]


@dataclass(frozen=True)
class Builder:
    """A package's builder. ``load`` imports what it needs (raising the one-line MissingDependency); ``build``
    returns the exported graph; ``counted`` the module whose parameters the paper counts (default: the graph);
    ``meta``: it builds on the meta device (else params and MACs are counted on the CPU)."""

    package: str
    load: Callable[[], object]
    build: Callable[[dict[str, Any], Target], nn.Module]
    input_name: str = "input"
    output_name: str = "logits"
    role: str = "model"
    counted: Callable[[dict[str, Any], Target], nn.Module] | None = None
    meta: bool = True
    graph_note: str = ""


BUILDERS: dict[str, Builder] = {}


def register_builder(builder: Builder) -> Builder:
    BUILDERS[builder.package] = builder
    return builder


@contextlib.contextmanager
def _quiet_imports() -> Iterator[None]:
    """Silence what heavy packages log while importing (torchao's optional kernels, torch's pytree notices)."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch", "transformers")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _import(module: str, purpose: str, note: str = "") -> ModuleType:
    try:
        with _quiet_imports():
            return require(module, purpose)
    except MissingDependency as exc:
        raise MissingDependency(f"{exc}; {note}" if note else str(exc)) from None


def builder_for(card: CompetitorCard) -> Builder:
    """The card's builder, its packages imported (a one-line MissingDependency naming the extra otherwise)."""
    if card.builder is None:
        raise EvitError(f"{card.name} is not measured: {card.unavailable}")
    builder = BUILDERS.get(card.builder)
    if builder is None:
        raise EvitError(f"{card.name}: unknown builder '{card.builder}' (known: {', '.join(BUILDERS)})")
    builder.load()
    return builder


# ------------------------------------------------------------------------------------------- transformers


class HfLogits(nn.Module):
    """Calls a Hugging Face model with ``pixel_values`` and returns its ``logits``: one tensor, for export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):  # a plain tensor in and out
        return self.model(pixel_values=x).logits


@cache
def _segformer_classes() -> tuple[type, type]:
    """(SegformerConfig, SegformerForSemanticSegmentation); transformers imports them on first attribute access."""
    transformers = _import("transformers", "the SegFormer builder")
    with _quiet_imports():
        return transformers.SegformerConfig, transformers.SegformerForSemanticSegmentation


def _segformer(recipe: dict[str, Any], target: Target) -> nn.Module:
    config, model = _segformer_classes()
    return HfLogits(model(config(**recipe, num_labels=target.num_classes)))


register_builder(Builder(
    "transformers-segformer", _segformer_classes, _segformer, input_name="pixel_values",
    graph_note="SegformerForSemanticSegmentation from a SegformerConfig (offline); logits at H/4 x W/4",
))


def _transformers() -> ModuleType:
    return _import("transformers", "the transformers image-classification builder")


def _hf_image(recipe: dict[str, Any], target: Target) -> nn.Module:
    """``recipe``: ``config`` and ``model`` (class names in transformers) and the config's ``args``."""
    transformers = _transformers()
    with _quiet_imports():
        config, model = getattr(transformers, recipe["config"]), getattr(transformers, recipe["model"])
    return HfLogits(model(config(**recipe.get("args", {}), num_labels=target.num_classes)))


register_builder(Builder(
    "transformers-image", _transformers, _hf_image, input_name="pixel_values",
    graph_note="a transformers image classifier built from its config (offline, no torchvision)",
))


# ------------------------------------------------------------------------------------------ segment-anything

SAM_MODELING = "_evit_segment_anything_modeling"


@cache
def sam_modeling() -> ModuleType:
    """``segment_anything.modeling`` without the package's ``__init__`` (it imports torchvision for the predictor
    and the automatic mask generator, which the image encoder does not need). Imported under a private name, so
    the user's own ``segment_anything`` import is untouched."""
    if "segment_anything.modeling" in sys.modules:
        return sys.modules["segment_anything.modeling"]
    try:
        spec = importlib.util.find_spec("segment_anything")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        require("segment_anything", "the SAM builder")  # raises the one-line error naming the extra
    locations = [f"{p}/modeling" for p in spec.submodule_search_locations]
    package = importlib.util.spec_from_file_location(SAM_MODELING, f"{locations[0]}/__init__.py",
                                                     submodule_search_locations=locations)
    module = importlib.util.module_from_spec(package)
    sys.modules[SAM_MODELING] = module
    try:
        package.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[SAM_MODELING]
        raise MissingDependency(f"SAM needs segment_anything.modeling, which cannot be imported "
                                f"({type(exc).__name__}: {one_line(exc, 120)})") from None
    return module


def _sam_encoder(recipe: dict[str, Any], target: Target) -> nn.Module:
    import torch

    m = sam_modeling()
    return m.ImageEncoderViT(
        depth=recipe["depth"], embed_dim=recipe["embed_dim"], img_size=target.input_size[0],
        mlp_ratio=recipe["mlp_ratio"], norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=recipe["num_heads"], patch_size=recipe["patch_size"], qkv_bias=True, use_rel_pos=True,
        global_attn_indexes=tuple(recipe["global_attn_indexes"]), window_size=recipe["window_size"],
        out_chans=recipe["out_chans"],
    )


def _sam_whole(recipe: dict[str, Any], target: Target) -> nn.Module:
    """Encoder + prompt encoder + mask decoder (what the paper's SAM parameter count covers), as in build_sam."""
    m = sam_modeling()
    side, dim = target.input_size[0], recipe["prompt_embed_dim"]
    grid = side // recipe["patch_size"]
    prompt = m.PromptEncoder(embed_dim=dim, image_embedding_size=(grid, grid), input_image_size=(side, side),
                             mask_in_chans=16)
    decoder = m.MaskDecoder(num_multimask_outputs=3, transformer=m.TwoWayTransformer(
        depth=2, embedding_dim=dim, mlp_dim=2048, num_heads=8), transformer_dim=dim, iou_head_depth=3,
        iou_head_hidden_dim=256)
    return nn.ModuleList([_sam_encoder(recipe, target), prompt, decoder])


register_builder(Builder(
    "segment-anything", sam_modeling, _sam_encoder, input_name="input_image",
    output_name="image_embeddings", role="encoder", counted=_sam_whole,
    graph_note="the image encoder (ImageEncoderViT) at the run's input size; the prompt decoder is not timed",
))


# ------------------------------------------------------------------------------------- written from the papers


def _no_package() -> None:
    """The written competitors need torch only."""


def _written_kwargs(recipe: dict[str, Any], target: Target | None) -> dict[str, Any]:
    kwargs = {k: v for k, v in recipe.items() if k != "arch"}
    if target is not None and target.num_classes is not None:
        kwargs["num_classes"] = target.num_classes
    return kwargs


def _written(recipe: dict[str, Any], target: Target) -> nn.Module:
    from . import nets

    return nets.build(recipe["arch"], **_written_kwargs(recipe, target))


def _written_counted(recipe: dict[str, Any], target: Target) -> nn.Module:
    from . import nets

    return nets.counted(recipe["arch"], **_written_kwargs(recipe, target))


register_builder(Builder("written", _no_package, _written, counted=_written_counted,
                         graph_note="written here from the paper and the authors' config (evit_deploy.compare.nets)"))
register_builder(Builder(
    "written-sam", _no_package, _written, input_name="input_image", output_name="image_embeddings", role="encoder",
    counted=_written_counted,
    graph_note="the image encoder, written here from the paper and the authors' config; the prompt decoder is not "
               "timed",
))


# ------------------------------------------------------------------------------------------- timm, fastervit


def _timm_package() -> ModuleType:
    return _import("timm", "the timm builder", TORCHVISION_NOTE)


def _fastervit_package() -> ModuleType:
    _timm_package()
    return _import("fastervit", "the FasterViT builder", TORCHVISION_NOTE)


def _timm(recipe: dict[str, Any], target: Target) -> nn.Module:
    return _timm_package().create_model(recipe["name"], pretrained=False, num_classes=target.num_classes)


def _fastervit(recipe: dict[str, Any], target: Target) -> nn.Module:
    return _fastervit_package().create_model(recipe["name"], pretrained=False, num_classes=target.num_classes)


register_builder(Builder("timm", _timm_package, _timm, graph_note="timm.create_model(name, pretrained=False)"))
register_builder(Builder("fastervit", _fastervit_package, _fastervit, meta=False,
                         graph_note="fastervit.create_model(name, pretrained=False)"))
