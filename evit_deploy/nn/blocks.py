"""Building blocks: DSConv, MBConv, FusedMBConv, ResBlock, LiteMLA, EfficientViTBlock (docs/architecture.md §4)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvLayer, ResidualBlock

ATTENTION_EPS = 1e-15


def _conv_settings(n_convs: int, fewer_norm: bool, act: str | None) -> list[tuple[bool, str | None, str | None]]:
    """(bias, norm, act) per conv of a local block.

    Normal form: no bias, BN everywhere. ``fewer_norm``: every conv but the last has a bias and no norm.
    The last conv never has an activation.
    """
    settings = []
    for i in range(n_convs):
        last = i == n_convs - 1
        if fewer_norm and not last:
            settings.append((True, None, act))
        else:
            settings.append((False, "bn2d", None if last else act))
    return settings


class DSConv(nn.Module):
    """Depthwise 3×3 → pointwise 1×1."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, expand_ratio: float = 1.0,
        fewer_norm: bool = False, act: str | None = "relu6",
    ) -> None:
        super().__init__()
        (b1, n1, a1), (b2, n2, a2) = _conv_settings(2, fewer_norm, act)
        self.depth_conv = ConvLayer(in_channels, in_channels, 3, stride, in_channels, b1, n1, a1)
        self.point_conv = ConvLayer(in_channels, out_channels, 1, 1, 1, b2, n2, a2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(x))


class MBConv(nn.Module):
    """Inverted bottleneck: 1×1 expand → depthwise 3×3 → 1×1 project."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, expand_ratio: float = 6.0,
        fewer_norm: bool = False, act: str | None = "relu6",
    ) -> None:
        super().__init__()
        mid = round(in_channels * expand_ratio)
        (b1, n1, a1), (b2, n2, a2), (b3, n3, a3) = _conv_settings(3, fewer_norm, act)
        self.inverted_conv = ConvLayer(in_channels, mid, 1, 1, 1, b1, n1, a1)
        self.depth_conv = ConvLayer(mid, mid, 3, stride, mid, b2, n2, a2)
        self.point_conv = ConvLayer(mid, out_channels, 1, 1, 1, b3, n3, a3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(self.inverted_conv(x)))


class FusedMBConv(nn.Module):
    """Full 3×3 expand → 1×1 project."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, expand_ratio: float = 6.0,
        fewer_norm: bool = False, act: str | None = "relu6",
    ) -> None:
        super().__init__()
        mid = round(in_channels * expand_ratio)
        (b1, n1, a1), (b2, n2, a2) = _conv_settings(2, fewer_norm, act)
        self.spatial_conv = ConvLayer(in_channels, mid, 3, stride, 1, b1, n1, a1)
        self.point_conv = ConvLayer(mid, out_channels, 1, 1, 1, b2, n2, a2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.spatial_conv(x))


