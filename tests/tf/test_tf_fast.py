"""The inference fast path (fast=True / optimize_for_inference): same outputs as the Keras model, a weight snapshot,
SavedModel export, and clear refusals."""

from __future__ import annotations

import pytest

import regnet_zoo as rz
from regnet_zoo.variant import ACTIVATIONS
from testdeps import require
from harness import loaded_model, random_input, random_state, rel_err

require("tensorflow", "keras", "keras_hub")

from tf_helpers import nhwc, tf_modules  # noqa: E402

tf, keras = tf_modules()
from regnet_zoo_tf.build import run  # noqa: E402
from regnet_zoo_tf.fast import FrozenRegNet, optimize_for_inference  # noqa: E402
from regnet_zoo_tf.weights import export_canonical, load_canonical  # noqa: E402

TOL = 1e-5


@pytest.mark.parametrize("name", ["regnetx_002", "regnety_004", "regnety_040"])
def test_fast_classifier_matches_the_keras_model(name):
    model = loaded_model("tf", name)
    fast = optimize_for_inference(model)
    x = nhwc(random_input(batch=2, size=64))
    assert rel_err(fast(x), model(x, training=False)) <= TOL


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_fast_path_builds_every_activation(act):
    """Folded convs followed by each activation (TF fuses some of them into the conv) give the Keras model's output."""
    model = loaded_model("tf", "regnety_002", act=act)
    x = nhwc(random_input(batch=2, size=64))
    assert rel_err(optimize_for_inference(model)(x), model(x, training=False)) <= TOL


def assert_close(got, want):
    if isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert rel_err(g, w) <= TOL
    else:
        assert rel_err(got, want) <= TOL


@pytest.mark.parametrize("kwargs", [dict(num_classes=0), dict(features_only=True, out_indices=(0, 2, 4)),
                                    dict(features_only=True, data_format="channels_first"),
                                    dict(data_format="channels_first")])
def test_fast_headless_features_and_channels_first(kwargs):
    model = loaded_model("tf", "regnety_002", **kwargs)
    fast = optimize_for_inference(model)
    x = random_input(batch=2, size=64)
    assert_close(fast(x if kwargs.get("data_format") == "channels_first" else nhwc(x)),
                 model(x if kwargs.get("data_format") == "channels_first" else nhwc(x), training=False))
    assert_close(run(fast, random_input(batch=1, size=96)), run(model, random_input(batch=1, size=96)))
    if kwargs.get("features_only"):
        assert fast.feature_info == model.feature_info


def test_create_fast_is_a_snapshot_of_the_weights(tmp_path):
    state = random_state("regnetx_002", num_classes=5)
    model = rz.create("regnetx_002", "tf", num_classes=5)
    load_canonical(model, state)
    x = nhwc(random_input(batch=2, size=64))
    fast = optimize_for_inference(model)
    before = fast(x).numpy()
    load_canonical(model, random_state("regnetx_002", num_classes=5, seed=3))
    assert rel_err(fast(x), before) == 0.0 and rel_err(model(x, training=False), before) > 1e-2

    path = tmp_path / "regnetx_002.safetensors"
    from safetensors.numpy import save_file
    save_file(state, str(path))
    created = rz.create("regnetx_002", "tf", num_classes=5, pretrained=str(path), fast=True)
    assert isinstance(created, FrozenRegNet) and rel_err(created(x), before) <= TOL


def test_saved_model_of_the_fast_model_serves_any_size(tmp_path):
    model = loaded_model("tf", "regnety_002", num_classes=7)
    fast = optimize_for_inference(model)
    tf.saved_model.save(fast, str(tmp_path / "fast"))
    served = tf.saved_model.load(str(tmp_path / "fast"))
    for batch, size in ((1, 64), (3, 80)):
        x = nhwc(random_input(batch=batch, size=size))
        assert rel_err(served.serve(x), model(x, training=False)) <= TOL


def test_fast_refusals_say_what_to_do():
    model = loaded_model("tf", "regnetx_002")
    fast = optimize_for_inference(model)
    with pytest.raises(TypeError, match="FrozenRegNet.*fast=False"):
        export_canonical(fast)
    with pytest.raises(ValueError, match="too small"):
        fast(tf.zeros((1, 16, 64, 3)))
    with pytest.raises(ValueError, match="it looks like NCHW"):
        fast(tf.zeros((1, 3, 64, 64)))
    with pytest.raises(ValueError, match="4-D"):
        fast(tf.zeros((64, 64, 3)))
    for kwargs in (dict(frozen_stages=1, force=True), dict(norm_eval=True, force=True), dict(dtype="mixed_bfloat16")):
        with pytest.raises(ValueError, match="inference-only"):
            rz.create("regnetx_002", "tf", fast=True, **kwargs)
    with pytest.raises(ValueError, match="framework 'tf' does not support fast='bf16'"):
        rz.create("regnetx_002", "tf", fast="bf16")
    with pytest.raises(ValueError, match="protobuf caps at 2 GB.*regnety_1280"):
        rz.create("regnety_1280", "tf", fast=True)  # refused from the plan, before ~2.6 GB of weights are built
