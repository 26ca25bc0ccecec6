"""SegNeXt (Guo et al., NeurIPS 2022): the MSCAN backbone and the LightHamHead decode head, written from the paper
and the authors' configs (Visual-Attention-Network/SegNeXt ``local_configs``; mmsegmentation's port names the
modules the same). Module names follow the authors' ``EncoderDecoder`` (``backbone.patch_embed1.proj.0``,
``backbone.block1.0.attn.spatial_gating_unit.conv0_1``, ``decode_head.hamburger.ham_in.conv``, ...), so an
official checkpoint's keys match.

MSCAN: a convolutional stem (two 3×3 stride-2 convs) then three 3×3 stride-2 patch embeddings; each block is
BN → multi-scale convolutional attention (a 5×5 depthwise conv, then 1×k / k×1 strip convs for k = 7, 11, 21,
summed, mixed by a 1×1 conv and used as weights on the input) and BN → MLP with a 3×3 depthwise conv, both with
layer scale. LightHamHead: stages 2-4 resized to stage 2 (H/8), concatenated, squeezed by a 1×1 conv (GN, ReLU),
the Hamburger (1×1 conv, ReLU, NMF matrix decomposition by multiplicative updates, 1×1 conv + GN, residual,
ReLU), aligned by a 1×1 conv (GN, ReLU) and classified; logits at H/8.

The NMF runs its inference steps (7) as the authors' head does at inference. Its initial bases are drawn once
when the model is built (a fixed, seeded buffer, not saved in the state dict) instead of afresh at every call as
the authors' ``rand_init=True`` does: the same operations and cost, but a deterministic output, so the export
can be validated against this module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import ConvModule, seeded_uniform

STRIDE = 32  # four stride-2 stages after a stride-4 stem: sides must be multiples of 32


@dataclass(frozen=True)
class SegNeXtConfig:
    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    channels: int  # decode head width (= ham_channels)
    md_r: int  # NMF rank: 16 for T/S, the authors' default 64 for B/L
    mlp_ratios: tuple[int, int, int, int] = (8, 8, 4, 4)
    md_steps: int = 7  # eval_steps
    num_classes: int = 19


CONFIGS = {
    "t": SegNeXtConfig((32, 64, 160, 256), (3, 3, 5, 2), 256, 16),
    "s": SegNeXtConfig((64, 128, 320, 512), (2, 2, 4, 2), 256, 16),
    "b": SegNeXtConfig((64, 128, 320, 512), (3, 3, 12, 3), 512, 64),
    "l": SegNeXtConfig((64, 128, 320, 512), (3, 5, 27, 3), 1024, 64),
}


class StemConv(nn.Module):
    def __init__(self, out_ch: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(3, out_ch // 2, 3, 2, 1), nn.BatchNorm2d(out_ch // 2), nn.GELU(),
            nn.Conv2d(out_ch // 2, out_ch, 3, 2, 1), nn.BatchNorm2d(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class OverlapPatchEmbed(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_ch, out_ch, 3, 2, 1)
        self.norm = nn.BatchNorm2d(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x))


def _strip(dim: int, k: int, vertical: bool) -> nn.Conv2d:
    size, pad = ((k, 1), (k // 2, 0)) if vertical else ((1, k), (0, k // 2))
    return nn.Conv2d(dim, dim, size, padding=pad, groups=dim)


class AttentionModule(nn.Module):
    """Multi-scale convolutional attention: the attention map weighs the input element-wise."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        for i, k in enumerate((7, 11, 21)):
            setattr(self, f"conv{i}_1", _strip(dim, k, vertical=False))
            setattr(self, f"conv{i}_2", _strip(dim, k, vertical=True))
        self.conv3 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        attn = self.conv0(x)
        branches = [getattr(self, f"conv{i}_2")(getattr(self, f"conv{i}_1")(attn)) for i in range(3)]
        attn = attn + branches[0] + branches[1] + branches[2]
        return self.conv3(attn) * x


class SpatialAttention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = AttentionModule(dim)
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x)))) + x


