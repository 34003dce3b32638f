"""The linen form: same variable tree and numbers as the NNX form, usable as a submodule of a user's linen model."""

from __future__ import annotations

import numpy as np
import pytest

from testdeps import require

require("jax", "flax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import linen as nn  # noqa: E402
from flax import nnx  # noqa: E402

import regnet_zoo as rz  # noqa: E402
from harness import ops, random_input, random_state, rel_err  # noqa: E402
from regnet_zoo_flax.weights import export_canonical, load_canonical  # noqa: E402

NAME = "regnety_002"


def nhwc(batch=2, size=64, seed=1):
    return np.random.default_rng(seed).normal(size=(batch, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def pair():
    """(NNX model, linen (module, variables)) with the same random canonical weights."""
    state = random_state(NAME)
    model = load_canonical(rz.create(NAME, framework="flax"), state)
    linen = load_canonical(rz.create(NAME, framework="flax", api="linen"), state)
    return model, linen


def test_same_tree_and_same_initial_values():
    model = rz.create(NAME, framework="flax")
    module, variables = rz.create(NAME, framework="flax", api="linen")
    assert isinstance(module, nn.Module) and set(variables) == {"params", "batch_stats"}
    _, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    for got, want in ((params.to_pure_dict(), variables["params"]), (stats.to_pure_dict(), variables["batch_stats"])):
        assert jax.tree.structure(got) == jax.tree.structure(want)
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)))


def test_linen_model_carries_timms_conventions():
    """issue 14: the linen pair carries what the NNX model carries, and still unpacks as (module, variables)."""
    tag = "regnetx_002.pycls_in1k"
    linen = rz.create(tag, framework="flax", api="linen")
    nnx_model = rz.create(tag, framework="flax")
    assert linen.pretrained_cfg == nnx_model.pretrained_cfg and linen.pretrained_cfg["tag"] == "pycls_in1k"
    assert (linen.weight_tag, linen.variant_name) == (nnx_model.weight_tag, "regnetx_002")
    assert rz.data_config(linen) == rz.data_config(tag)
    module, variables = linen
    assert module is linen.module and variables is linen.variables


def test_same_outputs_in_inference_and_training(pair):
    model, (module, variables) = pair
    x = nhwc()
    ref = model.predict(x, output_hidden_states=True)
    out = jax.jit(lambda v, x: module.apply(v, x, output_hidden_states=True))(variables, x)
    assert rel_err(out.logits, ref.logits) < 1e-6
    assert all(rel_err(a, b) < 1e-6 for a, b in zip(out.hidden_states, ref.hidden_states))

    @jax.jit
    def linen_train(v, x):
        return module.apply(v, x, train=True, mutable=["batch_stats"])

    logits, mutated = linen_train(variables, x)
    train_model = nnx.clone(model)
    train_model.train()
    nnx_logits = nnx.jit(lambda m, x: m(x))(train_model, x)
    assert rel_err(logits, nnx_logits) < 1e-6
    nnx_stats = nnx.state(train_model, nnx.BatchStat).to_pure_dict()
    for a, b, old in zip(jax.tree.leaves(mutated["batch_stats"]), jax.tree.leaves(nnx_stats),
                         jax.tree.leaves(variables["batch_stats"])):
        assert rel_err(a, b) < 1e-6 and not np.array_equal(a, old)


def test_linen_training_step_and_frozen_stages():
    import optax

    state = random_state(NAME)
    module, variables = load_canonical(rz.create(NAME, framework="flax", api="linen", frozen_stages=2, force=True,
                                                 conv_impl="xla"), state)
    tx = optax.sgd(0.1)
    opt_state = tx.init(variables["params"])
    x, labels = nhwc(), np.array([1, 2])

    @jax.jit
    def step(params, batch_stats, opt_state):
        def loss_fn(p):
            out, mutated = module.apply({"params": p, "batch_stats": batch_stats}, x, train=True, labels=labels,
                                        mutable=["batch_stats"])
            return out.loss, mutated["batch_stats"]

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, opt_state, loss, grads

    params, stats, opt_state, loss, grads = step(variables["params"], variables["batch_stats"], opt_state)
    for top in ("stem", "s1", "s2"):
        assert not any(np.any(g) for g in jax.tree.leaves(grads[top])), top
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(stats[top]),
                                                        jax.tree.leaves(variables["batch_stats"][top])))
    assert all(np.any(g) for g in jax.tree.leaves(grads["s3"]))
    assert not np.array_equal(stats["s3"]["b1"]["conv1"]["bn"]["mean"],
                              variables["batch_stats"]["s3"]["b1"]["conv1"]["bn"]["mean"])
    _, _, _, loss2, _ = step(params, stats, opt_state)
    assert float(loss2) < float(loss)


