"""Conversions made once per process: a graph converted earlier in this process is reused when the module to
convert is the same (its classes, plain attributes, parameters and buffers, bit for bit) at the same input specs.

A search (``optimize``) or a script that exports one model at several precisions converts the float graph once:
every TFLite precision is an ai-edge-quantizer rewrite of the same float file, and a litert-torch conversion takes
tens of seconds whatever the input size. A module with hooks is never reused (what a hook does is not in the key).
Reuse never skips validation: every artifact is still checked against PyTorch.
"""

from __future__ import annotations

import hashlib
import inspect
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

MAX_BYTES = 1 << 30  # conversions kept in memory, oldest dropped first
_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_state_dict_hooks", "_backward_hooks",
          "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs")


@dataclass(frozen=True)
class Converted:
    data: bytes
    seconds: float  # what the conversion took when it was made


def _tensor(h: Any, name: str, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)


def _value(h: Any, name: str, value: object) -> None:
    if isinstance(value, torch.Tensor):
        _tensor(h, name, value)
    elif isinstance(value, (list, tuple)):
        h.update(f"{name}:{type(value).__name__}[{len(value)}]".encode())
        for i, item in enumerate(value):
            _value(h, f"{name}.{i}", item)
    elif isinstance(value, dict):
        h.update(f"{name}:dict[{len(value)}]".encode())
        for key, item in value.items():
            _value(h, f"{name}.{key!r}", item)
    elif isinstance(value, np.ndarray):
        _tensor(h, name, torch.from_numpy(np.ascontiguousarray(value)))
    elif (inspect.isfunction(value) or inspect.isbuiltin(value)) and "<" not in value.__qualname__:
        h.update(f"{name}={value.__module__}.{value.__qualname__}".encode())  # a named function, not a closure
    elif isinstance(value, (str, int, float, bool, complex, type(None), torch.dtype, torch.device, type)):
        h.update(f"{name}={value!r}".encode())
    else:  # anything else (a closure, a bound method, an object) is that very object: reused only with it
        h.update(f"{name}={type(value).__qualname__}@{id(value)}:{value!r}".encode())


def graph_key(module: nn.Module, names: Sequence[str], inputs: Sequence[torch.Tensor], *extra: str) -> str | None:
    """What a conversion of ``module`` at these inputs depends on, hashed; ``None`` when it cannot be told."""
    h = hashlib.blake2b(digest_size=20)
    for part in (*extra, *names, *(f"{tuple(x.shape)}:{x.dtype}" for x in inputs)):
        h.update(part.encode() + b"\0")
    for path, sub in module.named_modules(remove_duplicate=False):
        if any(getattr(sub, hook, None) for hook in _HOOKS):
            return None
        kind = type(sub)
        h.update(f"{path}:{kind.__module__}.{kind.__qualname__}".encode())
        for attr, value in sorted(vars(sub).items()):
            if not attr.startswith("_"):  # the plain attributes (parameters, buffers: below; hooks: checked)
                _value(h, attr, value)
        for attr, tensor in (*sub._parameters.items(), *sub._buffers.items()):
            if tensor is not None:
                _tensor(h, attr, tensor)
    return h.hexdigest()


class ConversionCache:
    """The bytes of recent conversions, by :func:`graph_key` (at most ``MAX_BYTES`` in all)."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Converted] = OrderedDict()

    def get(self, key: str | None) -> Converted | None:
        if key is None or key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: str | None, item: Converted) -> None:
        if key is None or len(item.data) > self.max_bytes:
            return
        self._items[key] = item
        while sum(len(v.data) for v in self._items.values()) > self.max_bytes:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()
