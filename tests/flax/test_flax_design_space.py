"""Issue 13's design-space features in the Flax plugin, against timm 1.0.31 on the same random weights.

Pre-activation blocks and stem (RegNetV), GroupNorm (regnety_040_sgn), SiLU, the avg-pool shortcut (regnetv_064),
absent shortcuts with bottle ratio 4, linear_out and final_conv (RegNetZ). Weights come from
``timm.create_model(name)`` with every norm's affine parameters and running statistics and every conv bias
randomised (timm zero-inits some of them, which would hide mistakes). Inputs are small (64x64; 72x72 for regnetv_064,
where s3 and s4 see odd maps, 9x9 and 5x5, so the avg pool's ``ceil_mode`` partial windows are exercised): jit
compiles dominate the time, so each model is compiled once per input size (logits and all maps in one call).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from testdeps import require

require("torch", "timm", "jax", "flax")

import torch  # noqa: E402  (before anything that could pull TensorFlow)
import timm  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

import regnet_zoo as rz  # noqa: E402
from harness import DEFAULT_PARITY_VARIANTS, HIDDEN_RTOL, LOGITS_RTOL, rel_err, slow_unless  # noqa: E402
from regnet_zoo.keys import canonical_shapes  # noqa: E402
from regnet_zoo_flax import ops  # noqa: E402
from regnet_zoo_flax.weights import export_canonical, load_canonical  # noqa: E402

VARIANTS = ("regnetv_040", "regnetv_064", "regnety_040_sgn", "regnetz_005", "regnetz_040", "regnetz_040_h")
SIZES = {"regnetv_064": (64, 72)}  # others: 64
LINEN = ("regnetv_064", "regnetz_005")  # a preact variant with the avg shortcut, a Z variant with final_conv


def nchw(size: int = 64, batch: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, 3, size, size)).astype(np.float32)


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random affine parameters of every BatchNorm / GroupNorm, random BN running statistics, random conv biases."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


@functools.lru_cache(maxsize=1)
def reference(name: str):
    """(timm model with random weights, its canonical state as numpy) — the last one asked for is kept."""
    torch.manual_seed(0)
    model = randomize(timm.create_model(name))
    state = {k: v.numpy().copy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    return model, state


def timm_outputs(model, x: np.ndarray):
    with torch.no_grad():
        xt = torch.from_numpy(x)
        last, maps = model.forward_intermediates(xt, indices=5)
        return model.forward_head(last).numpy(), [m.numpy() for m in maps]


def to_nchw(a) -> np.ndarray:
    return np.transpose(np.asarray(a, np.float32), (0, 3, 1, 2))


def check(got_logits, got_maps, want_logits, want_maps, what: str) -> list[float]:
    errs = [rel_err(got_logits, want_logits)] + [rel_err(to_nchw(g), w) for g, w in zip(got_maps, want_maps)]
    print(f"{what}: logits {errs[0]:.2e}, maps " + " ".join(f"{e:.2e}" for e in errs[1:]))
    assert len(got_maps) == len(want_maps) == 5
    assert errs[0] <= LOGITS_RTOL, f"{what}: logits differ from timm by {errs[0]:.2e}"
    assert max(errs[1:]) <= HIDDEN_RTOL, f"{what}: a feature map differs from timm by {max(errs[1:]):.2e}"
    return errs


def test_canonical_keys_are_timms():
    """The host's canonical keys of every new variant are timm's state_dict keys, shapes included (the Flax model's
    variables are built from them)."""
    for name in VARIANTS:
        want = {k: tuple(v.shape) for k, v in timm.create_model(name).state_dict().items()
                if not k.endswith("num_batches_tracked")}
        assert canonical_shapes(rz.plan(name)) == want, name


@pytest.mark.parametrize("name", slow_unless(VARIANTS, DEFAULT_PARITY_VARIANTS))
def test_matches_timm(name):
    """NNX (and for ``LINEN`` the linen form) on timm's random weights: logits <= 1e-4, every map <= 1e-3 relative;
    the canonical export is the loaded state bit for bit."""
    tm, state = reference(name)
    model = load_canonical(rz.create(name, framework="flax"), state)
    exported = export_canonical(model)
    assert exported.keys() == state.keys() and all(np.array_equal(exported[k], state[k]) for k in state)
    linen = load_canonical(rz.create(name, framework="flax", api="linen"), state) if name in LINEN else None
    if linen is not None:  # the same variable tree as the NNX form, and the same exact export
        _, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
        assert jax.tree.structure(params.to_pure_dict()) == jax.tree.structure(linen.variables["params"])
        assert jax.tree.structure(stats.to_pure_dict()) == jax.tree.structure(linen.variables["batch_stats"])
        exported = export_canonical(linen)
        assert exported.keys() == state.keys() and all(np.array_equal(exported[k], state[k]) for k in state)
    for size in SIZES.get(name, (64,)):
        x = nchw(size)
        want = timm_outputs(tm, x)
        xh = np.transpose(x, (0, 2, 3, 1))
        out = model.predict(xh, output_hidden_states=True)
        check(out.logits, out.hidden_states, *want, f"{name} {size}x{size} nnx")
        if linen is not None:
            out = linen.predict(xh, output_hidden_states=True)
            check(out.logits, out.hidden_states, *want, f"{name} {size}x{size} linen")


@pytest.mark.parametrize("name, output_stride", [("regnetv_064", 8), ("regnetz_005", 16)])
def test_output_stride_matches_timm(name, output_stride):
    """Dilated stages: regnetv_064 at output_stride 8 has an avg shortcut without pooling (s3) and timm's
    ``AvgPool2dSame(2, 1)`` one (s4); regnetz_005 at 16 a dilated block without shortcut."""
    _, state = reference(name)
    tm = timm.create_model(name, output_stride=output_stride)
    counters = {k: v for k, v in tm.state_dict().items() if k.endswith("num_batches_tracked")}
    tm.load_state_dict({**{k: torch.from_numpy(v) for k, v in state.items()}, **counters})
    tm.eval()
    model = load_canonical(rz.create(name, framework="flax", output_stride=output_stride), state)
    x = nchw()
    out = model.predict(np.transpose(x, (0, 2, 3, 1)), output_hidden_states=True)
    check(out.logits, out.hidden_states, *timm_outputs(tm, x), f"{name} output_stride {output_stride} nnx")


def test_features_only():
    """features_only ends at the deepest requested map, without final_conv (as timm's), and the maps are timm's."""
    name = "regnetz_005"
    tm, state = reference(name)
    model = rz.create(name, framework="flax", features_only=True, out_indices=(1, 4))
    assert model.final_conv is None and model.feature_info.channels() == [tm.feature_info[1]["num_chs"],
                                                                        tm.feature_info[4]["num_chs"]]
    load_canonical(model, {k: v for k, v in state.items() if not k.startswith(("final_conv.", "head."))})
    x = nchw()
    _, want = timm_outputs(tm, x)
    got = model.predict(np.transpose(x, (0, 2, 3, 1)))
    errs = [rel_err(to_nchw(g), want[i]) for g, i in zip(got, (1, 4))]
    print(f"{name} features_only (1, 4): " + " ".join(f"{e:.2e}" for e in errs))
    assert len(got) == 2 and max(errs) <= HIDDEN_RTOL


def test_random_init_is_timms():
    """init_canonical: norms (GroupNorm too) start at weight 1 / bias 0, the last BN of a non-preact block at 0
    (zero_init_last), a preact block's norms at 1; GroupNorm models have no batch statistics."""
    sgn = rz.create("regnety_040_sgn", framework="flax")
    w = export_canonical(sgn)
    assert not any(k.endswith(("running_mean", "running_var")) for k in w)
    assert not jax.tree.leaves(nnx.state(sgn, nnx.BatchStat))
    assert np.all(w["s1.b1.conv3.bn.weight"] == 0) and np.all(w["s1.b1.conv1.bn.weight"] == 1)
    assert np.all(w["stem.bn.bias"] == 0)
    module, variables = rz.create("regnety_040_sgn", framework="flax", api="linen")
    assert "batch_stats" not in variables or not jax.tree.leaves(variables["batch_stats"])
    z = export_canonical(rz.create("regnetz_005", framework="flax"))  # timm builds RegNetZ with zero_init_last=False
    assert np.all(z["s1.b1.conv3.bn.weight"] == 1) and np.all(z["final_conv.bn.weight"] == 1)
    module, variables = rz.create("regnetz_005", framework="flax", api="linen")
    assert np.all(np.asarray(variables["params"]["s1"]["b1"]["conv3"]["bn"]["scale"]) == 1)
    v = export_canonical(rz.create("regnetv_040", framework="flax"))
    assert all(np.all(v[f"s2.b1.norm{i}.weight"] == 1) for i in (1, 2, 3))
    assert all(np.all(v[f"s2.b1.norm{i}.running_var"] == 1) for i in (1, 2, 3))
    # timm's std for the grouped conv: sqrt(2 / fan_out), fan_out = 9 * out / groups
    plan = rz.plan("regnetv_040")
    block = plan.stages[1].blocks[0]
    std = np.sqrt(2.0 / (9 * block.bottleneck_width // block.groups))
    assert abs(v["s2.b1.conv2.weight"].std() / std - 1) < 0.05


@pytest.mark.parametrize("name", ("regnety_040_sgn", "regnetv_040"))
def test_training_mode_forward(name):
    """Training mode (BN on batch statistics; GroupNorm is per sample either way) against torch's train mode:
    logits, and the updated BN running statistics of the preact variant."""
    tm, state = reference(name)
    model = load_canonical(rz.create(name, framework="flax"), state)
    x = nchw(96)  # at 64x64 s4's BN sees 8 values per channel; float32 conditioning then reaches 7e-5 (f64: 2e-13)
    tm.train()
    try:
        with torch.no_grad():
            want = tm(torch.from_numpy(x)).numpy()
        new_stats = {k: v.numpy().copy() for k, v in tm.state_dict().items()
                     if k.endswith(("running_mean", "running_var"))}
    finally:
        tm.load_state_dict({**{k: torch.from_numpy(v) for k, v in state.items()},
                            **{k: v for k, v in tm.state_dict().items() if k.endswith("num_batches_tracked")}})
        tm.eval()
    model.train()

    @nnx.jit
    def step(m, xh):
        return m(xh)

    got = step(model, jnp.asarray(np.transpose(x, (0, 2, 3, 1))))
    err = rel_err(got, want)
    print(f"{name} training-mode logits {err:.2e}")
    assert err <= LOGITS_RTOL
    if new_stats:
        exported = export_canonical(model)
        stat_err = max(rel_err(exported[k], v) for k, v in new_stats.items())
        print(f"{name} updated running statistics {stat_err:.2e}")
        assert stat_err <= HIDDEN_RTOL
        assert not np.array_equal(exported["s1.b1.norm1.running_mean"], state["s1.b1.norm1.running_mean"])
    else:
        assert name == "regnety_040_sgn"


@pytest.mark.parametrize("size", (8, 9, 5, 3))
def test_avg_pool_and_group_norm_ops(size):
    """The avg shortcut's pools (``AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)``, and timm's
    ``AvgPool2dSame(2, 1)`` of a dilated block) and GroupNorm, against torch, on even and odd sizes."""
    from timm.layers import AvgPool2dSame

    x = np.random.default_rng(size).normal(size=(2, 8, size, size + 1)).astype(np.float32)
    xt, xh = torch.from_numpy(x), jnp.asarray(np.transpose(x, (0, 2, 3, 1)))
    pool = torch.nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)
    np.testing.assert_allclose(to_nchw(ops.avg_downsample(xh, 2)), pool(xt).numpy(), rtol=1e-6, atol=1e-6)
    same = AvgPool2dSame(2, 1, ceil_mode=True, count_include_pad=False)
    np.testing.assert_allclose(to_nchw(ops.avg_downsample(xh, 1, 2)), same(xt).numpy(), rtol=1e-6, atol=1e-6)
    assert ops.avg_downsample(xh, 1, 1) is xh
    gn = torch.nn.GroupNorm(2, 8)
    scale, bias = np.linspace(0.5, 1.5, 8, dtype=np.float32), np.linspace(-0.2, 0.2, 8, dtype=np.float32)
    with torch.no_grad():
        gn.weight.copy_(torch.from_numpy(scale))
        gn.bias.copy_(torch.from_numpy(bias))
        want = gn(xt).numpy()
    got = to_nchw(ops.group_norm(xh, jnp.asarray(scale), jnp.asarray(bias), 2))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
