"""What the CPU can do, for the framework plugins' bfloat16 fast paths (``fast="bf16"``), and the C allocator
setting their CPU fast paths want. Pure Python: the flags come from /proc/cpuinfo, as ``lscpu`` shows them; the
allocator is set through ``ctypes``."""

from __future__ import annotations

import ctypes
import functools
import os
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


# glibc's mallopt parameters, and how much freed memory the process keeps for reuse
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_FREED_BYTES = 1 << 30
# a user's own allocator choice, which keep_freed_memory leaves alone
ALLOCATOR_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
ALLOCATOR_PRELOADS = ("jemalloc", "tcmalloc", "mimalloc")


@functools.lru_cache(maxsize=None)
def keep_freed_memory() -> bool:
    """Have glibc's ``malloc`` keep up to ``KEEP_FREED_BYTES`` (1 GiB) of freed memory for reuse, instead of
    unmapping each large block on ``free`` and trimming the heap (``mallopt`` ``M_MMAP_THRESHOLD`` and
    ``M_TRIM_THRESHOLD``). A framework that takes each activation from ``malloc`` (PyTorch on CPU) otherwise
    page-faults freshly mapped memory on every call: the torch fast path on regnetx_004, batch 8, took 6,000-7,800
    minor page faults and 29-32 ms a call, and 1 fault and 22-23 ms with this (2-core Zen 5).

    Process-wide, once. Returns whether it took effect: not on a C library other than glibc, and not when the user
    chose an allocator (``MALLOC_*_`` variables, or jemalloc / tcmalloc / mimalloc in ``LD_PRELOAD``).
    """
    preload = os.environ.get("LD_PRELOAD", "")
    if any(k in os.environ for k in ALLOCATOR_ENV) or any(lib in preload for lib in ALLOCATOR_PRELOADS):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: another libc's mallopt (if any) takes other parameters
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_FREED_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES))
