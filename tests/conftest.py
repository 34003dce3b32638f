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

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
PLUGINS_DIR = os.path.join(TESTS_DIR, "plugins")
sys.path[:0] = [TESTS_DIR, PLUGINS_DIR]  # tests/harness.py and the toy plugins in tests/plugins


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


@pytest.fixture
def toy_host(fresh_host):
    """A fresh host with the toy framework and toy variants plugins registered."""
    import toy_framework
    import toy_variants

    host = fresh_host.get_host()
    host.register(toy_framework, "toy_framework", "tests")
    host.register(toy_variants, "toy_variants", "tests")
    return host
