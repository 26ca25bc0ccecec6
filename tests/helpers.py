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


def fast_bench(threads: int = 1, native: bool = False, **overrides):  # noqa: ANN003, ANN201
    """BenchSettings for tests: the real protocol (worker processes, alternating blocks), with tiny blocks and
    budget so a run takes seconds. Latency figures from it mean nothing; the rows' structure does."""
    from evit_deploy.bench.harness import BenchSettings
    from evit_deploy.bench.protocol import ProtocolSettings
    from evit_deploy.bench.worker import Warmup

    batches = overrides.pop("batches", [1])
    baselines = overrides.pop("baselines", ["eager"])
    fields = dict(threads=threads, block_s=0.02, min_blocks=2, budget_s=1.0, native=native, overhead_calls=3,
                  warmup=Warmup(min_calls=1, min_s=0.0, max_s=2.0, window=2))
    protocol = ProtocolSettings(**(fields | overrides))
    return BenchSettings(batches, baselines, protocol)


# The same for the command line: `evit-deploy bench run EXPORT *FAST_ARGS` (every row settles after two blocks: a
# 95% CI within ±1000%).
FAST_ARGS = ["--threads", "1", "--block-s", "0.02", "--min-blocks", "2", "--ci", "1000", "--warmup-s", "0",
             "--no-native"]
