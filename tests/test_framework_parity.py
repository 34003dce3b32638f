"""Every framework, every variant up to ~150M parameters, checked the same way against timm on the same weights.

torch must match timm exactly (0.0); tf and flax within 1e-4 (logits) / 1e-3 (hidden states) relative. By default
every framework checks ``harness.DEFAULT_PARITY_VARIANTS`` (every block kind and design feature is among them);
``-m slow`` adds every other variant.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import regnet_zoo as rz
from regnet_zoo.keys import stem_conv_key
from testdeps import require
from harness import (DEFAULT_PARITY_VARIANTS, FRAMEWORK_MODULES, FRAMEWORKS, HIDDEN_RTOL, LOGITS_RTOL,
                     PARITY_VARIANTS, loaded_model, ops, random_input, random_state, rel_err, slow_unless,
                     timm_reference)

ALL = (0, 1, 2, 3, 4)


@functools.lru_cache(maxsize=2)
def reference(name: str):
    require("torch", "timm")
    state = random_state(name)
    x = random_input()
    logits, maps = timm_reference(name, state, x)
    return state, x, logits, maps


@pytest.mark.parametrize("framework, name", [
    pytest.param(f, n, marks=() if n in DEFAULT_PARITY_VARIANTS else pytest.mark.slow)
    for n in PARITY_VARIANTS for f in FRAMEWORKS])
def test_matches_timm_on_same_weights(framework, name):
    require(*FRAMEWORK_MODULES[framework])
    o = ops(framework)
    if name not in rz.list_variants(framework=framework):  # a design feature the framework does not declare
        with pytest.raises(ValueError, match=f"framework '{framework}' cannot build {name}: it needs "):
            o.create(name)
        return
    state, x, ref_logits, ref_maps = reference(name)
    logits_tol, hidden_tol = (0.0, 0.0) if framework == "torch" else (LOGITS_RTOL, HIDDEN_RTOL)

    model = o.create(name)
    o.load(model, state)
    assert rel_err(o.run(model, x), ref_logits) <= logits_tol
    exported = o.export(model)
    assert exported.keys() == state.keys()
    for key, value in state.items():
        assert exported[key].dtype == value.dtype and np.array_equal(exported[key], value), key
    del model

    backbone = o.create(name, features_only=True, out_indices=ALL)
    assert [f.as_dict() for f in backbone.feature_info] == [f.as_dict() for f in rz.feature_info(name, ALL)]
    o.load(backbone, {k: v for k, v in state.items() if not k.startswith(("head.", "final_conv."))})
    maps = o.run(backbone, x)
    assert len(maps) == 5
    for i, (got, want) in enumerate(zip(maps, ref_maps)):
        assert rel_err(got, want) <= hidden_tol, f"feature {i}"


@pytest.mark.parametrize("output_stride", (16, 8))
@pytest.mark.parametrize("name", (pytest.param("regnetx_002", marks=pytest.mark.slow), "regnety_002"))
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_output_stride_matches_timm(framework, name, output_stride):
    """timm's ``create_model(name, output_stride=...)`` on the same weights: later stages dilated, not strided."""
    require(*FRAMEWORK_MODULES[framework])
    require("torch", "timm")
    state, x = random_state(name), random_input()
    ref_logits, ref_maps = timm_reference(name, state, x, output_stride=output_stride)
    o = ops(framework)
    logits_tol, hidden_tol = (0.0, 0.0) if framework == "torch" else (LOGITS_RTOL, HIDDEN_RTOL)

    model = o.create(name, output_stride=output_stride)
    o.load(model, state)
    assert [f.reduction for f in model.feature_info] == [2, 4, 8, min(16, output_stride), output_stride]
    assert rel_err(o.run(model, x), ref_logits) <= logits_tol
    del model

    backbone = o.create(name, features_only=True, out_indices=ALL, output_stride=output_stride)
    want_info = rz.feature_info(name, ALL, output_stride=output_stride)
    assert [f.as_dict() for f in backbone.feature_info] == [f.as_dict() for f in want_info]
    o.load(backbone, {k: v for k, v in state.items() if not k.startswith(("head.", "final_conv."))})
    maps = o.run(backbone, x)
    assert [m.shape[-1] for m in maps] == [64 // f.reduction for f in want_info]
    for i, (got, want) in enumerate(zip(maps, ref_maps)):
        assert rel_err(got, want) <= hidden_tol, f"feature {i}"


@pytest.mark.parametrize("name, in_chans", [("regnety_002", 1), ("regnety_002", 4), ("regnetv_040", 1)])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_in_chans_with_pretrained_matches_timm(framework, name, in_chans, tmp_path, monkeypatch):
    """A 3-channel checkpoint file loaded with ``in_chans=k``: the stem adapted as timm's ``create_model(...,
    pretrained=True, in_chans=k)`` adapts it (``adapt_input_conv``: sum for 1 channel, repeat and rescale)."""
    require(*FRAMEWORK_MODULES[framework])
    require("torch", "timm", "safetensors")
    import timm
    import torch
    from safetensors.numpy import save_file

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "model.safetensors"
    save_file(random_state(name), str(path))
    x = random_input(in_chans=in_chans)
    ref = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                            in_chans=in_chans).eval()
    with torch.no_grad():
        ref_logits = ref(torch.from_numpy(x)).numpy()
    o = ops(framework)
    model = o.create(name, pretrained=str(path), in_chans=in_chans)
    stem = stem_conv_key(rz.plan(name))  # a pre-activation stem is a bare conv: "stem.weight"
    assert np.array_equal(o.export(model)[stem], ref.state_dict()[stem].numpy())
    assert rel_err(o.run(model, x), ref_logits) <= (0.0 if framework == "torch" else LOGITS_RTOL)


