"""BN statistics averaged across devices (``axis_name``), on two host CPU devices in a subprocess.

XLA_FLAGS must be set before JAX initialises, so the check runs in a fresh interpreter
(tests/flax/flax_multidevice_check.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testdeps import require

require("jax", "flax")


def test_batch_norm_statistics_are_global_under_pmap_and_shard_map():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    script = Path(__file__).with_name("flax_multidevice_check.py")
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    print(proc.stdout)
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("OK"), proc.stdout + proc.stderr[-3000:]
