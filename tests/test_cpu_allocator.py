"""``regnet_zoo.cpu.keep_freed_memory``: glibc keeps freed memory for reuse (no page faults on each call's buffers),
and a user's own allocator choice wins. Each case runs in a fresh interpreter: the setting is process-wide."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Allocates (C malloc, as PyTorch's CPU allocator does), touches and frees a 64 MiB buffer (above glibc's largest dynamic mmap threshold, 32 MiB) ten times and
# prints keep_freed_memory()'s result and the minor page faults of the last nine rounds.
PROBE = """
import ctypes, resource, sys
from regnet_zoo import cpu
kept = cpu.keep_freed_memory() if sys.argv[1] == "keep" else None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rounds(n):
    for _ in range(n):
        a = libc.malloc(64 << 20); ctypes.memset(a, 1, 64 << 20); libc.free(a)
rounds(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(9)
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def probe(mode: str, **env) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**clean, **env}).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    kept, faults = probe("keep")
    assert kept == "True" and faults < pages // 10, faults  # 9 rounds reuse the same memory
    _, faults = probe("default")
    assert faults > 5 * pages, faults  # glibc's default: each round maps and faults in 64 MiB again


def test_a_users_allocator_settings_win():
    kept, _ = probe("keep", MALLOC_TOP_PAD_="0")
    assert kept == "False"
