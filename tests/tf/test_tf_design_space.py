"""The tf plugin on the RegNet design space beyond X / Y (issue 13): pre-activation blocks (RegNetV), GroupNorm,
SiLU, avg-pool and absent shortcuts, bottleneck ratio 4 with linear_out and a final 1x1 conv (RegNetZ).

Reference: ``timm.create_model(name)`` itself, with every norm's affine parameters and running statistics randomised
(timm zero-inits the last BN of each block, which would hide a wrong residual branch), on the same input.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import regnet_zoo as rz
from testdeps import require
from harness import (DEFAULT_PARITY_VARIANTS, HIDDEN_RTOL, LOGITS_RTOL, ops, random_input, randomize, rel_err,
                     slow_unless)

require("tensorflow", "keras", "keras_hub")
require("torch", "timm")

from tf_helpers import nhwc, tf_modules  # noqa: E402

tf, keras = tf_modules()
from regnet_zoo_tf.backbone import RegNetBackbone  # noqa: E402
from regnet_zoo_tf.fast import optimize_for_inference  # noqa: E402
from regnet_zoo_tf.weights import export_canonical, load_canonical  # noqa: E402

VARIANTS = ("regnetv_040", "regnetv_064", "regnety_040_sgn", "regnetz_005", "regnetz_040", "regnetz_040_h")
ALL = (0, 1, 2, 3, 4)
FAST_RTOL = 1e-5  # folded fast path against the Keras model


def timm_model(name: str):
    import timm
    import torch

    torch.manual_seed(0)
    return randomize(timm.create_model(name))


def canonical(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}


@functools.lru_cache(maxsize=1)
def reference(name: str):
    """(canonical state, input, timm logits, timm [stem, s1..s4] maps) for ``name``."""
    import torch

    model = timm_model(name)
    x = random_input()
    with torch.no_grad():
        xt = torch.from_numpy(x)
        logits = model(xt).numpy()
        _, maps = model.forward_intermediates(xt, indices=5)
    return canonical(model), x, logits, [m.numpy() for m in maps]


@pytest.mark.parametrize("name", slow_unless(VARIANTS, DEFAULT_PARITY_VARIANTS))
def test_matches_timm_and_round_trips_weights(name):
    state, x, ref_logits, ref_maps = reference(name)
    o = ops("tf")
    model = o.create(name)
    assert export_canonical(model).keys() == state.keys()  # the layers are exactly timm's modules, in its order
    o.load(model, state)
    err = rel_err(o.run(model, x), ref_logits)
    maps = [np.transpose(m, (0, 3, 1, 2)) for m in model(nhwc(x), output_hidden_states=True).hidden_states]
    errs = [rel_err(got, want) for got, want in zip(maps, ref_maps)]
    print(f"{name}: logits {err:.2e}, maps {' '.join(f'{e:.2e}' for e in errs)}")
    assert err <= LOGITS_RTOL and len(maps) == 5 and max(errs) <= HIDDEN_RTOL
    exported = o.export(model)
    assert list(exported) == list(state)
    for key, value in state.items():
        assert exported[key].dtype == value.dtype and np.array_equal(exported[key], value), key
    fast = optimize_for_inference(model)
    assert rel_err(o.run(fast, x), o.run(model, x)) <= FAST_RTOL
    assert rel_err(o.run(fast, x), ref_logits) <= LOGITS_RTOL


@pytest.mark.parametrize("name, output_stride", [("regnetz_005", 32), ("regnetv_064", 8)])
def test_features_only_matches_timm(name, output_stride):
    """No final conv / act in a backbone; regnetv_064 at output_stride 8 takes timm's AvgPool2dSame shortcut (s4.b1:
    stride 1, dilation 2)."""
    import timm
    import torch

    state = canonical(timm_model(name))
    ref = timm.create_model(name, output_stride=output_stride).eval()
    missing, unexpected = ref.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    x = random_input()
    with torch.no_grad():
        ref_maps = [m.numpy() for m in ref.forward_intermediates(torch.from_numpy(x), indices=5,
                                                                 intermediates_only=True)]
    o = ops("tf")
    backbone = o.create(name, features_only=True, out_indices=ALL, output_stride=output_stride)
    assert [f.as_dict() for f in backbone.feature_info] == \
        [f.as_dict() for f in rz.feature_info(name, ALL, output_stride=output_stride)]
    assert not [layer.name for layer in backbone.layers if layer.name.startswith("final_conv")]
    o.load(backbone, {k: v for k, v in state.items() if k.split(".", 1)[0] not in ("head", "final_conv")})
    maps = o.run(backbone, x)
    errs = [rel_err(got, want) for got, want in zip(maps, ref_maps)]
    print(f"{name} output_stride {output_stride}: maps {' '.join(f'{e:.2e}' for e in errs)}")
    assert len(maps) == 5 and max(errs) <= HIDDEN_RTOL
    fast_maps = optimize_for_inference(backbone)(nhwc(x))
    assert all(rel_err(np.transpose(f, (0, 3, 1, 2)), m) <= FAST_RTOL for f, m in zip(fast_maps, maps))


def test_final_conv_output_is_the_last_hidden_state_and_feeds_the_head():
    """regnetz_005: s4 (hidden_states[-1]) is taken before the final 1x1 conv (1024 channels) the head pools."""
    state, x, ref_logits, ref_maps = reference("regnetz_005")
    model = rz.create("regnetz_005", "tf")
    fresh = export_canonical(model)  # timm's regnetz_* keep their last norm at 1 (zero_init_last=False)
    assert np.all(fresh["s4.b1.conv3.bn.weight"] == 1) and np.all(fresh["final_conv.bn.weight"] == 1)
    load_canonical(model, state)
    out = model(nhwc(x), output_hidden_states=True)
    assert len(out.hidden_states) == 5
    assert rel_err(np.transpose(out.hidden_states[-1], (0, 3, 1, 2)), ref_maps[-1]) <= HIDDEN_RTOL
    s4 = rz.plan("regnetz_005").stages[-1].out_width
    assert tuple(out.last_hidden_state.shape) == (2, 2, 2, 1024) and out.hidden_states[-1].shape[-1] == s4 != 1024
    np.testing.assert_allclose(out.pooler_output, np.mean(out.last_hidden_state, axis=(1, 2)), rtol=1e-5, atol=1e-6)
    assert rel_err(out.logits, ref_logits) <= LOGITS_RTOL
    assert tuple(model.backbone.output.shape) == (None, None, None, 1024)
    assert tuple(model.backbone.pyramid_outputs["P5"].shape) == (None, None, None, s4)


def test_keras_config_round_trip_keeps_the_design_fields():
    state, x, _, _ = reference("regnetz_005")
    model = rz.create("regnetz_005", "tf")
    load_canonical(model, state)
    clone = keras.models.clone_model(model)  # from get_config / from_config
    plan = clone.backbone.get_config()["plan"]
    assert (plan["act"], plan["linear_out"], plan["final_width"], plan["downsample"]) == ("silu", True, 1024, "none")
    assert clone.backbone.plan == model.backbone.plan
    load_canonical(clone, state)
    assert rel_err(clone(nhwc(x)), model(nhwc(x))) == 0.0
    for name in ("regnetv_064", "regnety_040_sgn"):
        plan = rz.plan(name).truncated(1)
        backbone = RegNetBackbone.from_plan(plan, out_indices=(1,))
        rebuilt = RegNetBackbone.from_config(backbone.get_config())
        assert rebuilt.plan == backbone.plan == plan
        assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in backbone.layers]


@pytest.mark.parametrize("name", ["regnety_040_sgn", "regnetv_040"])
def test_training_forward_matches_torch_train_mode(name):
    """GroupNorm (no statistics) and pre-activation BN: outputs and updated running statistics in training mode."""
    import torch

    ref = timm_model(name)
    state = canonical(ref)
    x = random_input()
    ref.train()
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    model = rz.create(name, "tf")
    if name == "regnety_040_sgn":  # fresh weights: the last (group) norm of each block zeroed, as timm
        assert not np.any(export_canonical(model)["s2.b1.conv3.bn.weight"])
    load_canonical(model, state)
    got = model(nhwc(x), training=True)
    assert rel_err(got, want) <= LOGITS_RTOL
    after, updated = canonical(ref), export_canonical(model)
    stats = [k for k in after if k.endswith(("running_mean", "running_var"))]
    assert bool(stats) == (name == "regnetv_040")
    for k in stats:
        assert rel_err(updated[k], after[k]) <= HIDDEN_RTOL, k


# Tiny ad-hoc variants for the combinations no registry variant has (GELU, GroupNorm with pre-activation, a stride-1
# stage, bottleneck ratios 2 and 0.5, avg shortcuts with norms at output_stride 8), against the torch plugin (timm's
# own blocks, equal to timm), and through the fast path and TFLite.
TINY = {
    "tiny_v": ({"name": "tiny_v", "block": "y", "stem_width": 16, "widths": [16, 32, 48, 64], "depths": [1, 2, 1, 1],
                "group_width": 8, "act": "gelu", "norm": "groupnorm", "norm_group_size": 8, "preact": True,
                "downsample": "avg", "bottle_ratio": 2.0, "strides": [2, 1, 2, 2], "num_features": 96}, {}),
    "tiny_z": ({"name": "tiny_z", "block": "y", "stem_width": 16, "widths": [32, 48, 64, 96], "depths": [1, 2, 1, 1],
                "group_width": 8, "act": "silu", "norm": "groupnorm", "norm_group_size": 8, "downsample": "avg",
                "linear_out": True, "bottle_ratio": 0.5}, {"output_stride": 8}),
}


@pytest.mark.parametrize("key", sorted(TINY))
def test_tiny_design_combinations_match_torch_fast_and_tflite(key, tmp_path):
    from harness import random_state

    spec, kwargs = TINY[key]
    state, x = random_state(spec), random_input()
    torch_ops, tf_ops = ops("torch"), ops("tf")
    ref = torch_ops.create(spec, **kwargs)
    torch_ops.load(ref, state)
    model = tf_ops.create(spec, **kwargs)
    tf_ops.load(model, state)
    want, got = torch_ops.run(ref, x), tf_ops.run(model, x)
    assert rel_err(got, want) <= LOGITS_RTOL
    assert rel_err(tf_ops.run(optimize_for_inference(model), x), got) <= FAST_RTOL
    report = rz.export(model, tmp_path / f"{key}.tflite", "tflite", input_size=64)
    assert report.passed and all(o.max_rel <= LOGITS_RTOL for o in report.outputs), str(report)
