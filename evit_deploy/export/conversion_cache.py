"""Conversions made once per process: a graph converted earlier in this process is reused when the module to
convert is the same (its classes, plain attributes, parameters and buffers, bit for bit) at the same input specs.

A search (``optimize``) or a script that exports one model at several precisions converts the float graph once:
every TFLite precision is an ai-edge-quantizer rewrite of the same float file, and a litert-torch conversion takes
tens of seconds whatever the input size. A module with hooks is never reused (what a hook does is not in the key).
Reuse never skips validation: every artifact is still checked against PyTorch.

``EVIT_DEPLOY_CONVERSION_CACHE=DIR`` keeps the conversions in DIR as well (``<key>.tflite`` + ``<key>.json``,
written atomically, never pruned), so separate runs share them too (``export`` at one precision, then another).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..files import atomic_write

ENV = "EVIT_DEPLOY_CONVERSION_CACHE"
MAX_BYTES = 1 << 30  # conversions kept in memory, oldest dropped first
SUFFIX = ".tflite"  # what is converted (litert-torch); the record beside it is <key>.json
_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_state_dict_hooks", "_backward_hooks",
          "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs")


@dataclass(frozen=True)
class Converted:
    data: bytes
    seconds: float  # what the conversion took when it was made
    source: str = "earlier in this process"  # where a reused conversion came from


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
    """The bytes of recent conversions, by :func:`graph_key` (at most ``MAX_BYTES`` in memory), and in the folder
    ``EVIT_DEPLOY_CONVERSION_CACHE`` names, if set."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Converted] = OrderedDict()

    @staticmethod
    def folder() -> Path | None:
        return Path(os.environ[ENV]) if os.environ.get(ENV) else None

    def get(self, key: str | None) -> Converted | None:
        if key is None:
            return None
        if key not in self._items:
            return self._from_disk(key)
        self._items.move_to_end(key)
        return self._items[key]

    def _from_disk(self, key: str) -> Converted | None:
        folder = self.folder()
        if folder is None:
            return None
        try:
            seconds = float(json.loads((folder / f"{key}.json").read_text())["seconds"])
            return Converted((folder / f"{key}{SUFFIX}").read_bytes(), seconds, f"earlier, kept in {folder}")
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent, or half there: convert again

    def put(self, key: str | None, item: Converted) -> None:
        if key is None:
            return
        folder = self.folder()
        if folder is not None:
            try:  # the artifact first, its record last: a record always has its file
                atomic_write(folder / f"{key}{SUFFIX}", item.data)
                atomic_write(folder / f"{key}.json", json.dumps({"seconds": round(item.seconds, 3)}))
            except OSError:
                pass  # a cache that cannot be written only costs a conversion next time
        if len(item.data) > self.max_bytes:
            return
        self._items[key] = item
        while sum(len(v.data) for v in self._items.values()) > self.max_bytes:
            self._items.popitem(last=False)
