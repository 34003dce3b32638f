"""The tf plugin's model surface: options, outputs, layouts, input errors, weights, layer names."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import regnet_zoo as rz
from regnet_zoo.pretrained_cfg import pretrained_cfg
from testdeps import require
from harness import random_input, random_state, rel_err

require("tensorflow", "keras", "keras_hub")

from tf_helpers import nchw, nhwc, request, tf_modules  # noqa: E402

tf, keras = tf_modules()
from regnet_zoo_tf.backbone import RegNetBackbone  # noqa: E402
from regnet_zoo_tf.build import build, run  # noqa: E402
from regnet_zoo_tf.classifier import RegNetClassifier  # noqa: E402
from regnet_zoo_tf.weights import export_canonical, load_canonical  # noqa: E402

NAME = "regnety_002"  # Y blocks: SE included; 3M parameters


@pytest.fixture(scope="module")
def state():
    return random_state(NAME)


@pytest.fixture(scope="module")
def model(state):
    m = rz.create(NAME, "tf")
    load_canonical(m, state)
    return m


# --- options --------------------------------------------------------------------------------------------------
def test_unknown_option_is_a_type_error_naming_it_and_the_accepted_ones():
    with pytest.raises(TypeError) as e:
        rz.create("regnetx_002", "tf", frozen_stage=1, pading="same")
    msg = str(e.value)
    assert "'frozen_stage' (did you mean 'frozen_stages'?), 'pading'" in msg and "data_format" in msg
    with pytest.raises(ValueError, match="framework 'tf' does not support global_pool='catavgmax'; it accepts 'avg', "
                                         "'max', 'avgmax'"):
        rz.create("regnetx_002", "tf", global_pool="catavgmax")  # its wider head is torch-only


@pytest.mark.parametrize("kwargs, fragment", [
    ({"data_format": "NCHW"}, "data_format must be None"),
    ({"frozen_stages": 5}, "frozen_stages must be an int in -1..4"),
    ({"frozen_stages": True}, "frozen_stages must be an int"),
    ({"norm_eval": 1}, "norm_eval must be True or False"),
    ({"grouped_conv": "fast"}, "grouped_conv must be one of"),
    ({"jit_compile": "yes"}, "jit_compile must be"),
    ({"image_size": 16}, "image_size must be"),
])
def test_bad_option_values_are_value_errors(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        rz.create("regnetx_002", "tf", **kwargs)


def test_norm_eval_is_refused_on_random_weights_unless_forced(state):
    with pytest.raises(ValueError, match="norm_eval=True .* no pretrained weights.*force=True"):
        rz.create("regnetx_002", "tf", norm_eval=True)
    assert rz.create("regnetx_002", "tf", norm_eval=True, force=True).backbone.norm_eval
    m = build(request(NAME, state=state, norm_eval=True))  # weights given: allowed
    assert all(layer.norm_eval for layer in m.backbone.layers if hasattr(layer, "norm_eval"))


# --- weights given to the builder (pretrained=...) ------------------------------------------------------------
def test_builder_loads_request_weights_and_reinitialises_a_different_head(state, model):
    x = random_input()
    m = build(request(NAME, state=state))
    assert rel_err(run(m, x), run(model, x)) == 0.0
    with pytest.warns(UserWarning, match="head.fc is re-initialised"):
        m10 = build(request(NAME, state=state, num_classes=10))
    got = export_canonical(m10)
    assert got["head.fc.weight"].shape == (10, 368)
    assert all(np.array_equal(got[k], v) for k, v in state.items() if not k.startswith("head."))
    backbone = build(request(NAME, state=state, features_only=True))
    assert len(run(backbone, x)) == 4


# --- outputs --------------------------------------------------------------------------------------------------
def test_hidden_states_pooler_logits_and_loss(model):
    x = nhwc(random_input(batch=3))
    logits = np.asarray(model(x))
    out = model(x, output_hidden_states=True)
    assert isinstance(out, rz.RegNetOutput) and out.loss is None
    assert [tuple(h.shape) for h in out.hidden_states] == [(3, 32, 32, 32), (3, 16, 16, 24), (3, 8, 8, 56),
                                                            (3, 4, 4, 152), (3, 2, 2, 368)]
    assert out.last_hidden_state is out.hidden_states[-1]
    np.testing.assert_allclose(out.pooler_output, np.mean(out.last_hidden_state, axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.logits, logits, rtol=1e-6, atol=1e-6)
    labels = np.array([0, 5, 999])
    with_loss = model(x, labels=labels)
    assert with_loss.hidden_states is None
    log_p = logits - np.log(np.sum(np.exp(np.asarray(logits, np.float64)), axis=1, keepdims=True))
    np.testing.assert_allclose(with_loss.loss, -np.mean(log_p[np.arange(3), labels]), rtol=1e-5)
    assert set(with_loss.keys()) == {"loss", "logits", "pooler_output", "last_hidden_state"}


def test_regression_head_uses_mse_and_headless_refuses_labels():
    x = nhwc(random_input())
    reg = rz.create("regnetx_002", "tf", num_classes=1)
    y = np.array([0.5, -1.0], np.float32)
    out = reg(x, labels=y)
    np.testing.assert_allclose(out.loss, np.mean((np.asarray(out.logits)[:, 0] - y) ** 2), rtol=1e-5)
    headless = rz.create("regnetx_002", "tf", num_classes=0)
    assert tuple(headless(x).shape) == (2, 368)
    with pytest.raises(ValueError, match="num_classes=0"):
        headless(x, labels=np.array([0, 1]))


def test_features_only_maps_feature_info_and_pyramid_outputs(state):
    backbone = rz.create(NAME, "tf", features_only=True, out_indices=(0, 2, 4))
    assert isinstance(backbone, RegNetBackbone)
    assert list(backbone.pyramid_outputs) == ["P1", "P3", "P5"]
    assert [f.as_dict() for f in backbone.feature_info] == [f.as_dict() for f in rz.feature_info(NAME, (0, 2, 4))]
    maps = backbone(nhwc(random_input()))
    assert [tuple(m.shape) for m in maps] == [(2, 32, 32, 32), (2, 8, 8, 56), (2, 2, 2, 368)]
    # keras-hub form: the classifier's backbone outputs the last map and exposes P2..P5
    assert backbone.pretrained_cfg == pretrained_cfg(rz.get_variant(NAME), features_only=True)
    classifier = rz.create(f"{NAME}.hf_in1k", "tf")
    assert classifier.pretrained_cfg == pretrained_cfg(rz.get_variant(NAME), rz.resolve(f"{NAME}.hf_in1k").weight)
    classifier_backbone = classifier.backbone
    assert classifier_backbone.out_indices is None
    assert list(classifier_backbone.pyramid_outputs) == ["P2", "P3", "P4", "P5"]
    assert tuple(classifier_backbone.output.shape) == (None, None, None, 368)


def test_channels_first_takes_and_returns_nchw_like_hf(state, model):
    cf = rz.create(NAME, "tf", data_format="channels_first")
    load_canonical(cf, state)
    x = random_input()
    out_cf = cf(x, output_hidden_states=True)
    out_cl = model(nhwc(x), output_hidden_states=True)
    np.testing.assert_array_equal(out_cf.logits, out_cl.logits)
    for a, b in zip(out_cf.hidden_states, out_cl.hidden_states):
        np.testing.assert_array_equal(a, nchw(b))
    assert rel_err(run(cf, x), run(model, x)) == 0.0
    feats = rz.create(NAME, "tf", data_format="channels_first", features_only=True)
    load_canonical(feats, {k: v for k, v in state.items() if not k.startswith("head.")})
    assert [tuple(m.shape) for m in feats(x)] == [(2, 24, 16, 16), (2, 56, 8, 8), (2, 152, 4, 4), (2, 368, 2, 2)]
    assert tuple(feats.pyramid_outputs["P5"].shape) == (None, 368, None, None)


# --- input errors ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, shape, fragment", [
    ("channels_last", (2, 3, 64, 64), r"looks like NCHW: transpose it with axes \(0, 2, 3, 1\)"),
    ("channels_first", (2, 64, 64, 3), "looks like NHWC"),
    ("channels_last", (2, 64, 64, 4), "in_chans=4"),
    ("channels_last", (64, 64, 3), "4-D NHWC image batch.*add a batch axis"),
    ("channels_last", (2, 16, 64, 3), "16x64 pixels is too small"),
])
def test_bad_input_gets_an_error_saying_what_to_do(fmt, shape, fragment):
    m = rz.create("regnetx_002", "tf", data_format=fmt)
    x = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match=fragment):
        m(x)
    if len(shape) == 4:
        with pytest.raises(ValueError, match=fragment):
            m.predict(x, verbose=0)


def test_one_channel_model_and_dynamic_size_check():
    m = rz.create("regnetx_002", "tf", in_chans=1, num_classes=4)
    assert tuple(m(np.zeros((1, 40, 48, 1), np.float32)).shape) == (1, 4)
    fn = tf.function(lambda x: m(x), input_signature=[tf.TensorSpec((None, None, None, 1))])
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 32 pixels"):
        fn(tf.zeros((1, 16, 40, 1)))


# --- weights --------------------------------------------------------------------------------------------------
def test_layer_names_map_one_to_one_to_canonical_keys(model, state):
    named = {}
    for layer in model.backbone.layers:
        for w in layer.weights:
            named.setdefault(layer.name, []).append(w)
    prefixes = {k.rsplit(".", 1)[0] for k in state if not k.startswith("head.")}
    assert set(named) == prefixes
    assert model.backbone.get_layer("s3.b2.conv2.conv").kernel.shape == (3, 3, 8, 152)
    assert [w.name for w in model.backbone.get_layer("s1.b1.conv1.bn").weights] == [
        "gamma", "beta", "moving_mean", "moving_variance"]


def test_strict_load_lists_every_problem_at_once(state):
    m = rz.create(NAME, "tf")
    bad = dict(state)
    del bad["stem.conv.weight"], bad["s1.b1.se.fc1.bias"]
    bad["s9.b1.conv1.conv.weight"] = np.zeros(1, np.float32)
    bad["s2.b1.conv2.conv.weight"] = np.zeros((56, 8, 3, 1), np.float32)
    with pytest.raises(rz.WeightsError) as e:
        load_canonical(m, bad)
    msg = str(e.value)
    for fragment in ("missing keys (2): stem.conv.weight, s1.b1.se.fc1.bias", "unexpected keys (1): s9.b1",
                     "s2.b1.conv2.conv.weight: checkpoint (56, 8, 3, 1), model (56, 8, 3, 3)"):
        assert fragment in msg
    with pytest.raises(rz.WeightsError, match="unexpected keys"):
        load_canonical(m, {"s9.b1.conv1.conv.weight": np.zeros(1, np.float32)}, strict=False)
    load_canonical(m, {"stem.bn.weight": state["stem.bn.weight"]}, strict=False)
    np.testing.assert_array_equal(m.backbone.get_layer("stem.bn").gamma, state["stem.bn.weight"])


def test_export_round_trip_is_bit_exact_for_odd_shapes():
    state = random_state("regnetx_002", num_classes=7, in_chans=1, seed=3)
    m = rz.create("regnetx_002", "tf", num_classes=7, in_chans=1)
    load_canonical(m, state)
    out = export_canonical(m)
    assert list(out) == list(state)
    for k, v in state.items():
        assert out[k].dtype == v.dtype and out[k].flags.c_contiguous and np.array_equal(out[k], v), k


def test_fresh_weights_follow_timms_init():
    m = rz.create("regnetx_002", "tf")
    w = export_canonical(m)
    assert not np.any(w["s4.b3.conv3.bn.weight"])  # zero-init last BN of each block
    assert np.all(w["s4.b3.conv1.bn.weight"] == 1)
    assert 0.005 < np.std(w["head.fc.weight"]) < 0.015
    k = w["s4.b3.conv2.conv.weight"]  # fan_out per group = 9 * 368 / 46
    assert abs(np.std(k) / np.sqrt(2 / (9 * 8)) - 1) < 0.1


# --- compiled inference ---------------------------------------------------------------------------------------
def test_predict_and_runner_use_one_trace_for_any_size(model):
    from regnet_zoo_tf.build import inference_function

    for size in (64, 96, 80):
        x = random_input(size=size)
        ref = model(nhwc(x), training=False)
        assert rel_err(run(model, x), ref) < 1e-5
        assert rel_err(model.predict(nhwc(x), verbose=0), ref) < 1e-5
    assert inference_function(model).experimental_get_tracing_count() == 1


def test_classifier_rejects_a_features_only_backbone():
    with pytest.raises(TypeError, match="out_indices=None"):
        RegNetClassifier(rz.create("regnetx_002", "tf", features_only=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RegNetClassifier(rz.create("regnetx_002", "tf").backbone, num_classes=3)


def test_xla_and_mixed_precision_paths_agree(model, state):
    x = random_input(size=64)
    xla = rz.create(NAME, "tf", jit_compile=True)
    load_canonical(xla, state)
    assert xla.jit_compile
    assert rel_err(run(xla, x), run(model, x)) < 1e-4
    bf16 = rz.create(NAME, "tf", dtype="mixed_bfloat16")
    load_canonical(bf16, state)
    assert bf16.backbone.get_layer("s1.b1.conv1.conv").kernel.dtype == "float32"
    assert rel_err(run(bf16, x), run(model, x)) < 0.1
    bf16(nhwc(x), training=True)  # BN statistics stay float32 while training in bfloat16
    assert bf16.backbone.get_layer("s1.b1.conv1.bn").moving_mean.dtype == "float32"


def test_grouped_conv_implementations_compute_the_same_function(model, state):
    split = rz.create(NAME, "tf", grouped_conv="split")
    load_canonical(split, state)
    layer = split.backbone.get_layer("s4.b1.conv2.conv")
    assert layer.resolved_impl() == "split" and layer.kernel.shape == (3, 3, 8, 368)
    assert model.backbone.get_layer("s4.b1.conv2.conv").resolved_impl() == "grouped"
    x = random_input(size=64)
    assert rel_err(run(split, x), run(model, x)) < 1e-5


def test_a_model_larger_than_the_machine_is_refused_with_the_numbers(monkeypatch):
    import regnet_zoo_tf.build as tf_build

    monkeypatch.setattr(tf_build, "_physical_memory", lambda: 10**9)
    with pytest.raises(MemoryError, match=r"regnety_10b has 9.35B parameters \(37.4 GB in float32\) but this "
                                          r"machine has 1.0 GB of memory.*device='meta'"):
        rz.create("regnety_10b", "tf")
    assert rz.create("regnetx_002", "tf", num_classes=0) is not None
