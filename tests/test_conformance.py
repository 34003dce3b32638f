"""The same call behaves the same in every framework (issue 12): one suite, parametrised over the frameworks the
host has registered (their ``Framework`` records: builder, runner, loader, exporter), never naming a plugin. A
framework registered by a new plugin gets every test here for free.

Models are built with ``data_format="channels_first"`` so every runner hands its model the NCHW batch untouched and
the model itself meets the bad input. Errors are compared with the host's own contract (``regnet_zoo.contract``,
``regnet_zoo.options``): type and full message.
"""

from __future__ import annotations

import numpy as np
import pytest

import regnet_zoo as rz
from regnet_zoo import adhoc
from harness import HIDDEN_RTOL, LOGITS_RTOL, ops, random_state, rel_err
from regnet_zoo.contract import check_image_batch
from regnet_zoo.frameworks import WeightSource
from regnet_zoo.options import FAST, SHARED_NAMES, UnsupportedOptionError, accepted_options
from regnet_zoo.plugins import get_host
from regnet_zoo.pretrained_cfg import pretrained_cfg

NAME = "regnetx_002"
FRAMEWORKS = [f.name for f in get_host().frameworks.values() if f.installed]
NCHW = {"data_format": "channels_first"}


@pytest.fixture(params=FRAMEWORKS)
def fw(request):
    framework = get_host().framework(request.param)
    if not framework.installed:
        from testdeps import require

        require(*framework.requires)
    return request.param


_models: dict = {}


def classifier(fw: str, num_classes: int = 10):
    """regnetx_002 with random canonical weights (the same in every framework), NCHW, cached per framework."""
    key = (fw, num_classes)
    if key not in _models:
        state = random_state(NAME, num_classes=num_classes)
        _models[key] = rz.create(NAME, fw, num_classes=num_classes, pretrained=WeightSource(state, "random", num_classes),
                                 **NCHW)
    return _models[key]


def error_of(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the point is to capture whatever is raised
        return type(e), str(e)
    return None


BAD_INPUTS = {  # issue 12: uint8/int64 silently ran in tf; 16x16 ran in flax; channel / layout messages differed
    "uint8": np.zeros((2, 3, 32, 32), np.uint8),
    "int64": np.zeros((2, 3, 32, 32), np.int64),
    "16x16": np.zeros((2, 3, 16, 16), np.float32),
    "nhwc-to-nchw": np.zeros((2, 32, 32, 3), np.float32),
    "4-channels": np.zeros((2, 4, 32, 32), np.float32),
    "rank-3": np.zeros((3, 32, 32), np.float32),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_same_error(fw, case):
    x = BAD_INPUTS[case]
    expected = error_of(lambda: check_image_batch(x.shape, x.dtype, in_chans=3, channels_first=True))
    assert expected is not None
    assert error_of(lambda: ops(fw).run(classifier(fw), x)) == expected


def test_contract_messages():
    """The host's wording, once (the test above holds every framework to it)."""
    err = error_of(lambda: check_image_batch((2, 3, 32, 32), np.dtype("uint8"), in_chans=3, channels_first=True))
    assert err[0] is TypeError and "x.astype('float32') / 255" in err[1]
    err = error_of(lambda: check_image_batch((2, 32, 32, 3), np.dtype("float32"), in_chans=3, channels_first=True))
    assert err == (ValueError, "expected an NCHW image batch (N, 3, H, W) with 3 channels on axis 1, got shape "
                               "(2, 32, 32, 3); it looks like NHWC: transpose it with axes (0, 3, 1, 2)")
    err = error_of(lambda: check_image_batch((1, 3, 16, 16), np.dtype("float32"), in_chans=3, channels_first=True))
    assert err[0] is ValueError and "16x16 pixels is too small" in err[1]


def test_float64_is_computed_in_the_model_dtype(fw):
    """issue 12: float64 was a raw RuntimeError in torch and accepted by tf / flax; now accepted everywhere."""
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32))
    out64 = ops(fw).run(classifier(fw), x)
    out32 = ops(fw).run(classifier(fw), x.astype(np.float32))
    assert out64.dtype == np.float32 and rel_err(out64, out32) < 1e-6


