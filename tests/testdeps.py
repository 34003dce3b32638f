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


ROOT = os.path.dirname(TESTS_DIR)


def cli(*args: str, env: dict[str, str | None] | None = None, script: bool = False, timeout: float = 600):
    """Run the real command line in a subprocess, on this checkout's code: ``python -m regnet_zoo ARGS`` or, with
    ``script=True``, the installed ``regnet-zoo`` console script. Offline (``HF_HUB_OFFLINE=1``) unless ``env``
    says otherwise; an ``env`` value of ``None`` removes that variable."""
    import shutil
    import subprocess
    import sys

    run_env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run_env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "plugins")] +
                                            ([run_env["PYTHONPATH"]] if run_env.get("PYTHONPATH") else []))
    for name, value in (env or {}).items():
        if value is None:
            run_env.pop(name, None)
        else:
            run_env[name] = value
    if script:
        exe = shutil.which("regnet-zoo")
        if exe is None:
            pytest.fail("the regnet-zoo console script is not installed (pip install -e .)")
        command = [exe, *args]
    else:
        command = [sys.executable, "-m", "regnet_zoo", *args]
    return subprocess.run(command, capture_output=True, text=True, env=run_env, timeout=timeout)
