"""The torch plugin's models: structure against the plan and timm, outputs, options and input errors."""

from __future__ import annotations

import time

import numpy as np
import pytest

from testdeps import require

require("torch", "timm")

import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from timm.layers import ConvNormAct  # noqa: E402

import regnet_zoo as rz  # noqa: E402
from harness import LARGE_VARIANTS, ops, random_input, random_state  # noqa: E402
from regnet_zoo.keys import canonical_shapes  # noqa: E402

ALL = (0, 1, 2, 3, 4)
SMALL = "regnetx_002"
SMALL_Y = "regnety_002"


def canonical_keys(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


@pytest.mark.parametrize("name", rz.list_variants())
def test_structure_follows_the_plan_on_meta(name):
    """Every registry variant, built without storage: timm's key names and shapes, groups, SE widths, params."""
    plan = rz.plan(name)
    model = rz.create(name, device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert canonical_keys(model) == canonical_shapes(plan, 1000)
    assert sum(p.numel() for p in model.parameters()) == plan.params(1000)
    for stage in plan.stages:
        for b in stage.blocks:
            block = model.get_submodule(b.name)
            conv2 = block.conv2 if plan.preact else block.conv2.conv  # timm's PreBottleneck: bare convs
            assert conv2.groups == b.groups and conv2.stride == (b.stride, b.stride)
            assert (block.se.fc1.out_channels if b.se_width else 0) == b.se_width
            assert {"identity": nn.Identity, "none": type(None), "avg": nn.Sequential}.get(
                b.shortcut, nn.Conv2d if plan.preact else ConvNormAct) is type(block.downsample)


@pytest.mark.parametrize("name", ["regnetx_002", "regnety_040", "regnetx_080", "regnety_008_tv", "regnety_320"])
def test_names_are_timms(name):
    """Same module tree as timm.create_model (built on meta: no init cost)."""
    with torch.device("meta"):
        ref = timm.create_model(name)
    ours = rz.create(name, device="meta")
    assert list(canonical_keys(ours).items()) == list(canonical_keys(ref).items())
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in ref.named_modules()]


@pytest.mark.parametrize("name", ["regnety_002", "regnetv_040", "regnetz_005", "regnety_040_sgn", "regnetx_002"])
def test_layer_table_is_timms_module_tree(name):
    """The structural plan (``plan.layers()``) names timm's modules, with their types and shapes, and misses none
    that holds weights or acts (built on meta; ``regnetv_040``: pre-activation + avg shortcut, ``regnetz_005``:
    linear_out + final conv, ``regnety_040_sgn``: GroupNorm + SiLU)."""
    from timm.layers import GroupNorm

    with torch.device("meta"):
        ref = timm.create_model(name)
    modules = dict(ref.named_modules())
    table = rz.plan(name).layers()
    kinds = {"conv": nn.Conv2d, "linear": nn.Linear, "norm": (nn.BatchNorm2d, GroupNorm, nn.GroupNorm),
             "pool": nn.AvgPool2d}
    for layer in table:
        module = modules[layer.name]
        if layer.kind in kinds:
            assert isinstance(module, kinds[layer.kind]), (layer, module)
        else:  # act / gate: a real function, not an Identity placeholder
            assert not isinstance(module, nn.Identity), (layer, module)
        if layer.kind == "conv":
            got = (module.in_channels, module.out_channels, module.kernel_size[0], module.stride[0], module.groups,
                   module.dilation[0], module.bias is not None)
            assert got == (layer.in_width, layer.out_width, layer.kernel, layer.stride, layer.groups, layer.dilation,
                           layer.bias), layer.name
        if layer.kind == "norm":
            assert getattr(module, "num_features", getattr(module, "num_channels", None)) == layer.out_width
    weighted = {n for n, m in ref.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.GroupNorm))}
    assert weighted == {layer.name for layer in table if layer.kind in ("conv", "linear", "norm")}


