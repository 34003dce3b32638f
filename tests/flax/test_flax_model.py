"""The flax plugin's NNX models: structure from the plan, outputs, modes, options, input errors, weights."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from testdeps import require

require("jax", "flax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

import regnet_zoo as rz  # noqa: E402
from harness import loaded_model, random_state, rel_err  # noqa: E402
from regnet_zoo.errors import WeightsError  # noqa: E402
from regnet_zoo.keys import canonical_shapes  # noqa: E402
from regnet_zoo.outputs import RegNetOutput  # noqa: E402
from regnet_zoo.pretrained_cfg import pretrained_cfg  # noqa: E402
from regnet_zoo_flax.nnx_model import BatchNorm, GroupNorm, RegNet  # noqa: E402
from regnet_zoo_flax.weights import export_canonical, load_canonical  # noqa: E402

SMALL, SMALL_Y = "regnetx_002", "regnety_002"
ALL = (0, 1, 2, 3, 4)


def nhwc(batch=2, size=64, chans=3, seed=1):
    return np.random.default_rng(seed).normal(size=(batch, size, size, chans)).astype(np.float32)


def create(name=SMALL, **kwargs):
    return rz.create(name, framework="flax", **kwargs)


def loaded(name=SMALL, num_classes=1000, **kwargs):
    return loaded_model("flax", name, num_classes, **kwargs)


def batch_norms(model, kind=BatchNorm) -> dict[tuple, BatchNorm]:
    return {path: m for path, m in nnx.iter_modules(model) if isinstance(m, kind)}


def n_batch_norms(plan) -> int:
    """Norm layers of ``plan``: stem, three per block, the shortcut conv's (none of these two when preact) and
    final_conv's."""
    post = not plan.preact
    return post + sum(3 + (post and b.shortcut_conv) for s in plan.stages for b in s.blocks) + \
        bool(plan.final_conv_width)


@nnx.jit(static_argnames=("output_hidden_states",))
def fwd(model, x, output_hidden_states=False, labels=None):
    """``model(...)`` compiled: one XLA compile per structure instead of one per op in eager mode."""
    return model(x, output_hidden_states=output_hidden_states, labels=labels)


@nnx.jit
def loss_grads(model, x, labels):
    return nnx.grad(lambda m: m(x, labels=labels).loss)(model)


@pytest.fixture(scope="module")
def small():
    return loaded(SMALL)


# -- structure ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", rz.list_variants(framework="flax"))
def test_abstract_structure_follows_the_plan(name):
    """Every registry variant, shapes only: canonical keys and shapes, grouped kernels, SE widths, parameter count."""
    plan = rz.plan(name)
    model = create(name, abstract=True)
    assert isinstance(model, nnx.Module)
    params = nnx.state(model, nnx.Param)
    assert all(isinstance(a, jax.ShapeDtypeStruct) for a in jax.tree.leaves(params))
    assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params)) == plan.params(1000)
    for stage in plan.stages:
        for j, b in enumerate(stage.blocks, start=1):
            block = getattr(getattr(model, stage.name), f"b{j}")
            conv2 = block.conv2 if plan.preact else block.conv2.conv  # preact blocks: bare convs
            assert conv2.kernel.shape == (3, 3, b.bottleneck_width // b.groups, b.bottleneck_width)
            assert conv2.groups == b.groups and conv2.stride == b.stride
            assert (block.se.fc1.kernel.shape[-1] if hasattr(block, "se") else 0) == b.se_width
            assert hasattr(block, "downsample") == b.shortcut_conv
            assert block.block == b  # the block plan its forward walks (``layer_flow.run_block``)
    norm = {"batchnorm": BatchNorm, "groupnorm": GroupNorm}[plan.norm]
    assert len(batch_norms(model, (BatchNorm, GroupNorm))) == len(batch_norms(model, norm)) == n_batch_norms(plan)
    assert (model.final_conv is not None) == bool(plan.final_width)


def test_regnety_10b_abstract_in_seconds():
    """9.4 B parameters (~37 GB) traced from the plan without allocating them; the model refuses to run."""
    plan = rz.plan("regnety_10b")
    t0 = time.perf_counter()
    model = create("regnety_10b", abstract=True)
    elapsed = time.perf_counter() - t0
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert sum(int(np.prod(a.shape)) for a in leaves) == plan.params(1000) == 9_352_215_872
    assert elapsed < 20, f"abstract build took {elapsed:.1f}s"
    # the documented plain-NNX form gives the same abstract tree
    abstract = nnx.eval_shape(lambda: RegNet(model.config, rngs=nnx.Rngs(0)))
    assert jax.tree.map(lambda a: a.shape, nnx.state(abstract).to_pure_dict()) == \
        jax.tree.map(lambda a: a.shape, nnx.state(model).to_pure_dict())
    with pytest.raises(RuntimeError, match="abstract.*load weights"):
        model(np.zeros((1, 32, 32, 3), np.float32))


def test_variable_tree_mirrors_canonical_names(small):
    flat = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(small))}
    assert "stem/conv/kernel" in flat and "s1/b1/conv2/bn/mean" in flat and "head/fc/kernel" in flat
    assert "s4/b1/downsample/bn/var" in flat
    assert len(flat) == len(canonical_shapes(rz.plan(SMALL), 1000))


