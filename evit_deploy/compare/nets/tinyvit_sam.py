"""MobileSAM's image encoder (Zhang et al., 2023): TinyViT-5M adapted to 1024×1024 SAM inputs, written from the
TinyViT paper and MobileSAM's ``build_sam_vit_t`` settings (embed dims 64/128/160/320, depths 2/2/6/2, heads
2/4/5/10, windows 7/7/14/7, MBConv expansion 4, 3×3 local convs). Module names follow MobileSAM's ``TinyViT``
(``patch_embed.seq.0.c``, ``layers.1.blocks.0.attn.attention_biases``, ``layers.2.downsample.conv2.bn``, ``neck.0``),
so its checkpoint's ``image_encoder.*`` keys match.

MobileSAM's change to TinyViT: the last patch merging (160 → 320 channels) keeps stride 1, so the encoder ends at
stride 16 (64×64 at 1024) and SAM's neck (1×1 conv, LayerNorm2d, 3×3 conv, LayerNorm2d → 256 channels) follows.
Attention is windowed with learned relative-position biases per head (one per distinct |Δy|, |Δx| offset in a
window), windows padded with zeros at the border; a 3×3 depthwise conv sits between attention and MLP. The
ImageNet classifier (``norm_head``, ``head``) is kept so the checkpoint loads, but not run.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import Conv2dBN, sam_neck

STRIDE = 16


class PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(Conv2dBN(3, dim // 2, 3, 2, 1), nn.GELU(), Conv2dBN(dim // 2, dim, 3, 2, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    def __init__(self, dim: int, expand: float) -> None:
        super().__init__()
        hidden = int(dim * expand)
        self.conv1, self.act1 = Conv2dBN(dim, hidden), nn.GELU()
        self.conv2, self.act2 = Conv2dBN(hidden, hidden, 3, 1, 1, groups=hidden), nn.GELU()
        self.conv3, self.act3 = Conv2dBN(hidden, dim), nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv3(self.act2(self.conv2(self.act1(self.conv1(x)))))
        return self.act3(x + y)


class PatchMerging(nn.Module):
    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = Conv2dBN(dim, out_dim)
        self.act = nn.GELU()
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))


class Attention(nn.Module):
    """Multi-head self-attention inside a ``window``×``window`` window (tokens ``[B', window², C]``), with a
    learned bias per head and relative offset."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.key_dim = heads, dim // heads
        self.scale = self.key_dim ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        points = list(itertools.product(range(window), range(window)))
        offsets: dict[tuple[int, int], int] = {}
        idxs = [offsets.setdefault((abs(a[0] - b[0]), abs(a[1] - b[1])), len(offsets)) for a in points for b in points]
        self.attention_biases = nn.Parameter(torch.zeros(heads, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.tensor(idxs, dtype=torch.long, device="cpu").view(
            len(points), len(points)).to(torch.empty(0).device), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, n, self.heads, 3 * self.key_dim).permute(0, 2, 1, 3).split(
            self.key_dim, dim=3)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.attention_biases[:, self.attention_bias_idxs]
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, -1)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.window = window
        self.attn = Attention(dim, heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, 3, 1, 1, groups=dim)

    def _windows(self, x: Tensor) -> Tensor:
        """Windowed attention over ``x`` ``[B, H, W, C]`` (zero-padded to whole windows)."""
        b, h, w, c = x.shape
        s = self.window
        ph, pw = -h % s, -w % s
        if ph or pw:
            x = F.pad(x, (0, 0, 0, pw, 0, ph))
        hh, ww = h + ph, w + pw
        x = x.view(b, hh // s, s, ww // s, s, c).transpose(2, 3).reshape(-1, s * s, c)
        x = self.attn(x).view(b, hh // s, ww // s, s, s, c).transpose(2, 3).reshape(b, hh, ww, c)
        return x[:, :h, :w] if ph or pw else x

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] in and out
        x = x + self._windows(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = self.local_conv(x)
        t = x.permute(0, 2, 3, 1)
        return (t + self.mlp(t)).permute(0, 3, 1, 2)


class ConvLayer(nn.Module):
    def __init__(self, dim: int, depth: int, out_dim: int, expand: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, 2)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class BasicLayer(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, window: int, out_dim: int | None, stride: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(TinyViTBlock(dim, heads, window) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride) if out_dim else None

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class TinyViTSam(nn.Module):
    """``[B, 3, H, W]`` → image embeddings ``[B, 256, H/16, W/16]``."""

    def __init__(self, dims: tuple[int, ...] = (64, 128, 160, 320), depths: tuple[int, ...] = (2, 2, 6, 2),
                 heads: tuple[int, ...] = (2, 4, 5, 10), windows: tuple[int, ...] = (7, 7, 14, 7),
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(dims[0])
        layers: list[nn.Module] = [ConvLayer(dims[0], depths[0], dims[1], 4.0)]
        for i in range(1, 4):
            out = dims[i + 1] if i < 3 else None
            layers.append(BasicLayer(dims[i], depths[i], heads[i], windows[i], out, stride=1 if i == 2 else 2))
        self.layers = nn.ModuleList(layers)
        self.norm_head = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)
        self.neck = sam_neck(dims[-1])

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.neck(x)


def mobilesam_encoder() -> TinyViTSam:
    return TinyViTSam()


def mobilesam_whole() -> nn.Module:
    """The encoder without its unused ImageNet classifier, SAM's prompt encoder and mask decoder (the paper's 9.8M)."""
    from .common import sam_whole

    enc = TinyViTSam()
    return sam_whole([enc.patch_embed, enc.layers, enc.neck])
