"""Helpers shared by the TensorFlow plugin tests (tests/tf/test_tf_*.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np

import regnet_zoo as rz
from regnet_zoo.frameworks import BuildRequest, WeightSource

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tf_modules():
    """(tf, keras) imported through the plugin, which orders the imports safely and selects the backend."""
    from regnet_zoo_tf._tf import keras, tf

    return tf, keras


def request(name: str, *, num_classes: int = 1000, features_only: bool = False, out_indices=(1, 2, 3, 4),
            in_chans: int = 3, state=None, **options) -> BuildRequest:
    """A BuildRequest as the host makes it, optionally carrying canonical weights (as if pretrained=...)."""
    weights = None if state is None else WeightSource(state, "test weights",
                                                      state["head.fc.weight"].shape[0] if "head.fc.weight" in state
                                                      else 0)
    return rz.api.build_request(name, "tf", num_classes=num_classes, features_only=features_only,
                                out_indices=tuple(out_indices), in_chans=in_chans, pretrained=weights or False,
                                **options)


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


def nchw(x) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(np.asarray(x), (0, 3, 1, 2)))


def run_script(code: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python (for things that must happen before TensorFlow initialises)."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=ROOT)