@pytest.mark.parametrize("name", LARGE_VARIANTS)
def test_large_variants_on_meta(name):
    t0 = time.perf_counter()
    model = rz.create(name, device="meta", num_classes=0)
    assert time.perf_counter() - t0 < 30
    assert sum(p.numel() for p in model.parameters()) == rz.plan(name).params(0)
    backbone = rz.create(name, device="meta", features_only=True)
    with torch.no_grad():
        maps = backbone(torch.empty(1, 3, 224, 224, device="meta"))
    assert [tuple(m.shape[1:]) for m in maps] == [(f.channels, 224 // f.reduction, 224 // f.reduction)
                                                  for f in rz.feature_info(name)]


def test_10b_on_meta_is_fast_and_allocates_nothing():
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    model = rz.create("regnety_10b", device="meta")
    elapsed = time.perf_counter() - t0
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert elapsed < 20, elapsed
    assert grown_mb < 500, grown_mb  # 9.35e9 float32 parameters would be 37 GB
    assert sum(p.numel() for p in model.parameters()) == rz.plan("regnety_10b").params(1000)


def test_classifier_headless_and_pooled():
    x = torch.randn(2, 3, 64, 64)
    model = rz.create(SMALL, num_classes=10).eval()
    assert model(x).shape == (2, 10)
    headless = rz.create(SMALL, num_classes=0).eval()
    assert headless(x).shape == (2, 368)
    assert not any(k.startswith("head.") for k in headless.state_dict())
    assert model.num_features == 368 and model.get_classifier().out_features == 10


@pytest.mark.parametrize("out_indices", [(0,), (4, 2), (3, 0, 1), (1, 2, 3, 4), ALL])
def test_features_only_any_subset_sorted(out_indices):
    backbone = rz.create(SMALL_Y, features_only=True, out_indices=out_indices).eval()
    want = rz.feature_info(SMALL_Y, out_indices)
    assert [f.as_dict() for f in backbone.feature_info] == [f.as_dict() for f in want]
    assert backbone.out_indices == tuple(sorted(out_indices))
    assert backbone.out_channels == [f.channels for f in want]
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, 64, 64))
    assert [tuple(m.shape[1:]) for m in maps] == [(f.channels, 64 // f.reduction, 64 // f.reduction) for f in want]
    # stages after the deepest index are not built (as timm's features_only)
    assert hasattr(backbone, f"s{max(max(out_indices), 1)}") or max(out_indices) == 0
    assert not hasattr(backbone, f"s{max(out_indices) + 1}")


def test_hidden_states_output_matches_plain_forward():
    o = ops("torch")
    model = rz.create(SMALL_Y, num_classes=7)
    o.load(model, random_state(SMALL_Y, num_classes=7))
    model.eval()
    x = torch.from_numpy(random_input(2, 64))
    backbone = rz.create(SMALL_Y, features_only=True, out_indices=ALL).eval()
    backbone.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        logits = model(x)
        out = model(x, output_hidden_states=True)
        maps = backbone(x)
        plain = model(x, return_dict=True)
    assert isinstance(out, rz.RegNetOutput)
    assert torch.equal(out.logits, logits) and torch.equal(plain.logits, logits)
    assert plain.hidden_states is None and plain.loss is None
    assert len(out.hidden_states) == 5
    for h, m in zip(out.hidden_states, maps):
        assert torch.equal(h, m)
    assert torch.equal(out.last_hidden_state, maps[-1])
    assert torch.equal(out.pooler_output, maps[-1].mean((2, 3)))
    assert out.keys() == ["logits", "pooler_output", "last_hidden_state", "hidden_states"]
    headless = rz.create(SMALL_Y, num_classes=0).eval()
    h = headless(x, output_hidden_states=True)
    assert h.logits is None and h.pooler_output.shape == (2, 368)


def test_labels_give_hf_losses():
    x = torch.randn(2, 3, 64, 64)
    model = rz.create(SMALL, num_classes=5).eval()
    labels = torch.tensor([1, 4])
    out = model(x, labels=labels)
    assert torch.allclose(out.loss, nn.functional.cross_entropy(out.logits, labels))
    out.loss.backward()
    assert model.stem.conv.weight.grad is not None
    multi = torch.tensor([[0, 1, 0, 0, 1], [1, 0, 0, 0, 0]], dtype=torch.float32)
    out = model(x, labels=multi)
    assert torch.allclose(out.loss, nn.functional.binary_cross_entropy_with_logits(out.logits, multi))
    regressor = rz.create(SMALL, num_classes=1).eval()
    target = torch.tensor([0.5, -1.0])
    out = regressor(x, labels=target)
    assert torch.allclose(out.loss, nn.functional.mse_loss(out.logits.squeeze(-1), target))
    with pytest.raises(ValueError, match="num_classes=0"):
        rz.create(SMALL, num_classes=0)(x, labels=labels)


@pytest.mark.parametrize("bad, error, message", [
    (torch.randn(3, 64, 64), ValueError, r"4-D NCHW image batch \(N, 3, H, W\).*x\[None\]"),
    (torch.randn(1, 1, 64, 64), ValueError, r"3 channels on axis 1, got shape \(1, 1, 64, 64\).*in_chans=1"),
    (torch.randn(1, 64, 64, 3), ValueError, r"looks like NHWC: transpose it with axes \(0, 3, 1, 2\)"),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, r"floating-point.*got uint8.*/ 255"),
    (torch.randn(1, 3, 16, 64), ValueError, r"16x64 pixels is too small.*>= 32"),
    (np.zeros((1, 3, 64, 64), np.float32), TypeError, r"torch.Tensor.*ndarray"),
])
@pytest.mark.parametrize("features_only", [False, True])
def test_bad_input_is_named(bad, error, message, features_only):
    model = rz.create(SMALL, features_only=features_only)
    with pytest.raises(error, match=message):
        model(bad)


def test_in_chans():
    model = rz.create(SMALL, in_chans=1, num_classes=3).eval()
    assert model.stem.conv.weight.shape == (32, 1, 3, 3)
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 3)
    with pytest.raises(ValueError, match="with 1 channels on axis 1"):
        model(torch.randn(1, 3, 32, 32))


