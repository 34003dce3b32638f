"""The ways to compute a grouped 3x3 conv agree (values and gradients), the choice between them, and the XLA options
the inference jits compile with."""

from __future__ import annotations

import numpy as np
import pytest

from testdeps import require

require("jax", "flax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import regnet_zoo as rz  # noqa: E402
from harness import rel_err  # noqa: E402
from regnet_zoo_flax.grouped_conv import (SPLIT_MAX_GROUPS, SPLIT_TRAIN_MAX_GROUPS, auto_impl,  # noqa: E402
                                          block_shapes, choose_impls, tune)
from regnet_zoo_flax.ops import CONV_IMPLS, conv2d  # noqa: E402


@pytest.mark.parametrize("size,channels,groups,stride", [(8, 16, 2, 1), (15, 24, 3, 2), (7, 64, 8, 1),
                                                         (9, 40, 5, 2), (1, 12, 4, 2)])
def test_impls_agree_in_value_and_gradient(size, channels, groups, stride):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, size, size, channels)).astype(np.float32))
    k = jnp.asarray(rng.normal(size=(3, 3, channels // groups, channels)).astype(np.float32))
    results = {}
    for impl in CONV_IMPLS:
        f = jax.jit(lambda x, k, impl=impl: conv2d(x, k, stride=stride, groups=groups, impl=impl))
        y = f(x, k)
        gx, gk = jax.grad(lambda x, k: jnp.sum(jnp.sin(f(x, k))), argnums=(0, 1))(x, k)
        results[impl] = (y, gx, gk)
    out = results["xla"][0]
    assert out.shape == (2, (size - 1) // stride + 1, (size - 1) // stride + 1, channels)
    for impl in ("split", "loop"):
        for got, want in zip(results[impl], results["xla"]):
            assert rel_err(got, want) < 1e-5, impl


def test_auto_rule():
    assert auto_impl(1, 64, "cpu") == "xla"
    assert auto_impl(SPLIT_MAX_GROUPS, 64, "cpu") == "split"
    assert auto_impl(SPLIT_MAX_GROUPS + 1, 64, "cpu") == "xla"
    assert auto_impl(17, 64, "gpu") == auto_impl(17, 64, "tpu") == "xla"
    impls = dict(choose_impls(rz.plan("regnety_040"), "auto"))  # groups 2, 3, 8, 17
    expected = {1: "split", 2: "split", 3: "split", 4: "xla"} if jax.default_backend() == "cpu" else {}
    for name, impl in impls.items():
        assert impl == expected.get(int(name[1]), "xla"), name
    assert len(impls) == 22
    assert dict(choose_impls(rz.plan("regnety_040"), {"s4.b2": "xla"}))["s4.b2"] == "xla"
    # training mode: the loop's gradient is slow, so every grouped conv is split on CPU
    assert auto_impl(SPLIT_MAX_GROUPS + 1, 64, "cpu", training=True) == "split"
    assert auto_impl(17, 64, "gpu", training=True) == "xla"
    train = dict(choose_impls(rz.plan("regnety_040"), "auto", training=True))
    assert set(train.values()) == ({"split"} if jax.default_backend() == "cpu" else {"xla"})
    # ... except RegNetZ's 100+ groups of 4-8 channels (s3 / s4), where unrolling compiles for minutes
    assert auto_impl(SPLIT_TRAIN_MAX_GROUPS, 8, "cpu", training=True) == "split"
    assert auto_impl(SPLIT_TRAIN_MAX_GROUPS + 1, 8, "cpu", training=True) == "loop"
    if jax.default_backend() == "cpu":
        train = dict(choose_impls(rz.plan("regnetz_005"), "auto", training=True))  # groups 16, 40, 104, 256
        assert {name[:2]: impl for name, impl in train.items()} == {"s1": "split", "s2": "split", "s3": "loop",
                                                                     "s4": "loop"}


def test_model_switches_the_grouped_conv_with_the_mode():
    model = rz.create("regnetx_002", framework="flax")
    few, many = model.s1.b1.conv2.conv, model.s4.b1.conv2.conv  # 3 and 46 groups
    if jax.default_backend() == "cpu":
        assert (few.impl, few.train_impl) == ("split", "split") and (many.impl, many.train_impl) == ("xla", "split")
    explicit = rz.create("regnetx_002", framework="flax", conv_impl="loop").s4.b1.conv2.conv
    assert (explicit.impl, explicit.train_impl) == ("loop", "loop")


def test_tune_returns_a_usable_mapping(capsys):
    plan = rz.plan("regnetx_002")
    assert [s[1:] for s in block_shapes(plan, 64)] == [(32, 24, 3, 2), (16, 56, 7, 2), (8, 152, 19, 2),
                                                      (4, 152, 19, 1), (4, 368, 46, 2), (2, 368, 46, 1)]
    choice = tune(plan, batch=1, size=64, repeats=1)
    assert "groups= 46" in capsys.readouterr().out
    assert set(choice) == {b.name for s in plan.stages for b in s.blocks} and set(choice.values()) <= set(CONV_IMPLS)
    model = rz.create("regnetx_002", framework="flax", conv_impl=choice)
    assert model.s4.b3.conv2.conv.impl == choice["s4.b3"]


def test_inference_compiles_without_ynnpack_on_cpu():
    """``xla_options``: the plugin's inference jits turn YNNPACK off on CPU (5-7x faster grouped convs there);
    a plain ``jax.jit`` keeps XLA's default (YNNPACK on, the faster choice for training steps)."""
    from regnet_zoo_flax.xla_options import inference_options, jit_inference

    assert inference_options("gpu") == inference_options("tpu") == ()
    rng = np.random.default_rng(0)
    x, k = (jnp.asarray(rng.normal(size=s).astype(np.float32)) for s in ((2, 28, 28, 128), (3, 3, 64, 128)))
    conv = lambda x, k: conv2d(x, k, stride=1, groups=2, impl="xla")  # noqa: E731
    plain, ours = (f(conv).lower(x, k).compile().as_text() for f in (jax.jit, jit_inference))
    assert "ynn_fusion" not in ours
    if jax.default_backend() == "cpu" and inference_options("cpu"):
        assert "ynn_fusion" in plain
    assert rel_err(jit_inference(conv)(x, k), jax.jit(conv)(x, k)) < 1e-5


def test_inference_jit_runs_inside_a_callers_jit():
    """JAX refuses compiler options on a nested jit: ``predict`` / ``inference_fn`` inside the user's ``jax.jit``
    (or ``jax.export``) must still trace."""
    model = rz.create("regnetx_002", framework="flax", num_classes=5)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype(np.float32))
    outer = jax.jit(lambda x: model.inference_fn()(x) * 2)
    assert rel_err(outer(x), model.predict(x) * 2) < 1e-5