def test_linen_dropout_draws_from_the_apply_rngs():
    module, variables = rz.create(NAME, framework="flax", api="linen", drop_rate=0.5, drop_path_rate=0.2)
    assert set(variables) == {"params", "batch_stats"}  # no dropout keys among the variables
    x = nhwc()

    def train(key):
        return module.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(key)})[0]

    assert np.array_equal(train(1), train(1)) and not np.allclose(train(1), train(2))
    assert np.array_equal(module.apply(variables, x), rz.create(NAME, framework="flax", api="linen").module.apply(
        variables, x))


def test_embeds_as_a_submodule_of_a_user_linen_model():
    state = {k: v for k, v in random_state(NAME).items() if not k.startswith("head.")}
    backbone, bb_vars = load_canonical(rz.create(NAME, framework="flax", api="linen", features_only=True,
                                                 out_indices=(2, 3, 4), conv_impl="xla"), state)

    class Detector(nn.Module):
        backbone: nn.Module

        @nn.compact
        def __call__(self, x, train: bool = False):
            feats = self.backbone(x, train=train)
            return feats, [nn.Conv(16, (1, 1), name=f"lateral{i}")(f) for i, f in enumerate(feats)]

    det = Detector(backbone)
    x = nhwc()
    variables = jax.jit(det.init)(jax.random.key(0), x)
    assert jax.tree.structure(variables["params"]["backbone"]) == jax.tree.structure(bb_vars["params"])
    variables = {"params": {**variables["params"], "backbone": bb_vars["params"]},
                 "batch_stats": {"backbone": bb_vars["batch_stats"]}}
    (feats, laterals), mutated = jax.jit(lambda v, x: det.apply(v, x, train=True, mutable=["batch_stats"]))(
        variables, x)
    ref, ref_stats = jax.jit(lambda v, x: backbone.apply(v, x, train=True, mutable=["batch_stats"]))(bb_vars, x)
    assert [lat.shape[-1] for lat in laterals] == [16, 16, 16]
    assert all(rel_err(a, b) < 1e-6 for a, b in zip(feats, ref))
    assert all(rel_err(a, b) < 1e-6 for a, b in zip(jax.tree.leaves(mutated["batch_stats"]["backbone"]),
                                                    jax.tree.leaves(ref_stats["batch_stats"])))
    assert [f.channels for f in backbone.feature_info] == [56, 152, 368]


def test_hooks_work_on_the_linen_pair(pair):
    """The four framework hooks accept the linen pair too (runner on NCHW numpy, bit-exact export)."""
    model, linen = pair
    o = ops("flax")
    x = random_input()
    assert rel_err(o.run(linen, x), o.run(model, x)) < 1e-6
    exported = o.export(linen)
    state = random_state(NAME)
    assert exported.keys() == state.keys() and all(np.array_equal(exported[k], v) for k, v in state.items())
    module, variables = linen
    with pytest.raises(TypeError, match="unfreeze"):
        from flax.core import freeze
        load_canonical((module, freeze(variables)), state)
    abstract = rz.create(NAME, framework="flax", api="linen", abstract=True)
    assert all(isinstance(a, jax.ShapeDtypeStruct) for a in jax.tree.leaves(abstract.variables))
    assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(abstract.variables["params"])) == \
        rz.plan(NAME).params()
    cf_module, cf_vars = load_canonical(rz.create(NAME, framework="flax", api="linen",
                                                  data_format="channels_first"), state)
    out = jax.jit(cf_module.apply)(cf_vars, jnp.asarray(x))
    assert rel_err(out, o.run(model, x)) < 1e-5


@pytest.mark.parametrize("conv_impl", ("loop", pytest.param("split", marks=pytest.mark.slow)))
def test_dilated_linen_and_grouped_conv_impls_agree(conv_impl):
    """output_stride=8: the linen form and every grouped-conv impl compute the NNX model's dilated network."""
    state = random_state(NAME)
    model = load_canonical(rz.create(NAME, framework="flax", output_stride=8), state)
    module, variables = load_canonical(rz.create(NAME, framework="flax", api="linen", output_stride=8), state)
    other = load_canonical(rz.create(NAME, framework="flax", output_stride=8, conv_impl=conv_impl), state)
    x = nhwc()
    ref = model.predict(x, output_hidden_states=True)
    assert [h.shape[1] for h in ref.hidden_states] == [32, 16, 8, 8, 8]
    out = module.apply(variables, x, output_hidden_states=True)
    assert rel_err(out.logits, ref.logits) < 1e-6
    assert rel_err(other.predict(x), ref.logits) < 1e-5
