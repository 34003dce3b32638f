"""examples/flax_detection.py: one optax training step and one prediction on synthetic data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from testdeps import require

require("jax", "flax", "optax")

import jax  # noqa: E402
from flax import nnx  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flax_detection.py"


def load_example():
    spec = importlib.util.spec_from_file_location("flax_detection_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_training_step_and_one_prediction():
    ex = load_example()
    # the pretrained recipe's frozen stem + s1 on random weights (force=True); XLA's grouped conv: fastest compile
    model = ex.make_detector("regnetx_002", num_classes=3, frozen_stages=1, force=True, conv_impl="xla")
    assert model.strides == (8, 16, 32)
    model.train()
    optimizer = ex.make_optimizer(model)
    before = nnx.state(model).to_pure_dict()
    images, boxes, classes = ex.synthetic_batch(np.random.default_rng(0), batch=2, size=64)
    loss = float(ex.train_step(model, optimizer, images, boxes, classes))
    assert np.isfinite(loss) and loss > 0
    after = nnx.state(model).to_pure_dict()

    def changed(*path):
        a, b = before, after
        for p in path:
            a, b = a[p], b[p]
        return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    assert not changed("backbone", "stem") and not changed("backbone", "s1")  # frozen: no update, no decay, no stats
    assert changed("backbone", "s2") and changed("backbone", "s4") and changed("fpn") and changed("head")

    model.eval()
    scores, labels, pred = ex.predict(model, images[:1])
    assert scores.shape == labels.shape == (1, 10) and pred.shape == (1, 10, 4)
    assert np.all(np.diff(np.asarray(scores), axis=1) <= 0) and np.all((labels >= 0) & (labels < 3))
