"""Project hygiene: the README's commands are the ones CI runs, and the wheel ships the registry."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_has_one_install_command_and_ci_runs_every_test_command():
    install_and_demo, *tests = readme_commands()
    assert "regnet-zoo features" in install_and_demo
    assert [t.split(" && ")[-1] for t in tests] == [
        "python -m pytest -q -n 2", "python -m pytest -q -p no:xdist -m transformers5 tests/test_transformers_api.py",
        "python -m pytest -q -n 2 -m slow"]
    ci = (ROOT / ".ci" / "run").read_text()
    for step in (step for test in tests for step in test.split(" && ")):
        assert re.search(re.escape(step.replace("pip install", "").strip()), ci), f"CI does not run: {step}"


def test_wheel_ships_registry_and_plugins(tmp_path):
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, timeout=300)
    (wheel,) = tmp_path.glob("regnet_zoo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "regnet_zoo/registry.yaml" in names and "regnet_zoo/data/sample.png" in names
    for plugin in ("regnet_zoo_torch", "regnet_zoo_tf", "regnet_zoo_flax"):
        assert f"{plugin}/__init__.py" in names
    text = zipfile.ZipFile(wheel).read("regnet_zoo/registry.yaml").decode()
    assert text == (ROOT / "registry.yaml").read_text()


FRAMEWORK_PACKAGES = {"torch", "torchvision", "timm", "tensorflow", "keras", "keras_hub", "tf_keras", "jax", "jaxlib",
                      "flax", "optax", "regnet_zoo_torch", "regnet_zoo_tf", "regnet_zoo_flax"}


def test_the_host_package_imports_no_framework_anywhere():
    """Not even lazily inside a function: everything framework-specific goes through a registered backend."""
    import ast

    found = []
    for path in sorted((ROOT / "regnet_zoo").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                      if n.split(".")[0] in FRAMEWORK_PACKAGES]
    assert not found, found
