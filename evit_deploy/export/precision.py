"""Reduced-precision deployment forms of a PyTorch module, built before export.

``mixed_fp16`` makes the graph fp16 everywhere except fp32 islands with explicit casts around the attention's
matmuls/reductions/division (LiteMLA upcasts fp16 input itself), every normalisation that stays in the graph
(LayerNorm and its subclasses) and resizes (UpSampleLayer computes in fp32). BatchNorm is folded into the
preceding convolution in fp32 first, so no BN runs in fp16. The exported ONNX states each island with Cast
nodes, so a strongly typed TensorRT network (or ONNX Runtime) builds it exactly as written.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..nn.layers import ConvLayer


class Fp32Island(nn.Module):
    """Runs ``module`` in fp32 between explicit casts, whatever the surrounding dtype."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.float()).to(x.dtype)


class Fp16Graph(nn.Module):
    """fp32 inputs → fp16 module → fp32 outputs, so callers keep feeding and reading float32."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.module(*(x.half() if x.is_floating_point() else x for x in inputs))
        if isinstance(out, tuple):
            return tuple(o.float() for o in out)
        return out.float()


@torch.no_grad()
def fold_batchnorm_(model: nn.Module) -> int:
    """Fold every ConvLayer's BatchNorm into its convolution (eval semantics), in place; returns the count."""
    count = 0
    for module in model.modules():
        if isinstance(module, ConvLayer) and isinstance(module.norm, nn.BatchNorm2d):
            conv, bn = module.conv, module.norm
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                               groups=conv.groups, bias=True).to(conv.weight.device, conv.weight.dtype)
            folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            folded.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
            module.conv, module.norm = folded, None
            count += 1
    return count


def _wrap_norms_(model: nn.Module) -> int:
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.LayerNorm, nn.GroupNorm)):
                setattr(parent, name, Fp32Island(child))
                count += 1
    return count


def mixed_fp16(module: nn.Module) -> tuple[nn.Module, str]:
    """A copy of ``module`` in the mixed fp16 deployment form, and a one-line description of what changed."""
    model = copy.deepcopy(module).float().eval()
    folded = fold_batchnorm_(model)
    model.half()
    islands = _wrap_norms_(model)
    attention = sum(1 for m in model.modules() if hasattr(m, "kernel_func"))
    note = (f"fp16 with fp32 islands: {attention} attention modules, {islands} layer norms, resizes; "
            f"{folded} BatchNorms folded into convolutions in fp32; inputs and outputs float32")
    return Fp16Graph(model).eval(), note