def test_create_is_eval_mode_and_train_eval_switch(small):
    bns = batch_norms(small)
    assert all(bn.use_running_average for bn in bns.values())
    small.train()
    assert not any(bn.use_running_average for bn in bns.values())
    small.eval()
    assert all(bn.use_running_average for bn in bns.values())
    view = nnx.view(small, use_running_average=False)
    assert not any(bn.use_running_average for bn in batch_norms(view).values())
    assert all(bn.use_running_average for bn in bns.values())


def test_predict_is_inference_even_in_training_mode(small):
    x = nhwc()
    ref = small.predict(x)
    stats = export_canonical(small)
    small.train()
    try:
        assert rel_err(small.predict(x), ref) == 0.0
    finally:
        small.eval()
    after = export_canonical(small)
    assert all(np.array_equal(after[k], v) for k, v in stats.items())


def test_in_chans():
    model = create(SMALL, in_chans=1, conv_impl="xla")
    assert model.stem.conv.kernel.shape == (3, 3, 1, 32)
    assert model.predict(np.zeros((1, 32, 32, 1), np.float32)).shape == (1, 1000)
    assert "stem.conv.weight" in export_canonical(model) and export_canonical(model)["stem.conv.weight"].shape == \
        (32, 1, 3, 3)


# -- outputs ------------------------------------------------------------------------------------------------------

def test_classifier_hidden_states_and_predict(small):
    x = nhwc()
    logits = fwd(small, x)
    assert logits.shape == (2, 1000) and logits.dtype == jnp.float32
    assert rel_err(small.predict(x), logits) < 1e-6
    out = fwd(small, x, output_hidden_states=True)
    assert isinstance(out, RegNetOutput) and out.loss is None
    assert [h.shape for h in out.hidden_states] == [(2, 32, 32, 32), (2, 16, 16, 24), (2, 8, 8, 56), (2, 4, 4, 152),
                                                    (2, 2, 2, 368)]
    assert np.array_equal(out.last_hidden_state, out.hidden_states[-1])
    assert rel_err(out.pooler_output, np.mean(np.asarray(out.last_hidden_state), axis=(1, 2))) < 1e-6
    assert rel_err(out.logits, logits) < 1e-6
    jitted = small.predict(x, output_hidden_states=True)  # RegNetOutput is a pytree: it leaves jit
    assert rel_err(jitted.hidden_states[2], out.hidden_states[2]) < 1e-5


