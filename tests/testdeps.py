"""What the tests need from the environment: framework modules (missing = skip locally, failure under CI) and
the test folders."""

from __future__ import annotations

import importlib.util
import os

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
PLUGINS_DIR = os.path.join(TESTS_DIR, "plugins")


def require(*modules: str) -> None:
    """Skip when a module is missing locally; fail under CI, where every extra is installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        message = f"missing {', '.join(missing)} (install regnet-zoo[all,test] and tests/reference-libs.txt)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI installs every framework, so this is a failure, not a skip")
        pytest.skip(message)