def _numpy_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits.astype(np.float64)
    if z.shape[-1] == 1:
        return float(np.mean((z.reshape(-1) - labels.reshape(-1)) ** 2))
    if np.issubdtype(labels.dtype, np.integer):
        logp = z - z.max(-1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
        return float(-np.mean(logp[np.arange(len(z)), labels]))
    return float(np.mean(np.maximum(z, 0) - z * labels + np.log1p(np.exp(-np.abs(z)))))


LABELS = {  # HF's rule: MSE for one output, cross-entropy for class indices, BCE for float multi-hot labels
    "class-indices": (10, np.array([3, 7])),
    "multi-hot": (10, (np.arange(20).reshape(2, 10) % 3 == 0).astype(np.float32)),
    "regression": (1, np.array([0.5, -1.0], np.float32)),
}


@pytest.mark.parametrize("case", list(LABELS))
def test_same_loss(fw, case):
    """issue 12: float labels were BCE in torch, a TypeError in tf and soft cross-entropy in flax."""
    num_classes, labels = LABELS[case]
    model = classifier(fw, num_classes)
    x = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32)
    logits = ops(fw).run(model, x)
    loss = ops(fw).run(model, x, labels=labels)
    assert loss == pytest.approx(_numpy_loss(logits, labels), rel=1e-5)


@pytest.mark.parametrize("option", ["drop_rate", "drop_path_rate"])
def test_dropout_acts_in_training_only(fw, option):
    """timm's drop_rate / drop_path_rate: inference is the model without them, every training step draws new masks
    (flax refused both before). The control model, without them, gives the same training loss every step. The tiny
    variant keeps XLA's compile of the training step short; with 8 samples, two steps drawing the same drop-path
    masks (and so the same loss) has a chance below 1e-6."""
    from harness import training_gradients

    state = random_state(ADHOC, num_classes=10)
    x = np.random.default_rng(1).normal(size=(8, 3, 32, 32)).astype(np.float32)
    labels = np.arange(8)
    models = {rate: rz.create(ADHOC, fw, num_classes=10, pretrained=WeightSource(state, "random", 10),
                              **{option: rate}, **NCHW) for rate in (0.0, 0.5)}
    assert rel_err(ops(fw).run(models[0.5], x), ops(fw).run(models[0.0], x)) < 1e-6
    losses = {rate: {training_gradients(fw, m, x, labels)[0] for _ in range(3)} for rate, m in models.items()}
    assert len(losses[0.0]) == 1 and len(losses[0.5]) == 3, losses


def test_frozen_bn_is_constant_in_training(fw):
    """norm="frozen_bn" (timm's freeze_batch_norm_2d): a training step normalises with the running statistics and
    trains no BatchNorm scale or bias, in every framework (tf and flax refused it before)."""
    from harness import training_gradients

    state = random_state(ADHOC, num_classes=10)
    model = rz.create(ADHOC, fw, num_classes=10, pretrained=WeightSource(state, "random", 10), norm="frozen_bn", **NCHW)
    x = np.random.default_rng(1).normal(size=(4, 3, 32, 32)).astype(np.float32)
    labels = np.array([1, 2, 3, 4])
    loss, grads = training_gradients(fw, model, x, labels)
    assert loss == pytest.approx(_numpy_loss(ops(fw).run(model, x), labels), rel=1e-5)
    assert rel_err(ops(fw).export(model)["s3.b1.conv1.bn.running_mean"], state["s3.b1.conv1.bn.running_mean"]) == 0
    bn = [k for k in grads if k.split(".")[-2] == "bn"]  # flax: zero gradients; torch, tf: not trainable at all
    assert not any(np.any(grads[k]) for k in bn) and np.any(grads["s3.b1.conv2.conv.weight"])


@pytest.mark.parametrize("labels, kind", [(np.array([[1, 2]]), ValueError), (np.zeros((2,), np.float32), ValueError),
                                          (np.zeros((2, 3), np.float32), ValueError)])
