"""Training mode: batch statistics and moving-statistic updates match torch; frozen_stages and norm_eval."""

from __future__ import annotations

import numpy as np
import pytest

import regnet_zoo as rz
from regnet_zoo.keys import stage_of
from testdeps import require
from harness import HIDDEN_RTOL, LOGITS_RTOL, random_input, random_state, rel_err, timm_model

require("tensorflow", "keras", "keras_hub")
require("torch", "timm")

from tf_helpers import nchw, nhwc, request, tf_modules  # noqa: E402

tf, keras = tf_modules()
from regnet_zoo_tf.build import build  # noqa: E402
from regnet_zoo_tf.layers import BatchNorm  # noqa: E402
from regnet_zoo_tf.weights import export_canonical, load_canonical  # noqa: E402


def _stats(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


@pytest.mark.parametrize("name", ["regnetx_002", "regnety_002"])
def test_one_training_forward_matches_torch_train_mode(name):
    import torch

    state = random_state(name, seed=5)
    x = random_input(batch=4, size=64, seed=6)
    ref = timm_model(name, state).train()
    with torch.no_grad():
        final, inter = ref.forward_intermediates(torch.from_numpy(x), indices=5)
        ref_logits = ref.forward_head(final).numpy()
    ref_stats = {k: v.numpy() for k, v in ref.state_dict().items() if k.endswith(("running_mean", "running_var"))}

    model = rz.create(name, "tf")
    load_canonical(model, state)
    out = model(nhwc(x), training=True, output_hidden_states=True)
    assert rel_err(out.logits, ref_logits) <= LOGITS_RTOL
    for i, (got, want) in enumerate(zip(out.hidden_states, inter)):
        assert rel_err(nchw(got), want.numpy()) <= HIDDEN_RTOL, f"hidden state {i}"
    got_stats = _stats(export_canonical(model))
    assert got_stats.keys() == ref_stats.keys()
    old = _stats(state)
    for key, want in ref_stats.items():
        # torch stores the unbiased batch variance in running_var; so must we (not Keras' biased one)
        assert rel_err(got_stats[key], want) <= 1e-5, key
        assert not np.array_equal(got_stats[key], old[key]), f"{key} was not updated"


def test_every_bn_updates_in_training_and_none_in_inference():
    model = rz.create("regnety_002", "tf", num_classes=0)
    bns = [layer for layer in model.backbone.layers if isinstance(layer, BatchNorm)]
    assert len(bns) == len([k for k in export_canonical(model) if k.endswith("running_mean")])
    x = nhwc(random_input(batch=2, size=64))
    before = [np.array(b.moving_variance) for b in bns]
    model(x, training=False)
    assert all(np.array_equal(b.moving_variance, v) for b, v in zip(bns, before))
    model(x, training=True)
    assert all(not np.array_equal(b.moving_variance, v) for b, v in zip(bns, before))


def _train_one_step(model, x, y):
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)


def test_frozen_stages_keep_weights_and_statistics_and_run_bn_in_inference_mode():
    state = random_state("regnetx_002", num_classes=5, seed=2)
    model = build(request("regnetx_002", num_classes=5, frozen_stages=2, force=True))
    load_canonical(model, state)
    frozen = [layer for i in range(3) for layer in model.backbone.stage_layers(i)]
    assert frozen and all(not layer.trainable for layer in frozen)
    assert all(layer.trainable for i in (3, 4) for layer in model.backbone.stage_layers(i))
    x = nhwc(random_input(batch=4, size=64))
    infer = model(x, training=False, output_hidden_states=True).hidden_states
    train = model(x, training=True, output_hidden_states=True).hidden_states
    for i in range(3):  # frozen stages compute with moving statistics even in training mode
        np.testing.assert_array_equal(train[i], infer[i])
    load_canonical(model, state)
    _train_one_step(model, x, np.arange(4) % 5)
    after = export_canonical(model)
    for key, value in state.items():
        assert np.array_equal(after[key], value) == (stage_of(key) <= 2), key  # stem, s1, s2 frozen


def test_norm_eval_freezes_statistics_but_trains_affine_parameters():
    state = random_state("regnety_002", num_classes=5, seed=4)
    model = build(request("regnety_002", num_classes=5, state=state, norm_eval=True))
    x = nhwc(random_input(batch=4, size=64))
    np.testing.assert_array_equal(model(x, training=True), model(x, training=False))
    trainable = {id(v) for v in model.trainable_weights}
    gammas = [layer.gamma for layer in model.backbone.layers if isinstance(layer, BatchNorm)]
    assert all(id(g) in trainable for g in gammas)
    _train_one_step(model, x, np.arange(4) % 5)
    after = export_canonical(model)
    for key, value in state.items():
        if key.endswith(("running_mean", "running_var")):
            np.testing.assert_array_equal(after[key], value, err_msg=key)
    assert not np.array_equal(after["s4.b7.conv1.bn.weight"], state["s4.b7.conv1.bn.weight"])
