"""No import order crashes (issue 12: ``import tensorflow; import regnet_zoo; rz.create(...)`` died with exit 139).

Why these few processes cover every ordered pair of {tensorflow, keras, keras_hub, jax, flax, torch, timm,
regnet_zoo}: the only crash is triton's native library loading after TensorFlow's. Triton is loaded by ``import
timm`` / ``torch._dynamo`` (so by a torch build), TensorFlow by ``tensorflow``, ``keras`` and ``keras_hub`` (and a
tf build). A permutation and its reverse together contain every ordered pair once each, so ``ORDER`` and
``reversed(ORDER)`` are two processes covering all 56 pairs; after the imports each process builds and runs
regnetx_002 in every framework, the forward one torch first, the reverse one tf first (so a torch build after a
TensorFlow one is covered too). Those two alone would miss the reported case, where triton comes *after*
TensorFlow *and* regnet_zoo is imported after TensorFlow (in the reverse order regnet_zoo comes first, in the
forward one timm precedes TensorFlow), so each TensorFlow entry point gets its own short process with
regnet_zoo after it and a torch build first, plus one where torch and timm are imported after TensorFlow.

Not covered, because no regnet_zoo code has run yet: ``import tensorflow; import timm`` with regnet_zoo not yet
imported crashes inside timm itself (see ``regnet_zoo/import_guard.py`` and the README).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest

from testdeps import TESTS_DIR, require

ORDER = ("timm", "torch", "jax", "flax", "tensorflow", "keras", "keras_hub", "regnet_zoo")
ALL_FRAMEWORKS = ("torch", "tf", "flax")

CASES = {
    "forward": (ORDER, ("torch", "flax", "tf")),
    "reverse": (tuple(reversed(ORDER)), ("tf", "flax", "torch")),
    "tensorflow-then-rz": (("tensorflow", "regnet_zoo"), ("torch", "tf", "flax")),
    "keras-then-rz": (("keras", "regnet_zoo"), ("torch", "flax", "tf")),
    "keras_hub-then-rz": (("keras_hub", "regnet_zoo"), ("torch", "tf", "flax")),
    "tf-torch-rz-timm": (("jax", "tensorflow", "torch", "regnet_zoo", "timm", "flax"), ("torch", "tf", "flax")),
}

SCRIPT = """
import importlib, sys
for name in {imports!r}:
    importlib.import_module(name)
import numpy as np
import regnet_zoo as rz
from harness import ops
rng = np.random.default_rng(0)
for fw in {frameworks!r}:
    model = rz.create("regnetx_002", framework=fw, num_classes=10)
    out = ops(fw).run(model, rng.standard_normal((2, 3, 32, 48)).astype("float32"))
    assert out.shape == (2, 10), (fw, out.shape)
    print(fw, "ok", flush=True)
"""


def test_cases_cover_every_ordered_pair():
    pairs = set()
    for imports, _ in CASES.values():
        pairs |= set(itertools.combinations(imports, 2))
    assert pairs >= set(itertools.permutations(ORDER, 2))


@pytest.mark.parametrize("case", list(CASES))
def test_import_order_then_build_every_framework(case):
    require("torch", "timm", "tensorflow", "keras", "keras_hub", "jax", "flax")
    imports, frameworks = CASES[case]
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "REGNET_ZOO_ALLOW_TRITON")}
    env["PYTHONPATH"] = os.pathsep.join([TESTS_DIR, *filter(None, [os.environ.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(imports=imports, frameworks=frameworks)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, (f"imports {imports} then builds {frameworks}: exit {proc.returncode}\n"
                                  f"{proc.stdout}\n{proc.stderr[-3000:]}")
    assert proc.stdout.split() == [w for fw in frameworks for w in (fw, "ok")]


PROBE = """
import importlib.util, sys
import tensorflow
import regnet_zoo
assert importlib.util.find_spec("triton") is not None  # a probe answers (transformers probes on import)
import transformers
from transformers import TFRegNetForImageClassification  # noqa: F401
try:
    import triton
except ModuleNotFoundError as e:
    assert "keeps triton out" in str(e), e
else:
    raise AssertionError("triton was imported after TensorFlow")
assert "triton" not in sys.modules
import torch.utils._triton as t
assert not t.has_triton_package()
print("ok")
"""


def test_probing_for_triton_after_tensorflow_does_not_raise():
    """The guard refuses the import, not the probe: transformers' ``find_spec("triton")`` on import raised
    ``ModuleNotFoundError`` (so did every HF TensorFlow benchmark row) before the refusal moved into the loader."""
    require("torch", "tensorflow", "transformers")
    env = {k: v for k, v in os.environ.items() if k not in ("REGNET_ZOO_ALLOW_TRITON",)}
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0 and proc.stdout.split() == ["ok"], f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