class DWConv(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.dwconv(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


class Block(nn.Module):
    def __init__(self, dim: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = SpatialAttention(dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.layer_scale_1 = nn.Parameter(torch.full((dim,), 1e-2))
        self.layer_scale_2 = nn.Parameter(torch.full((dim,), 1e-2))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.layer_scale_1[:, None, None] * self.attn(self.norm1(x))
        return x + self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x))


class MSCAN(nn.Module):
    """The backbone: four stages, each a patch embedding, blocks and a LayerNorm over channels; returns all four
    feature maps (strides 4, 8, 16, 32)."""

    def __init__(self, cfg: SegNeXtConfig) -> None:
        super().__init__()
        dims = cfg.embed_dims
        for i in range(4):
            embed = StemConv(dims[0]) if i == 0 else OverlapPatchEmbed(dims[i - 1], dims[i])
            setattr(self, f"patch_embed{i + 1}", embed)
            setattr(self, f"block{i + 1}", nn.ModuleList(Block(dims[i], cfg.mlp_ratios[i])
                                                         for _ in range(cfg.depths[i])))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(dims[i]))

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i in range(1, 5):
            x = getattr(self, f"patch_embed{i}")(x)
            for block in getattr(self, f"block{i}"):
                x = block(x)
            x = getattr(self, f"norm{i}")(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            outs.append(x)
        return outs


class NMF2D(nn.Module):
    """Non-negative matrix factorisation of the (C, H·W) feature matrix into ``rank`` bases by ``steps``
    multiplicative updates, then the reconstruction (bases × coefficients). No parameters."""

    def __init__(self, channels: int, rank: int, steps: int, seed: int = 0) -> None:
        super().__init__()
        self.steps = steps
        self.register_buffer("bases", seeded_uniform((1, channels, rank), seed, normalize_dim=1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b, c, h * w)
        bases = self.bases.expand(b, -1, -1)
        xt = x.transpose(1, 2)
        coef = torch.softmax(torch.bmm(xt, bases), dim=-1)  # inv_t = 1 for NMF
        for _ in range(self.steps):
            coef = coef * torch.bmm(xt, bases) / (coef.bmm(bases.transpose(1, 2).bmm(bases)) + 1e-6)
            bases = bases * torch.bmm(x, coef) / (bases.bmm(coef.transpose(1, 2).bmm(coef)) + 1e-6)
        coef = coef * torch.bmm(xt, bases) / (coef.bmm(bases.transpose(1, 2).bmm(bases)) + 1e-6)
        return torch.bmm(bases, coef.transpose(1, 2)).reshape(b, c, h, w)


class Hamburger(nn.Module):
    def __init__(self, channels: int, rank: int, steps: int) -> None:
        super().__init__()
        self.ham_in = ConvModule(channels, channels, 1, norm=None, act=None)
        self.ham = NMF2D(channels, rank, steps)
        self.ham_out = ConvModule(channels, channels, 1, norm="gn", act=None)

    def forward(self, x: Tensor) -> Tensor:
        enjoy = self.ham_out(self.ham(F.relu(self.ham_in(x))))
        return F.relu(x + enjoy)


class LightHamHead(nn.Module):
    def __init__(self, cfg: SegNeXtConfig) -> None:
        super().__init__()
        self.squeeze = ConvModule(sum(cfg.embed_dims[1:]), cfg.channels, 1, norm="gn")
        self.hamburger = Hamburger(cfg.channels, cfg.md_r, cfg.md_steps)
        self.align = ConvModule(cfg.channels, cfg.channels, 1, norm="gn")
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(cfg.channels, cfg.num_classes, 1)

    def forward(self, feats: list[Tensor]) -> Tensor:
        size = feats[1].shape[2:]
        x = torch.cat([feats[1]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False)
                                    for f in feats[2:]], dim=1)
        return self.conv_seg(self.dropout(self.align(self.hamburger(self.squeeze(x)))))


class SegNeXt(nn.Module):
    """``backbone`` (MSCAN) + ``decode_head`` (LightHamHead): ``[B, 3, H, W]`` → logits ``[B, classes, H/8, W/8]``."""

    def __init__(self, cfg: SegNeXtConfig) -> None:
        super().__init__()
        self.backbone = MSCAN(cfg)
        self.decode_head = LightHamHead(cfg)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode_head(self.backbone(x))


def segnext(variant: str, num_classes: int = 19) -> SegNeXt:
    """SegNeXt-T/S/B/L (``variant`` t, s, b, l) with ``num_classes`` outputs (all of it runs at inference)."""
    return SegNeXt(dataclasses.replace(CONFIGS[variant], num_classes=num_classes))
