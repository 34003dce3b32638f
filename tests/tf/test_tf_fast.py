"""The inference fast path (fast=True / "bf16" / optimize_for_inference): same outputs as the Keras model, a weight
snapshot, SavedModel export, and clear refusals."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import regnet_zoo as rz
from regnet_zoo.variant import ACTIVATIONS
from testdeps import require
from harness import loaded_model, random_input, random_state, rel_err
from regnet_zoo import cpu
from regnet_zoo.frameworks import WeightSource

require("tensorflow", "keras", "keras_hub")

from tf_helpers import nhwc, tf_modules  # noqa: E402

tf, keras = tf_modules()
from regnet_zoo_tf.build import run  # noqa: E402
from regnet_zoo_tf.fast import FrozenRegNet, optimize_for_inference  # noqa: E402
from regnet_zoo_tf.weights import export_canonical, load_canonical  # noqa: E402

TOL = 1e-5
BF16_TOL = 1e-2  # bf16 weights and activations against the float32 Keras model (random weights and BN statistics)
BF16_MAP_TOL = 2e-2  # feature maps are the bf16 activations themselves (8 significant bits): 0.4-1.1% measured
# bf16 with every activation: 0.1-1.5% measured, 5% for identity (a linear network, no activation to bound the sums);
# a fused kernel computing the wrong function (as TF's Conv2D + BiasAdd + AddN + LeakyRelu does) is ~20% off
BF16_ACT_TOL = 0.1


@pytest.fixture
def native_bf16(monkeypatch):
    """CPU flags with native bf16, so the emulated-bf16 warning stays out of tests on other CPUs."""
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx512f", "amx_bf16"}))


@pytest.mark.parametrize("name", ["regnetx_002", "regnety_004", "regnety_040"])
def test_fast_classifier_matches_the_keras_model(name):
    model = loaded_model("tf", name)
    fast = optimize_for_inference(model)
    x = nhwc(random_input(batch=2, size=64))
    assert rel_err(fast(x), model(x, training=False)) <= TOL


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_fast_path_builds_every_activation(act, precision, native_bf16):
    """Folded convs followed by each activation (TF fuses some of them into the conv, and the residual sum too)
    give the Keras model's output, in float32 and in bfloat16."""
    model = loaded_model("tf", "regnety_002", act=act)
    x = nhwc(random_input(batch=2, size=64))
    assert rel_err(optimize_for_inference(model, precision)(x), model(x, training=False)) <= \
        (TOL if precision == "fp32" else BF16_ACT_TOL)


@pytest.mark.parametrize("name", ["regnetx_002", "regnety_002"])
def test_bf16_logits_within_1e2_of_the_keras_model(name, native_bf16):
    model = loaded_model("tf", name)
    fast = model.optimize_for_inference("bf16")
    assert isinstance(fast, FrozenRegNet) and fast.precision == "bf16"
    x = nhwc(random_input(batch=2, size=64))
    out = fast(x)
    assert out.dtype == tf.float32 and out.shape == (2, 1000)
    assert rel_err(out, model(x, training=False)) <= BF16_TOL
    assert rel_err(out, optimize_for_inference(model)(x)) <= BF16_TOL


def test_create_fast_bf16(native_bf16):
    state = random_state("regnetx_002", num_classes=5)
    created = rz.create("regnetx_002", "tf", num_classes=5, pretrained=WeightSource(state, "random", 5), fast="bf16")
    assert isinstance(created, FrozenRegNet) and created.precision == "bf16"
    model = rz.create("regnetx_002", "tf", num_classes=5)
    load_canonical(model, state)
    x = random_input(batch=2, size=64)
    logits = run(created, x)
    assert logits.dtype == np.float32 and rel_err(logits, run(model, x)) <= BF16_TOL
    assert rz.create("regnetx_002", "tf", fast="fp32").precision == "fp32"


@pytest.mark.parametrize("kwargs", [dict(features_only=True, out_indices=(0, 2, 4)),
                                    dict(features_only=True, out_indices=(1, 3), data_format="channels_first"),
                                    dict(num_classes=0)])
