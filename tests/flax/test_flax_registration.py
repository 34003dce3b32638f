"""The plugin registers without importing JAX or Flax, under both names, and builds X and Y alike."""

from __future__ import annotations

import subprocess
import sys

from testdeps import require


def test_registering_and_listing_import_no_framework():
    code = ("import sys, regnet_zoo as rz, regnet_zoo_flax\n"
            "fw = {f.name: f for f in rz.list_frameworks()}\n"
            "assert 'flax' in fw and 'jax' in fw['flax'].aliases, fw\n"
            "assert 'regnetx_002' in rz.list_variants(framework='jax')\n"
            "rz.feature_info('regnety_040')\n"
            "print(sorted(m for m in ('jax', 'flax', 'torch', 'tensorflow') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_headline_call_builds_x_and_y():
    require("jax", "flax")
    from flax import nnx

    import regnet_zoo as rz

    for name in ("regnety_040", "regnetx_040"):
        model = rz.create(name, framework="flax")
        assert isinstance(model, nnx.Module)
        assert sum(a.size for a in __import__("jax").tree.leaves(nnx.state(model, nnx.Param))) == \
            rz.plan(name).params()