def test_bad_labels_same_error(fw, labels, kind):
    from regnet_zoo.contract import loss_kind

    x = np.zeros((2, 3, 32, 32), np.float32)
    expected = error_of(lambda: loss_kind((2, 10), labels.shape, labels.dtype))
    assert expected is not None and expected[0] is kind
    assert error_of(lambda: ops(fw).run(classifier(fw), x, labels=labels)) == expected


def test_feature_info(fw):
    """issue 12: 5 entries in torch, 4 in tf, None on the tf fast model; a plain list without timm's helpers."""
    plan = rz.plan(NAME)
    for model in (classifier(fw), rz.create(NAME, fw, num_classes=0)):
        assert model.feature_info == plan.all_feature_info() and len(model.feature_info) == 5
        assert model.feature_info.channels() == [32, 24, 56, 152, 368]
        assert model.feature_info.reduction() == [2, 4, 8, 16, 32]
        assert model.feature_info.module_name() == ["stem", "s1", "s2", "s3", "s4"]
    backbone = rz.create(NAME, fw, features_only=True, out_indices=(0, 3))
    assert backbone.feature_info == rz.feature_info(NAME, (0, 3)) and backbone.feature_info.channels() == [32, 152]
    if "fast" not in get_host().framework(fw).unsupported:
        assert rz.create(NAME, fw, fast=True).feature_info == plan.all_feature_info()


def test_timm_conventions(fw):
    """issue 14: every model carries the tag's ``pretrained_cfg`` (even unloaded, as in timm), ``weight_tag`` and
    ``variant_name``, so ``rz.data_config(model)`` gives the tag's pipeline."""
    tag = "regnety_002.pycls_in1k"
    res = rz.resolve(tag)
    for features_only in (False, True):
        model = rz.create(tag, fw, features_only=features_only)
        assert model.pretrained_cfg == pretrained_cfg(res.variant, res.weight, features_only=features_only)
        assert model.weight_tag == res.weight and model.variant_name == "regnety_002"
        assert rz.data_config(model) == rz.data_config(tag)


def test_output_stride_features_and_fast_path(fw):
    """output_stride=8: feature_info reports the true reductions, a features_only model returns maps of those sizes,
    and the framework's fast path (where it has one) computes the same dilated network."""
    x = np.random.default_rng(3).normal(size=(2, 3, 64, 64)).astype(np.float32)
    backbone = rz.create(NAME, fw, features_only=True, out_indices=(2, 3, 4), output_stride=8, **NCHW)
    assert backbone.feature_info == rz.feature_info(NAME, (2, 3, 4), output_stride=8)
    assert backbone.feature_info.reduction() == [8, 8, 8]
    assert [m.shape for m in ops(fw).run(backbone, x)] == [(2, 56, 8, 8), (2, 152, 8, 8), (2, 368, 8, 8)]
    if "fast" in get_host().framework(fw).unsupported:
        return
    state = random_state(NAME, num_classes=10)
    source = WeightSource(state, "random", 10)
    plain = rz.create(NAME, fw, num_classes=10, pretrained=source, output_stride=16, **NCHW)
    fast = rz.create(NAME, fw, num_classes=10, pretrained=source, output_stride=16, fast=True, **NCHW)
    assert fast.feature_info.reduction() == [2, 4, 8, 16, 16]
    assert rel_err(ops(fw).run(fast, x), ops(fw).run(plain, x)) < 1e-4


def test_same_accepted_options(fw):
    framework = get_host().framework(fw)
    accepted = list(accepted_options(framework))
    assert accepted[:len(SHARED_NAMES)] == list(SHARED_NAMES)
    err = error_of(lambda: rz.create(NAME, fw, drop_rat=0.1))
    assert err == (TypeError, f"unknown option for framework {fw!r}: 'drop_rat' (did you mean 'drop_rate'?); "
                              f"accepted: {', '.join(accepted)}; architecture overrides: "
                              f"{', '.join([*adhoc.OVERRIDES, *adhoc.TIMM_OVERRIDE_NAMES])}")