def test_headless_and_features_only_share_the_backbone(small):
    """Same seed, same canonical weights: headless = pooled features; features = hidden states."""
    x = nhwc()
    ref = fwd(small, x, output_hidden_states=True)
    headless = loaded(SMALL, num_classes=0)
    assert headless.head is None
    assert rel_err(headless.predict(x), ref.pooler_output) < 1e-6
    backbone = loaded(SMALL, features_only=True, out_indices=(3, 1))
    maps = backbone.predict(x)
    assert [f.index for f in backbone.feature_info] == [1, 3]
    assert [f.as_dict() for f in backbone.feature_info] == [f.as_dict() for f in rz.feature_info(SMALL, (1, 3))]
    assert [m.shape[-1] for m in maps] == [f.channels for f in backbone.feature_info]
    assert backbone.pretrained_cfg == pretrained_cfg(rz.get_variant(SMALL), features_only=True)
    assert small.pretrained_cfg["tag"] == "pycls_in1k" and small.pretrained_cfg["classifier"] == "head.fc"
    for m, i in zip(maps, (1, 3)):
        assert rel_err(m, ref.hidden_states[i]) < 1e-6
        assert 64 // m.shape[1] == backbone.feature_info[(1, 3).index(i)].reduction


def test_labels_give_the_loss(small):
    x = nhwc()
    labels = np.array([3, 997])
    out = fwd(small, x, labels=labels)
    logp = jax.nn.log_softmax(out.logits)
    assert abs(float(out.loss) + float(np.mean([logp[0, 3], logp[1, 997]]))) < 1e-6
    multi_hot = np.asarray(jax.nn.one_hot(labels, 1000))  # float labels: BCE-with-logits (HF's multi-label rule)
    z = np.asarray(out.logits, np.float64)
    bce = np.mean(np.maximum(z, 0) - z * multi_hot + np.log1p(np.exp(-np.abs(z))))
    assert abs(float(fwd(small, x, labels=multi_hot).loss) - bce) < 1e-6
    reg = create(SMALL, num_classes=1)
    out1 = fwd(reg, x, labels=np.array([0.5, -1.0], np.float32))
    assert abs(float(out1.loss) - float(np.mean((np.asarray(out1.logits)[:, 0] - [0.5, -1.0]) ** 2))) < 1e-6
    with pytest.raises(ValueError, match="features_only"):
        create(SMALL, features_only=True)(x, labels=labels)
    with pytest.raises(ValueError, match="shape"):
        small(x, labels=np.array([1, 2, 3]))


def test_channels_first_is_hf_layout(small):
    x = nhwc()
    ref = fwd(small, x, output_hidden_states=True)
    cf = loaded(SMALL, data_format="channels_first")
    out = cf.predict(np.transpose(x, (0, 3, 1, 2)), output_hidden_states=True)
    assert rel_err(out.logits, ref.logits) < 1e-6
    for a, b in zip(out.hidden_states, ref.hidden_states):
        assert rel_err(a, np.transpose(b, (0, 3, 1, 2))) < 1e-6
    assert out.pooler_output.shape == (2, 368)


def test_bfloat16_compute_keeps_float32_parameters():
    x = nhwc()
    ref = loaded(SMALL_Y).predict(x)
    model = loaded(SMALL_Y, dtype="bfloat16")
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(nnx.state(model)))
    out = model.predict(x)
    assert out.dtype == jnp.bfloat16
    assert rel_err(np.asarray(out, np.float32), ref) < 0.1
    assert create(SMALL, dtype=jnp.float16).config.dtype == "float16"


# -- training mode ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [SMALL, SMALL_Y])
def test_training_updates_every_batch_norm(name):
    """Stem, all 3 BN of every block, every shortcut BN: HF's Flax RegNet updates only stem + shortcuts."""
    model = loaded(name)
    before = {p: (np.asarray(bn.mean[...]), np.asarray(bn.var[...])) for p, bn in batch_norms(model).items()}

    model.eval()
    fwd(model, nhwc())
    assert all(np.array_equal(bn.mean[...], before[p][0]) for p, bn in batch_norms(model).items())
    model.train()
    fwd(model, nhwc())
    changed = [p for p, bn in batch_norms(model).items()
               if not np.array_equal(bn.mean[...], before[p][0]) and not np.array_equal(bn.var[...], before[p][1])]
    assert len(changed) == len(before) == n_batch_norms(rz.plan(name))


