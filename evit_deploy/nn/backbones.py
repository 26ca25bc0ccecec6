"""EfficientViT backbones: the B family and the L/XL ("large") family (docs/architecture.md §5).

Both return a feature dict: ``input``, ``stage0`` … ``stageK`` and ``stage_final``.
Backbone builders are registered by the ``type`` field of a model card's ``backbone`` section.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .blocks import DSConv, EfficientViTBlock, MBConv, build_local_block
from .layers import ConvLayer, OpSequential, ResidualBlock

BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        BACKBONES[name] = cls
        return cls

    return decorator


def build_backbone(config: dict[str, Any], act: str) -> nn.Module:
    """Build a backbone from a card's ``backbone`` section (``type`` picks the registered class)."""
    config = dict(config)
    return BACKBONES[config.pop("type")](act=act, **config)


def _residual(block: nn.Module, stride: int, in_channels: int, out_channels: int) -> ResidualBlock:
    """Identity shortcut only where the block keeps the shape."""
    keeps_shape = stride == 1 and in_channels == out_channels
    return ResidualBlock(block, nn.Identity() if keeps_shape else None)


class _StagedBackbone(nn.Module):
    width_list: list[int]

    def _stage_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def channels(self, feature_ids: list[str]) -> list[int]:
        """The widths of the named feature maps (``stage2``, ``stage3``, ...), for the heads that read them."""
        return [self.width_list[int(fid.removeprefix("stage"))] for fid in feature_ids]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"input": x}
        for i, stage in enumerate(self._stage_modules()):
            x = stage(x)
            out[f"stage{i}"] = x
        out["stage_final"] = x
        return out


@register_backbone("b")
class EfficientViTBackbone(_StagedBackbone):
    """B family: DSConv stem, two MBConv stages, two EfficientViT stages (Hardswish)."""

    def __init__(
        self, widths: Sequence[int], depths: Sequence[int], dim: int = 32, expand_ratio: float = 4,
        act: str = "hswish",
    ) -> None:
        super().__init__()
        self.width_list = list(widths)
        stem: list[nn.Module] = [ConvLayer(3, widths[0], 3, 2, norm="bn2d", act=act)]
        stem += [
            ResidualBlock(DSConv(widths[0], widths[0], 1, 1, False, act), nn.Identity())
            for _ in range(depths[0])
        ]
        self.input_stem = OpSequential(stem)

        in_ch = widths[0]
        stages = []
        for w, d in zip(widths[1:3], depths[1:3]):
            ops = []
            for i in range(d):
                stride = 2 if i == 0 else 1
                ops.append(_residual(MBConv(in_ch, w, stride, expand_ratio, False, act), stride, in_ch, w))
                in_ch = w
            stages.append(OpSequential(ops))
        for w, d in zip(widths[3:], depths[3:]):
            ops = [ResidualBlock(MBConv(in_ch, w, 2, expand_ratio, True, act), None)]
            in_ch = w
            ops += [EfficientViTBlock(w, dim, expand_ratio, (5,), act) for _ in range(d)]
            stages.append(OpSequential(ops))
        self.stages = nn.ModuleList(stages)

    def _stage_modules(self) -> list[nn.Module]:
        return [self.input_stem, *self.stages]


@register_backbone("large")
class EfficientViTLargeBackbone(_StagedBackbone):
    """L and XL families: ResBlock stem, FusedMBConv/MBConv stages, EfficientViT stages (GELU-tanh).

    Each stage is described by a block type (``res``, ``fmb``, ``mb``, ``att`` or ``att@3``), an expand ratio
    and a fewer-norm flag. Stage entries (stride 2) use 4× the stage's expand ratio.
    """

    def __init__(
        self, widths: Sequence[int], depths: Sequence[int], blocks: Sequence[str], expand_ratios: Sequence[float],
        fewer_norm: Sequence[bool], dim: int = 32, act: str = "gelu",
    ) -> None:
        super().__init__()
        self.width_list = list(widths)
        stem: list[nn.Module] = [ConvLayer(3, widths[0], 3, 2, norm="bn2d", act=act)]
        stem += [
            ResidualBlock(
                build_local_block(blocks[0], widths[0], widths[0], 1, expand_ratios[0], fewer_norm[0], act),
                nn.Identity(),
            )
            for _ in range(depths[0])
        ]
        stages = [OpSequential(stem)]

        in_ch = widths[0]
        for k in range(1, len(widths)):
            kind, w, expand = blocks[k], widths[k], expand_ratios[k]
            entry_kind = kind if kind in ("mb", "fmb") else "mb"
            entry = build_local_block(entry_kind, in_ch, w, 2, expand * 4, fewer_norm[k], act)
            ops: list[nn.Module] = [ResidualBlock(entry, None)]
            in_ch = w
            for _ in range(depths[k]):
                if kind.startswith("att"):
                    scales = (3,) if kind == "att@3" else (5,)
                    ops.append(EfficientViTBlock(w, dim, expand, scales, act))
                else:
                    local = build_local_block(kind, w, w, 1, expand, fewer_norm[k], act)
                    ops.append(ResidualBlock(local, nn.Identity()))
            stages.append(OpSequential(ops))
        self.stages = nn.ModuleList(stages)

    def _stage_modules(self) -> list[nn.Module]:
        return list(self.stages)