@pytest.mark.parametrize("kwargs, kind, message", [
    ({"frozen_stages": 5}, ValueError,
     "frozen_stages must be an int in -1..4 (-1 none, 0 stem, k = stem + s1..sk), got 5"),
    ({"frozen_stages": True}, ValueError,
     "frozen_stages must be an int in -1..4 (-1 none, 0 stem, k = stem + s1..sk), got True"),
    ({"frozen_stages": 3, "features_only": True, "out_indices": (1, 2), "force": True}, ValueError,
     "frozen_stages must be an int in -1..2 (-1 none, 0 stem, k = stem + s1..sk), got 3"),
    ({"frozen_stages": 1}, ValueError, "frozen_stages=1 freezes BatchNorm statistics, but no pretrained weights"),
    ({"norm_eval": True}, ValueError, "norm_eval=True freezes BatchNorm statistics, but no pretrained weights"),
    ({"drop_rate": 1.5}, ValueError, "drop_rate must be a float in [0, 1), got 1.5"),
    ({"global_pool": "mean"}, ValueError, "global_pool must be one of 'avg', 'max', 'avgmax', 'catavgmax', '', got "
                                          "'mean'"),
    ({"global_pool": "max", "features_only": True}, ValueError, "global_pool='max' has no effect with "
                                                                "features_only=True"),
    ({"norm": "batch"}, ValueError,
     "norm must be one of 'bn', 'frozen_bn', 'sync_bn' (BatchNorm's mode), got 'batch'"),
    ({"output_stride": 4}, ValueError, "output_stride must be one of 8, 16, 32 (the reduction after which later "
                                       "stages are dilated instead of strided), got 4"),
    ({"output_stride": 64}, ValueError, "output_stride must be one of 8, 16, 32"),
    ({"output_stride": "16"}, ValueError, "output_stride must be one of 8, 16, 32"),
    ({"output_stride": True}, ValueError, "output_stride must be one of 8, 16, 32"),
])
def test_same_option_errors(fw, kwargs, kind, message):
    err = error_of(lambda: rz.create(NAME, fw, **kwargs))
    assert err is not None and err[0] is kind and err[1].startswith(message)


@pytest.mark.parametrize("pool", ["max", "avgmax"])
def test_global_pool_matches_timm(fw, pool):
    """timm's global_pool in every framework, fast path included (tf and flax accepted only "avg" before)."""
    from harness import timm_reference

    state = random_state(NAME, num_classes=10)
    x = np.random.default_rng(2).normal(size=(2, 3, 64, 64)).astype(np.float32)
    want, _ = timm_reference(NAME, state, x, num_classes=10, global_pool=pool)
    fast = [False] if "fast" in get_host().framework(fw).unsupported else [False, True]
    for f in fast:
        model = rz.create(NAME, fw, num_classes=10, pretrained=WeightSource(state, "random", 10), global_pool=pool,
                          fast=f, **NCHW)
        assert rel_err(ops(fw).run(model, x), want) < LOGITS_RTOL, f


def test_unsupported_options_name_the_framework_and_reason(fw):
    framework = get_host().framework(fw)
    for name, reason in framework.unsupported.items():
        value = 0.1 if name.endswith("rate") else True
        with pytest.raises(UnsupportedOptionError) as e:
            rz.create(NAME, fw, **{name: value})
        assert str(e.value) == f"framework {fw!r} does not support {name}={value!r}: {reason}"
    values = {"drop_rate": 0.1, "drop_path_rate": 0.1, "data_format": "channels_first", "fast": True, "abstract": True}
    for name in set(values) - set(framework.unsupported):  # accepted: validated without building anything
        assert getattr(rz.build_request(NAME, fw, **{name: values[name]}).shared, name) == values[name]
    for value in FAST[1:]:  # every fast= value: refused with the framework's reason, or outside its limits, or accepted
        if "fast" in framework.unsupported:
            with pytest.raises(UnsupportedOptionError) as e:
                rz.create(NAME, fw, fast=value)
            assert str(e.value) == f"framework {fw!r} does not support fast={value!r}: {framework.unsupported['fast']}"
        elif value in framework.limits.get("fast", FAST):
            assert rz.build_request(NAME, fw, fast=value).shared.fast == value
        else:
            with pytest.raises(UnsupportedOptionError, match=f"framework {fw!r} does not support fast=.*; it accepts"):
                rz.build_request(NAME, fw, fast=value)