def test_unknown_and_bad_options():
    with pytest.raises(TypeError, match=r"unknown option for framework 'torch': 'frozen_stage' "
                                        r"\(did you mean 'frozen_stages'\?\); accepted: drop_rate, "):
        rz.create(SMALL, frozen_stage=1)
    with pytest.raises(TypeError, match=r"unknown options.*'foo', 'bar'"):
        rz.create(SMALL, foo=1, bar=2)
    for kwargs, message in [({"frozen_stages": 5}, "frozen_stages must be an int"),
                            ({"frozen_stages": True}, "frozen_stages must be an int"),
                            ({"norm": "gn"}, "norm must be one of 'bn', 'frozen_bn', 'sync_bn'"),
                            ({"norm_eval": 1}, "norm_eval must be True or False"),
                            ({"drop_rate": 1.5}, r"drop_rate must be a float in \[0, 1\)"),
                            ({"dtype": "int8"}, "dtype must be a torch floating dtype"),
                            ({"dtype": torch.int64}, "floating-point dtype"),
                            ({"device": "nowhere"}, "device must be a torch.device"),
                            ({"fast": "int8"}, "fast must be False, True"),
                            ({"fast": True, "frozen_stages": 1, "force": True}, "inference-only")]:
        with pytest.raises(ValueError, match=message):
            rz.create(SMALL, **kwargs)


def test_dtype_option_and_train_mode_updates_every_bn():
    model = rz.create(SMALL, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    model = rz.create(SMALL, drop_rate=0.2, drop_path_rate=0.1).train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in bns]
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert all(not torch.equal(b, m.running_mean) for b, m in zip(before, bns))
    assert all(p.grad is not None for p in model.parameters())


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = rz.create(SMALL_Y, num_classes=4)
    for m in model.modules():  # timm zero-inits the last BN of each block; make every branch count
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.0)
    x = torch.randn(2, 3, 64, 64)

    def grads(enable: bool):
        model.zero_grad()
        model.set_grad_checkpointing(enable)
        model.train()
        model(x).square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain, ckpt = grads(False), grads(True)
    assert all(s.grad_checkpointing for s in model.stages())
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(plain, ckpt))


def test_reset_classifier_and_group_matcher():
    model = rz.create(SMALL, num_classes=10)
    model.reset_classifier(3)
    assert model.head.fc.weight.shape == (3, 368) and model.num_classes == 3
    model.reset_classifier(0)
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 368)
    assert model.group_matcher() == {"stem": r"^stem", "blocks": r"^s(\d+)\.b(\d+)"}


@pytest.mark.parametrize("name, output_stride", [(n, s) for n in ("regnetx_002", "regnety_002") for s in (32, 16, 8)]
                         + [("regnetz_005", 32), ("regnetv_064", 16)])  # no shortcut / final conv; avg shortcut
def test_plan_complexity_counts_the_dilated_network_timm_runs(name, output_stride):
    """flops / params / acts of ``rz.plan(name, output_stride)`` equal a count of timm's own ``output_stride`` model,
    layer by layer on its real output shapes (pycls's rules: conv MACs + bias, linear MACs + bias)."""
    model = timm.create_model(name, output_stride=output_stride).eval()
    counted = {"flops": 0, "acts": 0}

    def hook(module, inputs, out):
        per_out = out[0].numel()  # one sample
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            counted["flops"] += per_out * k * module.in_channels // module.groups
        else:
            counted["flops"] += per_out * module.in_features
        counted["flops"] += per_out if module.bias is not None else 0
        counted["acts"] += per_out

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, 72, 72))  # 9 x 9 maps in s3: odd sizes (ceil-mode avg-pool shortcuts) are counted
    cx = rz.plan(name, output_stride).complexity(72)
    assert (cx.flops, cx.acts) == (counted["flops"], counted["acts"])
    assert cx.params == sum(p.numel() for p in model.parameters()) == rz.plan(name).params()