class ResBlock(nn.Module):
    """Two 3×3 convs (the block, not the residual wrapper)."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, expand_ratio: float = 1.0,
        fewer_norm: bool = False, act: str | None = "relu6",
    ) -> None:
        super().__init__()
        mid = round(in_channels * expand_ratio)
        (b1, n1, a1), (b2, n2, a2) = _conv_settings(2, fewer_norm, act)
        self.conv1 = ConvLayer(in_channels, mid, 3, stride, 1, b1, n1, a1)
        self.conv2 = ConvLayer(mid, out_channels, 3, 1, 1, b2, n2, a2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


LOCAL_BLOCKS: dict[str, Callable[..., nn.Module]] = {
    "ds": DSConv,
    "mb": MBConv,
    "fmb": FusedMBConv,
    "res": ResBlock,
}


def build_local_block(
    kind: str, in_channels: int, out_channels: int, stride: int, expand_ratio: float, fewer_norm: bool,
    act: str,
) -> nn.Module:
    """A local (convolutional) block by registry name: ``ds``, ``mb``, ``fmb`` or ``res``."""
    return LOCAL_BLOCKS[kind](in_channels, out_channels, stride, expand_ratio, fewer_norm, act)


class LiteMLA(nn.Module):
    """Multi-scale ReLU linear attention.

    ``qkv`` 1×1 conv; per scale a depthwise s×s conv and a grouped 1×1 conv (``aggreg``); the heads of all
    branches attend independently with ReLU kernels; ``proj`` 1×1 conv + BN. Channels of each head are laid
    out as [q | k | v], d rows each.

    ``deploy_eps`` selects the export-safe form (set by the export transforms, off by default): the
    normaliser is clamped below by ``deploy_eps`` instead of adding 1e-15, which survives graph optimisers
    and fp16 alike. With a normaliser of zero the numerator is zero too, so both forms give 0 there.
    """

    def __init__(self, in_channels: int, out_channels: int, dim: int = 8, scales: Sequence[int] = (5,)) -> None:
        super().__init__()
        heads = in_channels // dim
        total_dim = heads * dim
        self.dim = dim
        self.eps = ATTENTION_EPS
        self.deploy_eps: float | None = None
        self.qkv = ConvLayer(in_channels, 3 * total_dim, 1, use_bias=False, norm=None, act=None)
        self.aggreg = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(3 * total_dim, 3 * total_dim, s, padding=s // 2, groups=3 * total_dim, bias=False),
                nn.Conv2d(3 * total_dim, 3 * total_dim, 1, groups=3 * heads, bias=False),
            )
            for s in scales
        )
        self.kernel_func = nn.ReLU(inplace=False)
        self.proj = ConvLayer(total_dim * (1 + len(scales)), out_channels, 1, use_bias=False, norm="bn2d", act=None)

    def _split(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, _, h, w = qkv.shape
        qkv = torch.reshape(qkv, (b, -1, 3 * self.dim, h * w))
        q = self.kernel_func(qkv[:, :, 0 : self.dim])
        k = self.kernel_func(qkv[:, :, self.dim : 2 * self.dim])
        v = qkv[:, :, 2 * self.dim :]
        return q, k, v

    def relu_linear_att(self, qkv: torch.Tensor) -> torch.Tensor:
        """O(N) path: Σ_m v_m (k_m·q_n) / (Σ_m k_m·q_n + eps) through a ones-row appended to v."""
        b, _, h, w = qkv.shape
        if qkv.dtype == torch.float16:
            qkv = qkv.float()
        q, k, v = self._split(qkv)
        v = F.pad(v, (0, 0, 0, 1), mode="constant", value=1)
        vk = torch.matmul(v, k.transpose(-1, -2))
        out = torch.matmul(vk, q)
        if out.dtype == torch.bfloat16:
            out = out.float()
        out = out[:, :, :-1] / self._normaliser(out[:, :, -1:])
        return torch.reshape(out, (b, -1, h, w))

    def relu_quadratic_att(self, qkv: torch.Tensor) -> torch.Tensor:
        """O(N²) path, used for tiny maps (H·W ≤ d): the same function with a different rounding.

        fp16 input is upcast like in the linear path (upstream keeps these matmuls in fp16), so the whole
        attention is an fp32 island in the mixed-precision deployment form.
        """
        b, _, h, w = qkv.shape
        if qkv.dtype == torch.float16:
            qkv = qkv.float()
        q, k, v = self._split(qkv)
        att_map = torch.matmul(k.transpose(-1, -2), q)
        dtype = att_map.dtype
        if dtype in (torch.float16, torch.bfloat16):
            att_map = att_map.float()
        att_map = att_map / self._normaliser(torch.sum(att_map, dim=2, keepdim=True))
        out = torch.matmul(v, att_map.to(dtype))
        return torch.reshape(out, (b, -1, h, w))

    def _normaliser(self, denom: torch.Tensor) -> torch.Tensor:
        if self.deploy_eps is not None:
            return torch.clamp(denom, min=self.deploy_eps)
        return denom + self.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x)
        qkv = torch.cat([qkv] + [op(qkv) for op in self.aggreg], dim=1)
        h, w = qkv.shape[-2:]
        att = self.relu_linear_att if h * w > self.dim else self.relu_quadratic_att
        return self.proj(att(qkv).to(qkv.dtype))


class EfficientViTBlock(nn.Module):
    """LiteMLA context residual, then a fewer-norm MBConv local residual."""

    def __init__(
        self, in_channels: int, dim: int = 32, expand_ratio: float = 4, scales: Sequence[int] = (5,),
        act: str = "hswish",
    ) -> None:
        super().__init__()
        self.context_module = ResidualBlock(LiteMLA(in_channels, in_channels, dim, scales), nn.Identity())
        self.local_module = ResidualBlock(
            MBConv(in_channels, in_channels, 1, expand_ratio, fewer_norm=True, act=act), nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.local_module(self.context_module(x))
