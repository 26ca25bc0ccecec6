"""Primitive layers of the EfficientViT family (docs/architecture.md §3).

Attribute names are part of the contract: they become the state_dict keys of the official checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import cache, partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hswish": nn.Hardswish,
    "silu": nn.SiLU,
    "gelu": partial(nn.GELU, approximate="tanh"),
}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of an NCHW tensor (biased variance), as in the SAM image encoder."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x - torch.mean(x, dim=1, keepdim=True)
        out = out / torch.sqrt(torch.square(out).mean(dim=1, keepdim=True) + self.eps)
        if self.elementwise_affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out


NORMS: dict[str, Callable[[int], nn.Module]] = {
    "bn2d": nn.BatchNorm2d,
    "ln": nn.LayerNorm,
    "ln2d": LayerNorm2d,
}


def build_act(name: str | None) -> nn.Module | None:
    """Activation module by registry name; ``None`` (or an unknown name, as upstream) means no activation."""
    factory = ACTIVATIONS.get(name) if name else None
    return factory() if factory else None


def build_norm(name: str | None, channels: int) -> nn.Module | None:
    """Normalisation module by registry name; ``None`` means no normalisation."""
    return NORMS[name](channels) if name else None


def set_norm_eps(model: nn.Module, eps: float) -> None:
    """Overwrite ``eps`` on every BatchNorm, LayerNorm (and subclasses) and GroupNorm, as the official zoo does."""
    for module in model.modules():
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)):
            module.eps = eps


class ConvLayer(nn.Module):
    """Conv2d (padding k//2) → optional norm → optional activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        use_bias: bool = False,
        norm: str | None = "bn2d",
        act: str | None = "relu",
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=use_bias
        )
        self.norm = build_norm(norm, out_channels)
        self.act = build_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


class LinearLayer(nn.Module):
    """Flatten (if needed) → Linear → optional norm → optional activation."""

    def __init__(
        self, in_features: int, out_features: int, use_bias: bool = True, norm: str | None = None,
        act: str | None = None,
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, use_bias)
        self.norm = build_norm(norm, out_features)
        self.act = build_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > 2:
            x = torch.flatten(x, start_dim=1)
        x = self.linear(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


@cache
def _cubic_phase_kernels(scale: int, a: float = -0.75) -> np.ndarray:
    """[scale², 5, 5] kernels: output phase (r, c) of a ×scale bicubic upsample as taps at offsets −2..2.

    Same mapping as ``F.interpolate(mode="bicubic", align_corners=False)``: source = (dst + 0.5) / scale − 0.5,
    Keys cubic with a = −0.75, edge-clamped taps (the caller pads with edge replication). Computed in numpy so
    that tracing an export records a constant, not the construction.
    """

    def cubic(x: float) -> float:
        x = abs(x)
        if x <= 1:
            return ((a + 2) * x - (a + 3)) * x * x + 1
        if x < 2:
            return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
        return 0.0

    taps = np.zeros((scale, 5))
    for r in range(scale):
        src = (r + 0.5) / scale - 0.5
        base = math.floor(src)
        for k in range(-1, 3):
            taps[r, base + k + 2] = cubic(src - base - k)
    return np.einsum("ri,cj->rcij", taps, taps).reshape(scale * scale, 5, 5)


def bicubic_upsample_as_conv(x: torch.Tensor, scale: int) -> torch.Tensor:
    """×``scale`` bicubic upsampling as edge pad → depthwise 5×5 conv (scale² phases) → pixel shuffle.

    Equal to ``F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)`` up to float
    rounding, but built from ops every backend runs fast (ONNX Runtime's cubic Resize is slow; TFLite has none).
    """
    b, c, h, w = x.shape
    kernels = torch.tensor(_cubic_phase_kernels(scale), dtype=x.dtype, device=x.device)
    weight = kernels.unsqueeze(1)  # [scale², 1, 5, 5], independent of C
    planes = F.pad(x.reshape(b * c, 1, h, w), (2, 2, 2, 2), mode="replicate")
    out = F.conv2d(planes, weight).reshape(b, c * scale * scale, h, w)
    return F.pixel_shuffle(out, scale)


class UpSampleLayer(nn.Module):
    """Resize by an integer factor or to a fixed size (bicubic, align_corners=False by default).

    Unlike upstream, reduced-precision input is cast back to its dtype after the fp32 resize, and a resize to
    the size the input already has is skipped (an exact identity for bicubic/bilinear, align_corners=False).
    With ``cubic_as_conv`` (set by the ``bicubic-as-conv`` export transform) an integer-ratio bicubic resize
    runs as :func:`bicubic_upsample_as_conv`.
    """

    def __init__(
        self, mode: str = "bicubic", size: Sequence[int] | None = None, factor: int = 2,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.mode = mode
        self.size = tuple(size) if size is not None else None
        self.factor = None if size is not None else factor
        self.align_corners = align_corners
        self.cubic_as_conv = False

    def _integer_ratio(self, x: torch.Tensor) -> int | None:
        if self.factor is not None:
            return int(self.factor) if float(self.factor).is_integer() else None
        h, w = (int(v) for v in x.shape[-2:])  # static at export time: only the batch axis may be dynamic
        ratio_h, ratio_w = self.size[0] / h, self.size[1] / w
        return int(ratio_h) if ratio_h == ratio_w and ratio_h.is_integer() else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.size is not None and tuple(x.shape[-2:]) == self.size) or self.factor == 1:
            return x
        if self.cubic_as_conv and self.mode == "bicubic" and not self.align_corners:
            scale = self._integer_ratio(x)
            if scale:
                return bicubic_upsample_as_conv(x.float(), scale).to(x.dtype)
        corners = self.align_corners if self.mode in ("bilinear", "bicubic") else None
        out = F.interpolate(
            x.float(), size=self.size, scale_factor=self.factor, mode=self.mode, align_corners=corners
        )
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, size={self.size}, factor={self.factor}"


class OpSequential(nn.Module):
    """Sequential container whose children are stored as ``op_list`` (None entries are dropped)."""

    def __init__(self, ops: Sequence[nn.Module | None]) -> None:
        super().__init__()
        self.op_list = nn.ModuleList([op for op in ops if op is not None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.op_list:
            x = op(x)
        return x


class ResidualBlock(nn.Module):
    """``main(x) + shortcut(x)``; without a shortcut just ``main(x)``."""

    def __init__(self, main: nn.Module, shortcut: nn.Module | None) -> None:
        super().__init__()
        self.main = main
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is None:
            return self.main(x)
        return self.main(x) + self.shortcut(x)


class DAGBlock(nn.Module):
    """Sum of per-input branches (right-associative) → middle → named outputs, over a feature dict."""

    def __init__(
        self, inputs: Mapping[str, nn.Module], middle: nn.Module, outputs: Mapping[str, nn.Module]
    ) -> None:
        super().__init__()
        self.input_keys = list(inputs)
        self.input_ops = nn.ModuleList(inputs.values())
        self.middle = middle
        self.output_keys = list(outputs)
        self.output_ops = nn.ModuleList(outputs.values())

    def forward(self, feature_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feats = [op(feature_dict[key]) for key, op in zip(self.input_keys, self.input_ops)]
        merged = feats[-1]
        for feat in reversed(feats[:-1]):  # f0 + (f1 + f2): the order upstream sums in
            merged = feat + merged
        merged = self.middle(merged)
        for key, op in zip(self.output_keys, self.output_ops):
            feature_dict[key] = op(merged)
        return feature_dict
