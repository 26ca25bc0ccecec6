"""Building blocks shared by the written competitors, named as their authors' code names them (so that an
official checkpoint's keys match): mmcv's ``ConvModule`` (``conv`` + ``bn``/``gn`` + activation) and the
``Conv2d_BN`` pair (``c`` + ``bn``) of TinyViT and RepViT."""

from __future__ import annotations

import torch
from torch import Tensor, nn

ACTS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "gelu": nn.GELU}


class ConvModule(nn.Module):
    """Conv → norm → activation, as mmcv's ``ConvModule`` builds it: the conv has a bias only without a norm;
    the norm is ``bn`` (BatchNorm) or ``gn`` (GroupNorm, ``groups`` groups); the activation has no parameters."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int | tuple[int, int] = 1, stride: int = 1,
                 padding: int | tuple[int, int] = 0, dilation: int = 1, groups: int = 1, norm: str | None = "bn",
                 act: str | None = "relu", gn_groups: int = 32) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, dilation, groups, bias=norm is None)
        self.norm_name = norm
        if norm == "bn":
            self.bn = nn.BatchNorm2d(out_ch)
        elif norm == "gn":
            self.gn = nn.GroupNorm(gn_groups, out_ch)
        elif norm is not None:
            raise ValueError(f"unknown norm {norm}")
        self.activate = ACTS[act]() if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.norm_name:
            x = getattr(self, self.norm_name)(x)
        return self.activate(x)


class DepthwiseSeparableConvModule(nn.Module):
    """mmcv's depthwise-separable conv: ``depthwise_conv`` (k×k, one group per channel) then ``pointwise_conv``
    (1×1), each a :class:`ConvModule` with BatchNorm and ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, padding: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.depthwise_conv = ConvModule(in_ch, in_ch, kernel, padding=padding, dilation=dilation, groups=in_ch)
        self.pointwise_conv = ConvModule(in_ch, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class Conv2dBN(nn.Sequential):
    """A bias-free conv and its BatchNorm, as ``c`` and ``bn`` (TinyViT's and RepViT's ``Conv2d_BN``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1) -> None:
        super().__init__()
        self.c = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)


def sam_neck(in_ch: int, dim: int = 256) -> nn.Sequential:
    """SAM's image-encoder neck: 1×1 conv, LayerNorm2d, 3×3 conv, LayerNorm2d (indices 0..3, no biases)."""
    from ...nn.sam_decoder import SamLayerNorm2d

    return nn.Sequential(nn.Conv2d(in_ch, dim, 1, bias=False), SamLayerNorm2d(dim),
                         nn.Conv2d(dim, dim, 3, padding=1, bias=False), SamLayerNorm2d(dim))


def seeded_uniform(shape: tuple[int, ...], seed: int, normalize_dim: int | None = None) -> Tensor:
    """A fixed U(0, 1) tensor (drawn on the CPU from ``seed``, then moved to the default device; on the meta device
    an empty tensor of that shape), optionally L2-normalised along ``normalize_dim``."""
    device = torch.empty(0).device
    if device.type == "meta":
        return torch.empty(shape)
    out = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    if normalize_dim is not None:
        out = torch.nn.functional.normalize(out, dim=normalize_dim)
    return out.to(device)


def sam_whole(encoder_parts: list[nn.Module]) -> nn.ModuleList:
    """An image encoder's parts with SAM's prompt encoder and mask decoder (this package's re-implementation,
    parameter-identical to segment-anything's): what SAM-family parameter counts cover."""
    from ...nn.sam_decoder import build_sam_mask_decoder, build_sam_prompt_encoder

    return nn.ModuleList([*encoder_parts, build_sam_prompt_encoder(), build_sam_mask_decoder()])
