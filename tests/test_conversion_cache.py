"""The once-per-process conversion cache: what its key sees, and that the cache stays within its bound."""

from __future__ import annotations

import torch
from torch import nn

from evit_deploy.export.conversion_cache import ENV, ConversionCache, Converted, graph_key


class Scaled(nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.scale = scale
        self.register_buffer("offset", torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.scale + self.offset[:, None, None]


def key(module: nn.Module, size: int = 8, *extra: str) -> str | None:
    return graph_key(module, ("input",), (torch.zeros(1, 3, size, size),), *extra)


def test_the_key_is_the_module_bit_for_bit_at_the_input_specs():
    torch.manual_seed(0)
    a = Scaled(2.0)
    b = Scaled(2.0)
    b.load_state_dict(a.state_dict())
    assert key(a) == key(b) and key(a) is not None  # two objects, the same graph
    assert key(a) != key(a, 16) and key(a) != key(a, 8, "another converter version")
    with torch.no_grad():
        b.conv.weight[0, 0, 0, 0] += 1e-7  # one weight, one ulp or so
    assert key(a) != key(b)
    b.load_state_dict(a.state_dict())
    b.offset[1] = 1.0  # a buffer
    assert key(a) != key(b)
    b.load_state_dict(a.state_dict())
    b.scale = 2.5  # a plain attribute the forward reads
    assert key(a) != key(b)
    b.scale = 2.0
    assert key(a) == key(b)
    b.eval()  # the training flag
    assert key(a) != key(b)
    a.eval()
    assert key(a) == key(b)
    a.fn = lambda x: x  # a closure is only ever equal to itself
    b.fn = lambda x: x
    assert key(a) != key(b)


def test_a_module_with_hooks_is_never_reused():
    module = Scaled(1.0)
    handle = module.conv.register_forward_hook(lambda *args: None)
    assert key(module) is None
    handle.remove()
    assert key(module) is not None


def test_a_cache_folder_shares_conversions_between_processes(tmp_path, monkeypatch):
    """EVIT_DEPLOY_CONVERSION_CACHE: what one process converted, another (a new cache object) finds there."""
    monkeypatch.setenv(ENV, str(tmp_path / "conv"))
    ConversionCache().put("k1", Converted(b"flatbuffer", 12.5))
    found = ConversionCache().get("k1")
    assert found.data == b"flatbuffer" and found.seconds == 12.5 and str(tmp_path / "conv") in found.source
    (tmp_path / "conv" / "k2.tflite").write_bytes(b"half")  # a file without its record: not trusted
    assert ConversionCache().get("k2") is None and ConversionCache().get("k3") is None
    monkeypatch.delenv(ENV)
    assert ConversionCache().get("k1") is None  # not set: memory only


def test_the_cache_keeps_the_newest_within_its_bound(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    cache = ConversionCache(max_bytes=10)
    cache.put("a", Converted(b"1234", 1.0))
    cache.put("b", Converted(b"5678", 1.0))
    assert cache.get("a").data == b"1234"  # a is now the newest
    cache.put("c", Converted(b"9012", 1.0))  # 12 bytes: the oldest (b) goes
    assert cache.get("b") is None and cache.get("a") and cache.get("c")
    cache.put("d", Converted(b"x" * 11, 1.0))  # larger than the bound: not kept, nothing dropped for it
    assert cache.get("d") is None and cache.get("a")
    cache.put(None, Converted(b"1", 1.0))
    assert cache.get(None) is None