def test_bf16_features_and_pooled_features_are_float32(kwargs, native_bf16):
    model = loaded_model("tf", "regnety_002", **kwargs)
    fast = optimize_for_inference(model, "bf16")
    x = random_input(batch=2, size=64)
    x = x if kwargs.get("data_format") == "channels_first" else nhwc(x)
    got, want = fast(x), model(x, training=False)
    if kwargs.get("features_only"):
        assert fast.feature_info == model.feature_info and len(got) == len(want) == len(kwargs["out_indices"])
    else:
        got, want = [got], [want]
    for g, w in zip(got, want):
        assert g.dtype == tf.float32 and g.shape == w.shape
        assert rel_err(g, w) <= (BF16_MAP_TOL if kwargs.get("features_only") else BF16_TOL)


def test_bf16_warns_on_a_cpu_without_native_bf16(monkeypatch):
    if tf.config.list_logical_devices("GPU"):
        pytest.skip("the warning is for CPUs; TensorFlow places the model on the GPU here")
    model = loaded_model("tf", "regnetx_002")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx2", "fma", "avx512f"}))
    for make in (lambda: optimize_for_inference(model, "bf16"), lambda: model.optimize_for_inference("bf16")):
        with pytest.warns(UserWarning, match=r"neither AMX nor AVX-512 BF16.*emulated.*fast=True") as caught:
            make()
        assert [w.filename for w in caught if "emulated" in str(w.message)] == [__file__]  # the caller's line
    for flags in ({"amx_bf16"}, {"avx512_bf16"}):
        monkeypatch.setattr(cpu, "cpu_flags", lambda flags=flags: frozenset(flags))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            optimize_for_inference(model, "bf16")
        assert not [w for w in caught if "bf16" in str(w.message)]
    with warnings.catch_warnings(record=True) as caught:  # fp32 never warns
        warnings.simplefilter("always")
        monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset())
        optimize_for_inference(model)
    assert not [w for w in caught if "bf16" in str(w.message)]


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


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_saved_model_of_the_fast_model_serves_any_size(tmp_path, precision, native_bf16):
    model = loaded_model("tf", "regnety_002", num_classes=7)
    fast = optimize_for_inference(model, precision)
    tf.saved_model.save(fast, str(tmp_path / "fast"))
    served = tf.saved_model.load(str(tmp_path / "fast"))
    for batch, size in ((1, 64), (3, 80)):
        x = nhwc(random_input(batch=batch, size=size))
        out = served.serve(x)
        assert out.dtype == tf.float32 and rel_err(out, model(x, training=False)) <= \
            (TOL if precision == "fp32" else BF16_TOL)


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
    for fast_option in (True, "bf16"):
        for kwargs in (dict(frozen_stages=1, force=True), dict(norm_eval=True, force=True),
                       dict(dtype="mixed_bfloat16")):
            with pytest.raises(ValueError, match="inference-only"):
                rz.create("regnetx_002", "tf", fast=fast_option, **kwargs)
    with pytest.raises(ValueError, match="fast must be False, True .* or 'bf16', got 'fp16'"):
        rz.create("regnetx_002", "tf", fast="fp16")
    with pytest.raises(ValueError, match="precision must be one of 'fp32', 'bf16', got 'fp16'"):
        optimize_for_inference(model, "fp16")
    with pytest.raises(ValueError, match="protobuf caps at 2 GB.*regnety_1280"):
        rz.create("regnety_1280", "tf", fast=True)  # refused from the plan, before ~2.6 GB of weights are built
    with pytest.raises(ValueError, match="fast='bf16' freezes.*protobuf caps at 2 GB.*regnety_2560 has 2.6 GB of bf"):
        rz.create("regnety_2560", "tf", fast="bf16")  # bfloat16 halves the bytes; regnety_1280 (1.3 GB) fits


def test_tflite_export_of_a_bf16_model_is_refused(tmp_path, native_bf16):
    fast = optimize_for_inference(loaded_model("tf", "regnetx_002"), "bf16")
    with pytest.raises(ValueError, match="fast='bf16' model computes in bfloat16, which TFLite does not run"):
        rz.export(fast, tmp_path / "m.tflite", "tflite", input_size=64)
    assert list(tmp_path.iterdir()) == []
