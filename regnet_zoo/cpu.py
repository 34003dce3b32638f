"""What the CPU can do, for the framework plugins' bfloat16 fast paths (``fast="bf16"``). Pure Python: the flags
come from /proc/cpuinfo, as ``lscpu`` shows them."""

from __future__ import annotations

import functools
import warnings

EMULATED_BF16 = ("this CPU has neither AMX nor AVX-512 BF16 (lscpu flags amx_bf16 / avx512_bf16), so bf16 is "
                 "emulated and slower than fp32; use fast=True (fp32) here")


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags ``lscpu`` shows (from /proc/cpuinfo; empty when unavailable)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_amx_bf16() -> bool:
    """True when the CPU has AMX bf16 tiles (``lscpu`` flag ``amx_bf16``): where the bf16 path is meant to run."""
    return "amx_bf16" in cpu_flags()


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 dot products natively (AMX, or AVX-512 BF16 as on Zen 4 / Cooper Lake)."""
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def warn_if_bf16_is_emulated(stacklevel: int = 1) -> None:
    """Warn (``UserWarning``, ``EMULATED_BF16``) when a bf16 model is about to run on a CPU without native bf16;
    ``stacklevel`` counts from the caller, as ``warnings.warn``'s does."""
    if not cpu_has_native_bf16():
        warnings.warn(EMULATED_BF16, UserWarning, stacklevel=stacklevel + 1)