def _timm_norm(**kwargs):
    from functools import partial

    from timm.layers import GroupNorm

    return partial(GroupNorm, **kwargs)


# the activations timm and transformers share beyond relu / silu / gelu, by timm's get_act_layer names; each one's
# function is checked in every framework by test_every_activation_is_timms_function, so the whole-model override runs
# by default for those with framework-specific handling (TF's fused kernels: mish, leaky_relu; a tanh GELU) only
MORE_ACTS = ("gelu_tanh", "quick_gelu", "mish", "relu6", "leaky_relu", "tanh", "sigmoid", "identity")
DEFAULT_ACTS = ("gelu_tanh", "mish", "leaky_relu")


@pytest.mark.parametrize("ours, timms", [
    (dict(norm_layer="groupnorm", norm_groups=8, act_layer="gelu"),
     dict(norm_layer=(_timm_norm, {"num_groups": 8}), act_layer="gelu")),
    (dict(norm_layer="groupnorm", norm_group_size=4, downsample="avg", bottle_ratio=2.0),
     dict(norm_layer=(_timm_norm, {"group_size": 4}), downsample="avg", bottle_ratio=2.0)),
    *(pytest.param(dict(act=a), dict(act_layer=a), marks=() if a in DEFAULT_ACTS else pytest.mark.slow)
      for a in MORE_ACTS),
], ids=["gn_groups_gelu", "gn_size_avg_bottle2", *(f"act_{a}" for a in MORE_ACTS)])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_create_time_overrides_match_timm(framework, ours, timms):
    """issue 13: ``create(name, **overrides)`` equals timm's ``create_model(name, **the same RegNetCfg fields)`` in
    every framework (GroupNorm by group count or group size, GELU, avg shortcuts, bottleneck ratio 2, and each
    further activation, in the blocks and inside squeeze-excitation)."""
    require(*FRAMEWORK_MODULES[framework])
    require("torch", "timm")
    import timm
    import torch

    from harness import randomize

    torch.manual_seed(0)
    timms = {k: v[0](**v[1]) if isinstance(v, tuple) else v for k, v in timms.items()}
    ref = randomize(timm.create_model("regnety_002", **timms)).eval()
    state = {k: v.numpy() for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    x = random_input()
    with torch.no_grad():
        ref_logits = ref(torch.from_numpy(x)).numpy()
    o = ops(framework)
    model = o.create("regnety_002", **ours)
    o.load(model, state)
    assert rel_err(o.run(model, x), ref_logits) <= (0.0 if framework == "torch" else LOGITS_RTOL)


def _activation(framework: str, name: str):
    """The plugin's own function for plan activation ``name``, float32 numpy in and out."""
    if framework == "torch":
        import torch
        from regnet_zoo_torch.model import act_layer

        return lambda x: act_layer(name)()(torch.from_numpy(x)).numpy()
    if framework == "tf":
        from regnet_zoo_tf._tf import tf
        from regnet_zoo_tf.activations import activation

        return lambda x: np.asarray(activation(name)(tf.constant(x)))
    import jax.numpy as jnp
    from regnet_zoo_flax.ops import activation

    return lambda x: np.asarray(activation(jnp.asarray(x), name))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_activation_is_timms_function(framework):
    """Each plugin's activation table computes timm's function for every plan activation, within 1e-6 (torch: timm's
    own layer, exactly). Tighter than the network check above, which cannot tell gelu from gelu_tanh (3.7e-5)."""
    require(*FRAMEWORK_MODULES[framework])
    require("torch", "timm")
    import torch
    from timm.layers import get_act_layer

    from regnet_zoo.variant import ACTIVATIONS

    x = np.linspace(-8.0, 8.0, 16001, dtype=np.float32)
    for name in ACTIVATIONS:
        ours, ref = _activation(framework, name)(x), get_act_layer(name)()(torch.from_numpy(x)).numpy()
        if framework == "torch":
            assert np.array_equal(ours, ref), name
        else:
            np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6, err_msg=name)
    with pytest.raises(ValueError, match="unknown activation 'hard_swish'; expected one of relu, silu, gelu, "):
        _activation(framework, "hard_swish")(x)


