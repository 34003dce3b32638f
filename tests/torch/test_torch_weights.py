"""Canonical weights in and out of torch models: strictness, messages, round trip, and the builder's load policy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from testdeps import require

require("torch", "timm")

import torch  # noqa: E402

import regnet_zoo as rz  # noqa: E402
from harness import ops, random_input, random_state, timm_model  # noqa: E402
from regnet_zoo.api import _plan_of  # noqa: E402
from regnet_zoo.frameworks import BuildRequest, WeightSource  # noqa: E402
from regnet_zoo_torch.build import build, run  # noqa: E402
from regnet_zoo_torch.weights import export_canonical, load_canonical  # noqa: E402

NAME = "regnety_002"


@pytest.fixture(scope="module")
def state():
    return random_state(NAME)


def request_for(name, weights=None, num_classes=1000, features_only=False, out_indices=(1, 2, 3, 4), **options):
    return rz.api.build_request(name, "torch", num_classes=num_classes, features_only=features_only,
                                out_indices=out_indices, pretrained=weights or False, **options)


def test_strict_load_lists_every_problem(state):
    model = rz.create(NAME)
    bad = dict(state)
    del bad["s1.b1.conv1.conv.weight"], bad["head.fc.bias"]
    bad["s9.b1.conv1.conv.weight"] = np.zeros((1,), np.float32)
    bad["stem.bn.weight"] = np.zeros((31,), np.float32)
    before = export_canonical(model)
    with pytest.raises(rz.WeightsError) as err:
        load_canonical(model, bad)
    message = str(err.value)
    for text in ("missing keys (2): s1.b1.conv1.conv.weight, head.fc.bias",
                 "unexpected keys (1): s9.b1.conv1.conv.weight",
                 "mis-shaped keys (1): stem.bn.weight: checkpoint (31,), model (32,)"):
        assert text in message
    after = export_canonical(model)
    assert all(np.array_equal(before[k], after[k]) for k in before), "a failed load must not change the model"


def test_non_strict_loads_given_keys_only(state):
    model = rz.create(NAME)
    before = export_canonical(model)
    subset = {k: v for k, v in state.items() if k.startswith("s2.")}
    load_canonical(model, subset, strict=False)
    after = export_canonical(model)
    for k in after:
        assert np.array_equal(after[k], subset[k] if k in subset else before[k]), k
    with pytest.raises(rz.WeightsError, match=r"unexpected keys \(1\): s2.b9.conv1.conv.weight"):
        load_canonical(model, {"s2.b9.conv1.conv.weight": np.zeros((1,), np.float32)}, strict=False)
    with pytest.raises(rz.WeightsError, match=r"mis-shaped keys \(1\): head.fc.weight: checkpoint \(10, 368\)"):
        load_canonical(model, {"head.fc.weight": np.zeros((10, 368), np.float32)}, strict=False)


def test_round_trip_is_bit_exact_and_timm_state_dict_loads(state):
    model = rz.create(NAME)
    load_canonical(model, state)
    out = export_canonical(model)
    assert list(out) == list(state)
    assert all(out[k].dtype == np.float32 and np.array_equal(out[k], state[k]) for k in state)
    out["stem.conv.weight"][...] = 0  # exported arrays are copies
    assert model.stem.conv.weight.abs().sum() > 0
    sd = timm_model(NAME, state).state_dict()  # timm's own state_dict, with num_batches_tracked, as tensors
    fresh = rz.create(NAME)
    load_canonical(fresh, sd)
    assert all(np.array_equal(v, state[k]) for k, v in export_canonical(fresh).items())


def test_bf16_model_exports_float32_and_readonly_memmap_loads(tmp_path, state):
    model = rz.create(NAME, dtype=torch.bfloat16)
    path = tmp_path / "w.npy"
    np.save(path, state["stem.conv.weight"])
    mm = np.load(path, mmap_mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_canonical(model, {"stem.conv.weight": mm}, strict=False)
    out = export_canonical(model)
    assert out["stem.conv.weight"].dtype == np.float32
    as_bf16 = torch.from_numpy(state["stem.conv.weight"]).bfloat16().float().numpy()
    assert np.array_equal(out["stem.conv.weight"], as_bf16)


def test_meta_and_optimised_models_refuse_weights(state):
    meta = rz.create(NAME, device="meta")
    with pytest.raises(rz.WeightsError, match=r"meta device.*to_empty"):
        load_canonical(meta, state)
    with pytest.raises(rz.WeightsError, match="meta device"):
        export_canonical(meta)
    meta.to_empty(device="cpu")
    load_canonical(meta, state)
    fast = rz.create(NAME).optimize_for_inference(compile=False)
    with pytest.raises(rz.WeightsError, match="optimised for inference"):
        load_canonical(fast, state)


def test_builder_loads_request_weights_with_the_shared_policy(state):
    x = random_input(2, 64)
    source = WeightSource(state=state, origin="test-weights", num_classes=1000)
    ref = rz.create(NAME)
    load_canonical(ref, state)
    model = build(request_for(NAME, source))
    assert np.array_equal(run(model, x), run(ref, x))
    assert model.training  # like timm: built in train mode
    # another num_classes: the head is re-initialised with a warning, the trunk loaded
    with pytest.warns(UserWarning, match="re-initialised"):
        ten = build(request_for(NAME, source, num_classes=10))
    assert ten.head.fc.weight.shape == (10, 368)
    assert np.array_equal(ten.stem.conv.weight.detach().numpy(), state["stem.conv.weight"])
    # a features_only backbone with late stages pruned still takes the full checkpoint
    backbone = build(request_for(NAME, source, features_only=True, out_indices=(1, 2)))
    assert not hasattr(backbone, "s3")
    full = rz.create(NAME, features_only=True, out_indices=(0, 1, 2, 3, 4))
    load_canonical(full, {k: v for k, v in state.items() if not k.startswith("head.")})
    ref_maps = run(full, x)
    maps = run(backbone, x)
    assert np.array_equal(maps[0], ref_maps[1]) and np.array_equal(maps[1], ref_maps[2])
    # a checkpoint that does not fit is refused with every bad key listed
    broken = dict(state)
    del broken["s4.b7.conv3.bn.running_var"]
    with pytest.raises(rz.WeightsError,
                       match=r"(?s)test-weights do not match.*missing keys \(1\): s4.b7.conv3.bn.running_var"):
        build(request_for(NAME, WeightSource(broken, "test-weights", 1000)))
    with pytest.raises(ValueError, match="device='meta'.*cannot hold pretrained weights"):
        build(request_for(NAME, source, device="meta"))


def test_runner_restores_train_mode_and_returns_float32():
    o = ops("torch")
    model = rz.create("regnetx_002", dtype=torch.bfloat16).train()
    out = o.run(model, random_input(2, 64))
    assert model.training and out.dtype == np.float32 and out.shape == (2, 1000)


@pytest.mark.parametrize("dtype", (np.float32, np.float16))
@pytest.mark.parametrize("in_chans", (1, 2, 3, 4, 5, 7))
def test_stem_adaptation_is_timms_adapt_input_conv(in_chans, dtype):
    """The host adapts a 3-channel stem for ``in_chans`` exactly as timm's ``adapt_input_conv`` (float32 math)."""
    from timm.models._manipulate import adapt_input_conv as timm_adapt

    from regnet_zoo.loading import adapt_input_conv

    w = np.random.default_rng(0).normal(size=(32, 3, 3, 3)).astype(dtype)
    want = timm_adapt(in_chans, torch.from_numpy(w.copy())).numpy()
    got = adapt_input_conv(w, in_chans)
    assert got.dtype == want.dtype and np.array_equal(got, want)
