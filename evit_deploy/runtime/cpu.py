"""What this machine's CPU can run: the facts a precision choice depends on (no runtime library imported; the
CPU's flags come from :mod:`evit_deploy.host`)."""

from __future__ import annotations

import platform

from ..host import cpu_flags

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 instructions OpenVINO's CPU plugin runs bf16 with


def bf16_problem() -> str | None:
    """Why this CPU cannot run bf16 natively, or None when it can (AVX512_BF16 or AMX-BF16)."""
    flags = set(cpu_flags())
    if flags & set(BF16_FLAGS):
        return None
    if not flags:
        return f"cannot tell whether this CPU ({platform.machine()}) runs bf16: no /proc/cpuinfo"
    return (f"this CPU ({platform.machine()}) cannot run bf16: it has neither AVX512_BF16 nor AMX-BF16 "
            "(Intel Sapphire Rapids / Cooper Lake or AMD Zen 4 and later have them)")


def precision_problem(precision: str) -> str | None:
    """Why this machine cannot run ``precision`` on its CPU (None when it can or the precision needs nothing)."""
    return bf16_problem() if precision == "bf16" else None