def test_shallow_features_only_loads_and_exports_timm_weights(fw, tmp_path):
    """issue 12: tf features_only with out_indices=(1, 2) and pretrained=<timm checkpoint> raised
    'AssertionError: layer names do not match the canonical keys'."""
    from safetensors.numpy import save_file

    state = random_state(NAME)
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    model = rz.create(NAME, fw, features_only=True, out_indices=(1, 2), pretrained=str(path), **NCHW)
    exported = ops(fw).export(model)
    assert sorted(exported) == sorted(k for k in state if k.split(".")[0] in ("stem", "s1", "s2"))
    assert all(np.array_equal(exported[k], state[k]) for k in exported)
    ops(fw).load(model, exported)  # and back in, strictly
    x = np.random.default_rng(2).normal(size=(1, 3, 64, 64)).astype(np.float32)
    maps = ops(fw).run(model, x)
    assert [m.shape for m in maps] == [(1, 24, 16, 16), (1, 56, 8, 8)]
    reference = rz.create(NAME, fw, features_only=True, out_indices=(1, 2, 3, 4), pretrained=str(path), **NCHW)
    for got, want in zip(maps, ops(fw).run(reference, x)[:2]):
        assert rel_err(got, want) < HIDDEN_RTOL


ADHOC = {"name": "tiny_y", "block": "y", "stem_width": 16, "widths": [16, 32, 48, 64], "depths": [1, 1, 2, 1],
         "group_width": 8}
_adhoc_logits: dict = {}


def test_adhoc_variant_from_dict_and_file(fw, tmp_path):
    """issue 13: a variant given as a dict or a YAML file builds the same network in every framework: the plan's
    feature_info, the canonical keys, and (same weights) the same logits as the dict in the other frameworks."""
    from regnet_zoo.keys import canonical_shapes

    path = tmp_path / "mine.yaml"
    path.write_text("schema: 1\nvariants:\n  tiny_y:\n" + "".join(
        f"    {k}: {v}\n" for k, v in ADHOC.items() if k != "name") + "  tiny_x:\n" + "".join(
        f"    {k}: {v}\n" for k, v in dict(ADHOC, block="x").items() if k != "name"))
    plan = rz.plan(ADHOC)
    state = random_state(ADHOC, num_classes=10)  # random_state takes any variant spec rz.plan does
    assert sorted(state) == sorted(canonical_shapes(rz.plan(f"{path}::tiny_y"), 10, 3))
    x = np.random.default_rng(3).normal(size=(2, 3, 32, 32)).astype(np.float32)
    outputs = []
    for spec in (ADHOC, f"{path}::tiny_y"):
        model = rz.create(spec, fw, num_classes=10, pretrained=WeightSource(state, "random", 10), **NCHW)
        assert model.feature_info == plan.all_feature_info() and model.feature_info.channels() == [16, 16, 32, 48, 64]
        assert sorted(ops(fw).export(model)) == sorted(state)
        outputs.append(ops(fw).run(model, x))
    assert np.array_equal(outputs[0], outputs[1])
    for other, logits in _adhoc_logits.items():  # the frameworks that ran before
        assert rel_err(outputs[0], logits) < LOGITS_RTOL, other
    _adhoc_logits[fw] = outputs[0]
    backbone = rz.create(f"{path}::tiny_x", fw, features_only=True, out_indices=(1, 3), **NCHW)
    assert backbone.feature_info == rz.feature_info(f"{path}::tiny_x", (1, 3))
    assert [m.shape for m in ops(fw).run(backbone, x)] == [(2, 16, 8, 8), (2, 48, 2, 2)]


@pytest.mark.parametrize("change", [{"widths": [16, 32, 48, "x"]}, {"group_widht": 8}, {"group_width": 24},
                                    {"name": "regnetx_002"}])
def test_bad_adhoc_variant_same_error(fw, change):
    """An invalid ad-hoc variant is refused by the registry loader before any framework builds anything."""
    bad = dict(ADHOC, **change)
    expected = error_of(lambda: rz.plan(bad))
    assert expected is not None and expected[0] is rz.RegistryError
    assert error_of(lambda: rz.create(bad, fw, **NCHW)) == expected
