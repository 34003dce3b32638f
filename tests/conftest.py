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


@pytest.fixture(scope="session", autouse=True)
def _jax_compilation_cache(tmp_path_factory):
    """One JAX compilation cache for this run, shared by its xdist workers (fresh every run): the many tests that
    compile the same small model at the same shapes compile it once. Exact: a hit needs the same HLO and options."""
    if "jax" in sys.modules:  # test modules are imported at collection, before any test compiles
        import jax

        run_dir = tmp_path_factory.getbasetemp()
        run_dir = run_dir.parent if "PYTEST_XDIST_WORKER" in os.environ else run_dir
        jax.config.update("jax_compilation_cache_dir", str(run_dir / "jax-cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    yield