def test_train_step_with_optax_and_nnx_optimizer():
    import optax

    model = loaded(SMALL_Y, conv_impl="xla")  # behaviour only: XLA's grouped conv compiles the gradient fastest
    model.train()
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    x, labels = nhwc(), np.array([1, 2])

    @nnx.jit
    def train_step(model, optimizer, x, labels):
        loss, grads = nnx.value_and_grad(lambda m: m(x, labels=labels).loss)(model)
        optimizer.update(model, grads)
        return loss

    kernel = np.asarray(model.s3.b2.conv2.conv.kernel[...])
    losses = [float(train_step(model, optimizer, x, labels)) for _ in range(3)]
    assert losses[-1] < losses[0]
    assert not np.array_equal(kernel, model.s3.b2.conv2.conv.kernel[...])


def test_nnx_split_merge_and_inference_fn_see_updates(small):
    x = nhwc()
    graphdef, state = nnx.split(small)
    assert rel_err(fwd(nnx.merge(graphdef, state), x), fwd(small, x)) == 0.0
    f = small.inference_fn()
    before = np.asarray(f(x))
    state = export_canonical(small)
    bumped = dict(state, **{"head.fc.bias": state["head.fc.bias"] + 1.0})
    load_canonical(small, bumped)
    try:
        assert rel_err(f(x), before + 1.0) < 1e-5 and rel_err(small.predict(x), before + 1.0) < 1e-5
    finally:
        load_canonical(small, state)


# -- detection knobs ---------------------------------------------------------------------------------------------

def test_frozen_stages_get_no_gradient_and_keep_statistics():
    model = loaded(SMALL, frozen_stages=1, force=True, conv_impl="xla")  # behaviour only: fastest gradient compile
    model.train()
    before = {p: np.asarray(bn.mean[...]) for p, bn in batch_norms(model).items()}
    x, labels = nhwc(), np.array([1, 2])
    grads = loss_grads(model, x, labels)
    for path, g in nnx.to_flat_state(grads):
        frozen = path[0] in ("stem", "s1")
        assert (not np.any(np.asarray(g.get_value()))) == frozen, path
    for path, bn in batch_norms(model).items():
        assert np.array_equal(bn.mean[...], before[path]) == (path[0] in ("stem", "s1")), path
    trainable = nnx.state(model, model.trainable())
    assert {p[0] for p, _ in nnx.to_flat_state(trainable)} == {"s2", "s3", "s4", "head"}


def test_norm_eval_keeps_every_statistic_but_trains_affine():
    with pytest.raises(ValueError, match="norm_eval.*pretrained"):
        create(SMALL, norm_eval=True)
    model = loaded(SMALL, norm_eval=True, force=True, conv_impl="xla")
    model.train()
    before = {p: np.asarray(bn.var[...]) for p, bn in batch_norms(model).items()}
    x, labels = nhwc(), np.array([1, 2])
    grads = loss_grads(model, x, labels)
    assert all(np.array_equal(bn.var[...], before[p]) for p, bn in batch_norms(model).items())
    assert np.any(np.asarray(grads["stem"]["bn"]["scale"].get_value()))
    eval_out = loaded(SMALL, conv_impl="xla").predict(x)
    assert rel_err(fwd(model, x), eval_out) < 1e-6  # training mode == inference mode under norm_eval


# -- options and input errors ----------------------------------------------------------------------------------

def test_unknown_and_bad_options_say_what_is_accepted():
    with pytest.raises(ValueError, match=r"framework 'flax' does not support fast=True"):
        create(SMALL, fast=True)
    for kwargs, pattern in [({"api": "keras"}, "api="), ({"data_format": "NCHW"}, "channels_first"),
                            ({"dtype": "int8"}, "bfloat16"), ({"frozen_stages": 5}, "-1..4"),
                            ({"frozen_stages": True}, "frozen_stages"), ({"conv_impl": "fast"}, "split"),
                            ({"conv_impl": {"s9.b1": "loop"}}, "s9.b1"), ({"axis_name": 3}, "axis_name"),
                            ({"dtype": "float64"}, "jax_enable_x64"), ({"seed": 1.5}, "seed"),
                            ({"global_pool": "catavgmax"},
                             "framework 'flax' does not support global_pool='catavgmax'; it accepts 'avg', 'max', 'avgmax'")]:
        with pytest.raises((TypeError, ValueError), match=pattern):
            create(SMALL, **kwargs)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_bad_input_is_refused_before_tracing(data_format):
    model = create(SMALL, data_format=data_format)
    good = (2, 3, 32, 32) if data_format == "channels_first" else (2, 32, 32, 3)
    other = (2, 32, 32, 3) if data_format == "channels_first" else (2, 3, 32, 32)
    cases = [(np.zeros(good[1:], np.float32), "4-D.*x\\[None\\]"),
             (np.zeros(other, np.float32), "it looks like N"),
             (np.zeros(good[:1] + tuple(4 if d == 3 else d for d in good[1:]), np.float32), "in_chans=4"),
             (np.zeros(good, np.uint8), "float")]
    for x, pattern in cases:
        for call in (model, model.predict):
            with pytest.raises((ValueError, TypeError), match=pattern):
                call(x)
    with pytest.raises(ValueError, match="more than one value per channel"):
        model.train()
        model(np.zeros((1, 3, 32, 32) if data_format == "channels_first" else (1, 32, 32, 3), np.float32))


