"""Model transforms applied before export, registered by name and selected by the profile's ``transforms``.

Each transform edits a copy of the model in place and returns a short description of what it changed.
``exact`` transforms keep the function (up to rounding); the others change the model's numerics, so the
export report measures how much (against the untransformed model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import EvitError
from ..nn.blocks import LiteMLA
from ..nn.layers import UpSampleLayer

# Smallest positive *normal* value per compute dtype: survives flush-to-zero, graph optimisers (a Max is not an
# identity op) and fp16 (where 1e-15 underflows to 0 and 0/0 = NaN).
DEPLOY_EPS = {"fp32": float(torch.finfo(torch.float32).tiny), "fp16": float(torch.finfo(torch.float16).tiny)}


@dataclass(frozen=True)
class Transform:
    name: str
    fn: Callable[[nn.Module, str], str]
    exact: bool
    doc: str


TRANSFORMS: dict[str, Transform] = {}


def register_transform(name: str, exact: bool) -> Callable[[Callable[[nn.Module, str], str]], Callable]:
    def decorator(fn: Callable[[nn.Module, str], str]) -> Callable[[nn.Module, str], str]:
        TRANSFORMS[name] = Transform(name, fn, exact, (fn.__doc__ or "").strip().splitlines()[0])
        return fn

    return decorator


@register_transform("attention-deploy", exact=True)
def attention_deploy(model: nn.Module, precision: str) -> str:
    """NaN-safe attention: normaliser clamped to the compute dtype's smallest normal instead of ``+ 1e-15``.

    Where the normaliser Σ k·q is 0 the numerator is 0 too, so both forms give 0; where it is ≥ 2e-8 adding
    1e-15 is a no-op in fp32 and the clamp is too. The clamp survives exporters that drop ``x + 1e-15``.
    """
    eps = DEPLOY_EPS["fp16" if precision == "fp16" else "fp32"]
    count = 0
    for module in model.modules():
        if isinstance(module, LiteMLA):
            module.deploy_eps = eps
            count += 1
    return f"{count} attention modules: normaliser clamped at {eps:.3g}"


@register_transform("bicubic-as-conv", exact=True)
def bicubic_as_conv(model: nn.Module, precision: str) -> str:
    """Integer-ratio bicubic upsampling runs as edge pad + depthwise conv + pixel shuffle (same function).

    ONNX Runtime's cubic Resize is slow (≈40% of seg-B1's CPU time) and TFLite and older TensorRT parsers
    have no cubic resize at all; this form needs only Pad, Conv and DepthToSpace.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, UpSampleLayer) and module.mode == "bicubic":
            module.cubic_as_conv = True
            count += 1
    return f"{count} bicubic resizes as depthwise conv + pixel shuffle"


@register_transform("bicubic-to-bilinear", exact=False)
def bicubic_to_bilinear(model: nn.Module, precision: str) -> str:
    """Bicubic upsampling in seg heads / SAM neck replaced by bilinear (for backends without cubic resize)."""
    count = 0
    for module in model.modules():
        if isinstance(module, UpSampleLayer) and module.mode == "bicubic":
            module.mode = "bilinear"
            count += 1
    return f"{count} bicubic resizes switched to bilinear"


def apply_transforms(model: nn.Module, names: list[str], precision: str) -> dict[str, str]:
    """Apply the named transforms in order; returns {name: what changed}."""
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown:
        raise EvitError(f"unknown transform '{unknown[0]}'; known: {', '.join(TRANSFORMS)}")
    return {name: TRANSFORMS[name].fn(model, precision) for name in names}


def changes_numerics(names: list[str]) -> bool:
    return any(not TRANSFORMS[n].exact for n in names if n in TRANSFORMS)