# tiny ad-hoc variants covering the design space beyond X / Y in training (GELU / SiLU, GroupNorm, pre-activation
# with avg shortcuts, a final conv, linear_out with bottleneck ratio 4 and absent shortcuts), and the smallest RegNetZ
TRAINING_SPECS = {
    "tiny_v": {"block": "y", "stem_width": 16, "widths": [16, 32, 48, 64], "depths": [1, 2, 1, 1], "group_width": 8,
               "act": "gelu", "norm": "groupnorm", "norm_group_size": 8, "preact": True, "downsample": "avg",
               "bottle_ratio": 2.0, "strides": [2, 1, 2, 2], "num_features": 96},
    "tiny_z": {"block": "y", "stem_width": 16, "widths": [16, 32, 48, 64], "depths": [1, 2, 2, 1], "group_width": 8,
               "act": "silu", "downsample": "none", "linear_out": True, "bottle_ratio": 4.0, "num_features": 128},
    "regnetz_005": "regnetz_005",
}


@pytest.mark.parametrize("case", slow_unless(list(TRAINING_SPECS), ("tiny_v", "tiny_z")))
@pytest.mark.parametrize("framework", [f for f in FRAMEWORKS if f != "torch"])
def test_training_step_matches_torch_beyond_x_and_y(framework, case):
    """issue 13: one training step (loss and every gradient, BN on batch statistics) of the V / Z / GroupNorm design
    space against the torch plugin (equal to timm), on randomised norm statistics and affine parameters. The
    activations here are smooth (no ReLU kink decides a float32 gradient, see tests/flax/test_flax_torch_parity.py),
    so the gradients agree to float32 rounding."""
    require(*FRAMEWORK_MODULES[framework])
    require("torch", "timm")
    from harness import global_rel_err, training_gradients

    spec = TRAINING_SPECS[case]
    state, x, labels = random_state(spec, num_classes=10), random_input(), np.array([3, 7])
    torch_model = ops("torch").create(spec, num_classes=10)
    ops("torch").load(torch_model, state)
    want_loss, want = training_gradients("torch", torch_model, x, labels)
    o = ops(framework)
    model = o.create(spec, num_classes=10, **({"data_format": "channels_first"} if framework == "flax" else {}))
    o.load(model, state)
    loss, got = training_gradients(framework, model, x, labels)
    err = global_rel_err(got, want)
    print(f"{framework} {case}: loss {abs(loss - want_loss):.1e}, gradient {err:.1e} (global relative L2)")
    assert abs(loss - want_loss) <= LOGITS_RTOL * max(1.0, abs(want_loss))
    assert err <= LOGITS_RTOL
    # and tensor by tensor, against the scale of the largest gradient (a tensor whose exact gradient is ~0, such as
    # a BN bias whose output the next BN re-centres, is float32 noise of both on its own scale)
    scale = max(float(np.abs(g).max()) for g in want.values())
    worst = max(want, key=lambda k: float(np.abs(got[k].astype(np.float64) - want[k]).max()))
    assert float(np.abs(got[worst].astype(np.float64) - want[worst]).max()) <= LOGITS_RTOL * scale, worst


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_headless_and_subset_of_features(framework):
    require(*FRAMEWORK_MODULES[framework])
    o = ops(framework)
    x = random_input(batch=2, size=64)
    headless = o.create("regnetx_002", num_classes=0)
    assert o.run(headless, x).shape == (2, rz.plan("regnetx_002").num_features)
    backbone = o.create("regnetx_002", features_only=True, out_indices=(4, 2))
    maps = o.run(backbone, x)
    assert [m.shape for m in maps] == [(2, 56, 8, 8), (2, 368, 2, 2)]
    assert [f.index for f in backbone.feature_info] == [2, 4]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_freezing_knobs_need_weights_or_force(framework):
    """DESIGN.md: knobs that freeze BatchNorm statistics are refused on random weights unless force=True."""
    require(*FRAMEWORK_MODULES[framework])
    o = ops(framework)
    for knob in ({"frozen_stages": 0}, {"frozen_stages": 2}, {"norm_eval": True}):
        with pytest.raises(ValueError, match=rf"{next(iter(knob))}.*no pretrained weights.*force=True"):
            o.create("regnetx_002", features_only=True, **knob)
        model = loaded_model(framework, "regnetx_002", features_only=True, force=True, **knob)
        assert len(o.run(model, random_input(batch=1))) == 4  # default out_indices: s1..s4
