"""Task heads: classifier head, segmentation head and SAM neck (docs/architecture.md §6)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .blocks import build_local_block
from .layers import ConvLayer, DAGBlock, LinearLayer, OpSequential, ResidualBlock, UpSampleLayer

MIDDLE_BLOCKS = {"mbconv": "mb", "fmbconv": "fmb"}


class ClsHead(OpSequential):
    """1×1 conv → global average pool → Linear + LayerNorm + act → Linear classifier."""

    def __init__(self, in_channels: int, widths: Sequence[int], num_classes: int = 1000, act: str = "hswish"):
        super().__init__(
            [
                ConvLayer(in_channels, widths[0], 1, norm="bn2d", act=act),
                nn.AdaptiveAvgPool2d(output_size=1),
                LinearLayer(widths[0], widths[1], use_bias=False, norm="ln", act=act),
                LinearLayer(widths[1], num_classes, use_bias=True, norm=None, act=None),
            ]
        )

    def forward(self, feature_dict: dict[str, torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        return super().forward(feature_dict["stage_final"])


def _fpn_inputs(
    feature_ids: Sequence[str], in_channels: Sequence[int], strides: Sequence[int], width: int,
    head_stride: int | None, size: Sequence[int] | None,
) -> dict[str, nn.Module]:
    """Per-feature 1×1 conv + BN, then bicubic resize to the head's stride (or a fixed size)."""
    ops: dict[str, nn.Module] = {}
    for fid, channels, stride in zip(feature_ids, in_channels, strides):
        conv = ConvLayer(channels, width, 1, norm="bn2d", act=None)
        if size is not None:
            ops[fid] = OpSequential([conv, UpSampleLayer(size=size)])
        elif stride == head_stride:
            ops[fid] = conv
        else:
            ops[fid] = OpSequential([conv, UpSampleLayer(factor=stride // head_stride)])
    return ops


def _middle(kind: str, width: int, depth: int, expand_ratio: float, act: str) -> OpSequential:
    block = MIDDLE_BLOCKS[kind]
    return OpSequential(
        [
            ResidualBlock(build_local_block(block, width, width, 1, expand_ratio, False, act), nn.Identity())
            for _ in range(depth)
        ]
    )


class SegHead(DAGBlock):
    """FPN-style fusion of stride 32/16/8 features into stride-8 logits (output key ``segout``)."""

    def __init__(
        self, feature_ids: Sequence[str], in_channels: Sequence[int], strides: Sequence[int], width: int,
        depth: int, middle: str, expand_ratio: float, final_expand: float | None, num_classes: int, act: str,
        head_stride: int = 8,
    ) -> None:
        inputs = _fpn_inputs(feature_ids, in_channels, strides, width, head_stride, None)
        outputs = OpSequential(
            [
                ConvLayer(width, round(width * final_expand), 1, norm="bn2d", act=act) if final_expand else None,
                ConvLayer(
                    round(width * (final_expand or 1)), num_classes, 1, use_bias=True, norm=None, act=None
                ),
            ]
        )
        super().__init__(inputs, _middle(middle, width, depth, expand_ratio, act), {"segout": outputs})


class SamNeck(DAGBlock):
    """Fuses three backbone features at a fixed 64×64 grid into the 256-channel SAM embedding."""

    def __init__(
        self, feature_ids: Sequence[str], in_channels: Sequence[int], width: int, depth: int,
        expand_ratio: float, out_channels: int = 256, size: Sequence[int] = (64, 64), act: str = "gelu",
    ) -> None:
        inputs = _fpn_inputs(feature_ids, in_channels, [0] * len(feature_ids), width, None, size)
        outputs = OpSequential([ConvLayer(width, out_channels, 1, use_bias=True, norm=None, act=None)])
        super().__init__(inputs, _middle("fmbconv", width, depth, expand_ratio, act), {"sam_encoder": outputs})
