"""What this machine's CPU can run: the facts a precision choice depends on (no runtime library imported)."""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 instructions OpenVINO's CPU plugin runs bf16 with


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none: not Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def bf16_problem() -> str | None:
    """Why this CPU cannot run bf16 natively, or None when it can (AVX512_BF16 or AMX-BF16)."""
    flags = cpu_flags()
    if flags & set(BF16_FLAGS):
        return None
    if not flags:
        return f"cannot tell whether this CPU ({platform.machine()}) runs bf16: no /proc/cpuinfo"
    return (f"this CPU ({platform.machine()}) cannot run bf16: it has neither AVX512_BF16 nor AMX-BF16 "
            "(Intel Sapphire Rapids / Cooper Lake or AMD Zen 4 and later have them)")


def precision_problem(precision: str) -> str | None:
    """Why this machine cannot run ``precision`` on its CPU (None when it can or the precision needs nothing)."""
    return bf16_problem() if precision == "bf16" else None