# -- weights -------------------------------------------------------------------------------------------------------

def test_strict_loading_lists_every_problem_and_partial_loading():
    model = create(SMALL)
    state = random_state(SMALL)
    bad = dict(state)
    del bad["s1.b1.conv1.conv.weight"]
    bad["s9.b1.conv1.conv.weight"] = np.zeros(1, np.float32)
    bad["stem.conv.weight"] = np.zeros((24, 3, 3, 3), np.float32)
    with pytest.raises(WeightsError) as e:
        load_canonical(model, bad)
    msg = str(e.value)
    assert "missing keys (1): s1.b1.conv1.conv.weight" in msg and "s9.b1.conv1.conv.weight" in msg
    assert "stem.conv.weight: checkpoint (24, 3, 3, 3), model (32, 3, 3, 3)" in msg
    with pytest.raises(WeightsError, match="s9.b1"):
        load_canonical(model, {"s9.b1.conv1.conv.weight": np.zeros(1)}, strict=False)
    load_canonical(model, {"head.fc.bias": state["head.fc.bias"]}, strict=False)
    assert np.array_equal(export_canonical(model)["head.fc.bias"], state["head.fc.bias"])
    load_canonical(model, state)
    out = export_canonical(model)
    assert out.keys() == state.keys() and all(np.array_equal(out[k], v) and out[k].dtype == v.dtype
                                               for k, v in state.items())


def test_builder_applies_the_shared_weight_policy():
    """``request.weights`` goes through regnet_zoo.loading.state_to_load: head dropped on a class mismatch."""
    from regnet_zoo.frameworks import BuildRequest, WeightSource
    from regnet_zoo_flax.build import build

    state = random_state(SMALL)
    plan = rz.plan(SMALL)
    req = rz.api.build_request(SMALL, "flax", num_classes=10, pretrained=WeightSource(state, "test.safetensors", 1000))
    with pytest.warns(UserWarning, match="re-initialised"):
        model = build(req)
    out = export_canonical(model)
    assert all(np.array_equal(out[k], v) for k, v in state.items() if not k.startswith("head."))
    assert out["head.fc.weight"].shape == (10, 368)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = build(rz.api.build_request(SMALL, "flax", num_classes=1000, pretrained=WeightSource(state, "w", 1000),
                                           norm_eval=True))
    assert all(bn.frozen for bn in batch_norms(model).values())


def test_pretrained_path_through_create(tmp_path):
    from safetensors.numpy import save_file

    state = random_state(SMALL_Y)
    path = tmp_path / "regnety_002.safetensors"
    save_file(state, str(path))
    model = rz.create(SMALL_Y, framework="jax", pretrained=str(path))
    out = export_canonical(model)
    assert all(np.array_equal(out[k], v) for k, v in state.items())


def test_sync_bn_is_the_bn_axis_name():
    with pytest.raises(ValueError, match=r"norm='sync_bn' in flax .* also pass axis_name="):
        rz.create(SMALL, framework="flax", norm="sync_bn")
    model = rz.create(SMALL, framework="flax", norm="sync_bn", axis_name="batch", abstract=True)
    assert {bn.axis_name for bn in batch_norms(model).values()} == {"batch"}
