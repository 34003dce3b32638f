"""Shared fixtures. torch is imported first: TensorFlow before triton (via torch._dynamo) segfaults."""

from __future__ import annotations

import importlib.util
import os
import sys

try:  # must precede any TensorFlow import in this process (see DESIGN.md, known pitfalls)
    import torch  # noqa: F401
except ImportError:
    pass

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # make tests/harness.py and tests/plugins importable


def require(*modules: str) -> None:
    """Skip when a framework module is missing locally; fail under CI, where every extra is installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        message = f"missing {', '.join(missing)} (install regnet-zoo[all,test])"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI installs every framework, so this is a failure, not a skip")
        pytest.skip(message)


@pytest.fixture
def fresh_host(monkeypatch):
    """A plugin host re-created for this test (and again afterwards), so env vars and toy plugins apply."""
    from regnet_zoo import plugins

    plugins.reset()
    yield plugins
    plugins.reset()
