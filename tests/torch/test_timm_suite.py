"""timm's own ``tests/test_models.py`` passes on regnet-zoo's torch models (through ``timm_shim.py``).

The test file comes from the sdist of the installed timm release (pinned in pyproject), fetched with
``pip download --no-binary :all: --no-deps timm==<version>`` and cached under ``~/.cache/regnet-zoo``; only its
``tests/`` and ``pyproject.toml`` (timm's pytest markers) are used, never its package code. Each run is a pytest
subprocess; every selected test must pass, and each variant must have run the whole per-model set. The default run
covers ``regnetx_002`` (the variant timm's file also names in its fixed-model tests); ``-m slow`` runs every other
variant, the largest ones on the meta device only (timm's config test), as timm's CI excludes them too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

import pytest

from testdeps import require

require("torch", "timm", "torchvision")

import regnet_zoo as rz  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORE = ("regnetx_002",)
ABSTRACT_PARAMS = 60e6  # larger variants (regnety_160, regnetx_320, regnety_320 and the SEER / SWAG trunks) run
# timm's meta-device config test only: TorchScript / FX / backward on 84M-145M parameters dominated the slow set
# timm's per-model tests (test_model_default_cfgs runs once per weight tag) and its fixed-model tests naming
# regnetx_002; the network tests (pretrained downloads) are deselected
PER_MODEL = {"test_model_forward", "test_model_backward", "test_model_default_cfgs", "test_model_forward_torchscript",
             "test_model_forward_features", "test_model_forward_intermediates_features",
             "test_model_forward_intermediates", "test_prune_intermediate_layers_contract", "test_model_forward_fx",
             "test_model_backward_fx", "test_model_forward_fx_torchscript"}
FIXED = {"regnetx_002": {"test_head_hidden_size", "test_model_forward_torchscript_with_features_fx"},
         "regnetz_005": {"test_prune_intermediate_layers_params_used"}}  # timm's tests naming one of our variants


@pytest.fixture(scope="session")
def timm_tests() -> Path:
    """timm's sdist ``tests/`` for the installed timm version (downloaded once, then cached)."""
    ver = version("timm")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "regnet-zoo" / f"timm-{ver}-tests"
    if not (cache / "tests" / "test_models.py").exists():
        download = cache.with_name(cache.name + f".{os.getpid()}")
        download.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps",
                        f"timm=={ver}", "-d", str(download)], check=True, timeout=600)
        with tarfile.open(download / f"timm-{ver}.tar.gz") as tar:
            wanted = [m for m in tar.getmembers() if m.name.startswith(f"timm-{ver}/tests/")
                      or m.name == f"timm-{ver}/pyproject.toml"]
            tar.extractall(download, members=wanted, filter="data")
        try:
            (download / f"timm-{ver}").rename(cache)
        except OSError:  # another worker got there first
            assert (cache / "tests" / "test_models.py").exists()
        shutil.rmtree(download, ignore_errors=True)
    return cache


def run_timm_suite(suite: Path, variants, abstract, tmp_path: Path) -> dict:
    report = tmp_path / "report.json"
    env = {**os.environ, "REGNET_ZOO_TIMM_VARIANTS": ",".join(variants), "REGNET_ZOO_TIMM_ABSTRACT": ",".join(abstract),
           "REGNET_ZOO_TIMM_REPORT": str(report),
           "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])}
    env.pop("GITHUB_ACTIONS", None)  # timm's file narrows its model lists on GitHub; we choose the variants
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "timm_shim", "-p", "no:cacheprovider",
                           "-p", "no:xdist", "-W", "ignore::FutureWarning", "--rootdir", str(suite), "-c",
                           str(suite / "pyproject.toml"), str(suite / "tests" / "test_models.py")],
                          cwd=suite, env=env, capture_output=True, text=True, timeout=3600)
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    outcomes = json.loads(report.read_text())["outcomes"]
    failed = {v: [k for k in c if not k.startswith("passed:")] for v, c in outcomes.items()}
    assert not any(failed.values()) and proc.returncode == 0, (failed, proc.stdout[-6000:])
    counts = {v: sum(c.values()) for v, c in outcomes.items()}
    print(f"timm {version('timm')} tests/test_models.py, passed per variant: {counts}")
    return outcomes


def check_variant(outcomes: dict, name: str, abstract: bool) -> None:
    ran = {k.split(":", 1)[1]: n for k, n in outcomes[name].items()}
    tags = len(rz.get_variant(name).weights)  # test_model_default_cfgs runs once per tag (none without weights)
    want = {"test_model_default_cfgs"} if abstract else PER_MODEL | FIXED.get(name, set())
    want = want if tags else want - {"test_model_default_cfgs"}
    assert set(ran) == want, (name, sorted(set(ran) ^ want))
    assert ran.get("test_model_default_cfgs", 0) == tags


def test_timm_model_suite_core(timm_tests, tmp_path):
    outcomes = run_timm_suite(timm_tests, CORE, (), tmp_path)
    assert set(outcomes) == set(CORE)
    for name in CORE:
        check_variant(outcomes, name, abstract=False)


CHUNKS = 3  # the every-variant run in 3 subprocesses of about equal size, so pytest-xdist can spread them


def every_other_variant(chunk: int) -> list[str]:
    """The non-core variants of ``chunk``: dealt round-robin by parameter count, so the chunks are of about equal cost."""
    rest = sorted((n for n in rz.list_variants(framework="torch") if n not in CORE), key=lambda n: -rz.plan(n).params())
    return rest[chunk::CHUNKS]


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_timm_model_suite_every_variant(timm_tests, tmp_path, chunk):
    rest = every_other_variant(chunk)
    abstract = [n for n in rest if rz.plan(n).params() > ABSTRACT_PARAMS]
    outcomes = run_timm_suite(timm_tests, rest, abstract, tmp_path)
    assert set(outcomes) == set(rest)
    for name in rest:
        check_variant(outcomes, name, abstract=name in abstract)
