"""EdgeSAM's image encoder (Zhou et al., 2023): RepViT-M1 with EdgeSAM's feature fusion and SAM's neck, written
from the RepViT paper and EdgeSAM's ``build_edge_sam`` settings (arch m1, 1024×1024, bicubic upsampling,
``fuse=True``). Module names follow EdgeSAM's ``RepViT`` (``features.0.0.c``, ``features.1.token_mixer.0.conv1.bn``,
``features.1.channel_mixer.m.0.c``, ``fuse_stage3.op_list.0``, ``neck.0``), so its checkpoint's ``image_encoder.*``
keys match.

RepViT-M1: a stem of two 3×3 stride-2 convs (24, 48 channels), then 26 blocks in four stages of 48, 96, 192 and 384
channels (3, 4, 16, 3 blocks; the first block of stages 2-4 downsamples with a stride-2 depthwise conv and a 1×1
conv). A block is a token mixer (3×3 depthwise + 1×1 depthwise branches + identity, RepVGG style, then
squeeze-excitation on alternate blocks) and a residual channel mixer (1×1 expansion ×2, GELU, 1×1). EdgeSAM's
fusion: the stride-16 features (192 ch) and the stride-32 features (384 ch, upsampled ×2 bicubically), each by a
1×1 conv to 256 channels, are added; SAM's neck follows. Output: ``[B, 256, H/16, W/16]``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .common import Conv2dBN, sam_neck

STRIDE = 32

# (channels, squeeze-excitation, stride) per block: RepViT-M1 (kernel 3, expansion 2; GELU throughout)
M1 = ((48, 1, 1), (48, 0, 1), (48, 0, 1),
      (96, 0, 2), (96, 1, 1), (96, 0, 1), (96, 0, 1),
      (192, 0, 2), *[(192, i % 2, 1) for i in range(1, 15)], (192, 0, 1),
      (384, 0, 2), (384, 1, 1), (384, 0, 1))


def _make_divisible(v: float, divisor: int = 8) -> int:
    out = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * v else out


class SqueezeExcite(nn.Module):
    """Squeeze-excitation (timm's ``SEModule``: ``fc1``, ReLU, ``fc2``, sigmoid), reduction 1/4 rounded to 8."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        reduced = max(8, int(ch * 0.25 + 4) // 8 * 8)
        self.fc1 = nn.Conv2d(ch, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))).sigmoid()


class RepVGGDW(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = Conv2dBN(ch, ch, 3, 1, 1, groups=ch)
        self.conv1 = Conv2dBN(ch, ch, 1, 1, 0, groups=ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) + self.conv1(x) + x


class Residual(nn.Module):
    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: Tensor) -> Tensor:
        return x + self.m(x)


class RepViTBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, se: bool) -> None:
        super().__init__()
        if stride == 2:
            self.token_mixer = nn.Sequential(Conv2dBN(in_ch, in_ch, 3, 2, 1, groups=in_ch),
                                             SqueezeExcite(in_ch) if se else nn.Identity(), Conv2dBN(in_ch, out_ch))
        else:
            self.token_mixer = nn.Sequential(RepVGGDW(in_ch), SqueezeExcite(in_ch) if se else nn.Identity())
        self.channel_mixer = Residual(nn.Sequential(Conv2dBN(out_ch, 2 * out_ch), nn.GELU(),
                                                    Conv2dBN(2 * out_ch, out_ch)))

    def forward(self, x: Tensor) -> Tensor:
        return self.channel_mixer(self.token_mixer(x))


class OpSequential(nn.Module):
    def __init__(self, ops: list[nn.Module]) -> None:
        super().__init__()
        self.op_list = nn.ModuleList(ops)

    def forward(self, x: Tensor) -> Tensor:
        for op in self.op_list:
            x = op(x)
        return x


class Upsample2x(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)


class RepViTSam(nn.Module):
    """``[B, 3, H, W]`` → image embeddings ``[B, 256, H/16, W/16]`` (H, W multiples of 32)."""

    def __init__(self, blocks: tuple[tuple[int, int, int], ...] = M1) -> None:
        super().__init__()
        first = blocks[0][0]
        layers: list[nn.Module] = [nn.Sequential(Conv2dBN(3, first // 2, 3, 2, 1), nn.GELU(),
                                                 Conv2dBN(first // 2, first, 3, 2, 1))]
        in_ch = first
        self.stage_ends = []
        for i, (ch, se, stride) in enumerate(blocks):
            out = _make_divisible(ch)
            if i + 1 == len(blocks) or blocks[i + 1][0] != ch:
                self.stage_ends.append(i + 1)  # index in features
            layers.append(RepViTBlock(in_ch, out, stride, bool(se)))
            in_ch = out
        self.features = nn.ModuleList(layers)
        c16, c32 = blocks[self.stage_ends[2] - 1][0], blocks[-1][0]
        self.fuse_stage2 = nn.Conv2d(c16, 256, 1, bias=False)
        self.fuse_stage3 = OpSequential([nn.Conv2d(c32, 256, 1, bias=False), Upsample2x()])
        self.neck = sam_neck(256)

    def forward(self, x: Tensor) -> Tensor:
        stage16 = None
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self.stage_ends[2]:
                stage16 = x
        return self.neck(self.fuse_stage2(stage16) + self.fuse_stage3(x))


def edgesam_encoder() -> RepViTSam:
    return RepViTSam()


def edgesam_whole() -> nn.Module:
    """The encoder with SAM's prompt encoder and mask decoder, which EdgeSAM keeps (the paper's 9.6M)."""
    from .common import sam_whole

    return sam_whole([RepViTSam()])
