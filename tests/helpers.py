"""Shared test utilities."""

from __future__ import annotations

import torch
from torch import nn


def randomize_(model: nn.Module, seed: int = 0, scale: float = 0.5) -> nn.Module:
    """Give every parameter and BatchNorm statistic non-default random values, in place (official-like)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith(("norm.weight", "running_mean")) or tensor.dim() <= 1:
                offset = 1.0 if name.endswith("weight") else 0.0
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * scale + offset)
            else:
                fan_in = max(1, tensor[0].numel())
                tensor.copy_(torch.randn(tensor.shape, generator=gen) / fan_in**0.5)
    return model


def run_cli(args: list[str]) -> int:
    """Run the ``evit-deploy`` entry point in-process; returns its exit code (0 when it returns normally)."""
    from evit_deploy.cli import main

    try:
        main(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def zero_query_heads_(model: nn.Module) -> nn.Module:
    """Zero the query weights of head 0 in every attention: ReLU(q) = 0, so the normaliser is exactly 0 (the
    weights that make naive exports produce NaN)."""
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "kernel_func"):
                m.qkv.conv.weight[: m.dim] = 0
    return model
