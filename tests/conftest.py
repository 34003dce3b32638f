"""Shared fixtures. torch is imported first: TensorFlow before triton (via torch._dynamo) segfaults."""

from __future__ import annotations

import fcntl
import os
import sys

try:  # must precede any TensorFlow import in this process (see DESIGN.md, known pitfalls): torch._dynamo pulls in
    import torch  # noqa: F401   triton, which segfaults when imported after TensorFlow; transformers imports it
    import torch._dynamo  # noqa: F401
except ImportError:
    pass

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [TESTS_DIR, os.path.join(TESTS_DIR, "plugins")]  # testdeps, harness and the toy plugins


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


@pytest.fixture(autouse=True)
def _bigmem_one_at_a_time(request):
    """Tests marked ``bigmem`` (several GB at their peak: the largest variants' training steps) hold a lock shared by
    the xdist workers of this run, so two of them never run at once: the machine needs room for one of them beside
    whatever the other worker runs (``-n 2`` on 24 GB)."""
    if request.node.get_closest_marker("bigmem") is None or "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    # the workers' base temp dirs are popen-gw0, popen-gw1, ... inside this run's own
    lock = request.getfixturevalue("tmp_path_factory").getbasetemp().parent / "bigmem.lock"
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when f is closed, or when the worker dies
        yield
