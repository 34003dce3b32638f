"""timm's model API on our torch models, beyond timm's own suite: exact values against timm's model, TorchScript /
FX / jit.trace graphs without the input checks, torchvision's FX extractor under an FPN, and the option errors."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest

from testdeps import require

require("torch", "timm", "torchvision")

import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names  # noqa: E402
from torchvision.ops import FeaturePyramidNetwork  # noqa: E402
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool  # noqa: E402

import regnet_zoo as rz  # noqa: E402
from harness import loaded_model, random_input, random_state, timm_model  # noqa: E402

NAME = "regnety_002"  # Y: SE blocks included
STAGES = ("s1", "s2", "s3", "s4")


@pytest.fixture(scope="module")
def model():
    return loaded_model("torch", NAME, num_classes=10).eval()  # random weights and BN statistics


@pytest.fixture(scope="module")
def x():
    return torch.from_numpy(random_input(2, 64))


def test_torchvision_fx_extractor_builds_an_fpn_backbone(model, x):
    """torchvision's FX feature extractor on a classifier, the maps fed to torchvision's FeaturePyramidNetwork."""
    train_nodes, eval_nodes = get_graph_node_names(model)
    assert train_nodes == eval_nodes and all(any(n.startswith(f"{s}.b1.") for n in eval_nodes) for s in STAGES)
    body = create_feature_extractor(model, return_nodes={s: str(i) for i, s in enumerate(STAGES)})
    fpn = FeaturePyramidNetwork(model.feature_info.channels([1, 2, 3, 4]), 32, extra_blocks=LastLevelMaxPool())
    backbone = nn.Sequential(OrderedDict(body=body, fpn=fpn)).eval()
    with torch.no_grad():
        maps = body(x)
        out = backbone(x)
        _, taps = model.forward_intermediates(x)
    assert all(torch.equal(maps[str(i)], taps[i + 1]) for i in range(4))
    assert [tuple(o.shape) for o in out.values()] == [(2, 32, 64 // r, 64 // r) for r in (4, 8, 16, 32, 64)]
    assert list(out) == ["0", "1", "2", "3", "pool"]
    backbone.train()(x)["pool"].sum().backward()
    assert model.s4.b1.conv2.conv.weight.grad is not None  # the extractor shares the model's parameters
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("kind", ["classifier", "unpooled", "features"])
def test_script_fx_and_trace_equal_eager_without_input_checks(kind, x):
    kwargs = {"classifier": dict(num_classes=10), "unpooled": dict(num_classes=0, global_pool=""),
              "features": dict(features_only=True, out_indices=(0, 2, 4))}[kind]
    net = loaded_model("torch", NAME, **{"num_classes": 10, **kwargs}).eval()
    with torch.no_grad():
        want = net(x)
        scripted = torch.jit.script(net)
        traced_fx = torch.fx.symbolic_trace(net)
        with warnings.catch_warnings():
            warnings.simplefilter("error", torch.jit.TracerWarning)  # no Python bool of a traced shape
            traced = torch.jit.trace(net, x, strict=kind != "features")  # a list output needs strict=False
        for graph in (scripted, traced_fx, traced):
            got = graph(x)
            got = got if isinstance(got, list) else [got]
            assert all(torch.equal(a, b) for a, b in zip(got, want if isinstance(want, list) else [want]))
    assert "check_input" not in scripted.code and "check_input" not in traced_fx.code
    assert not any(n.op == "call_function" and "check" in str(n.target) for n in traced_fx.graph.nodes)
    with pytest.raises(ValueError, match=r"it looks like NHWC"):  # eager mode still explains a bad input
        net(x.permute(0, 2, 3, 1))


def test_values_equal_timms_model(x):
    """forward_features / forward_head(pre_logits) / forward_intermediates / pooling types: timm's, bit for bit."""
    state = random_state(NAME, num_classes=10)
    ref = timm_model(NAME, state, num_classes=10)
    ours = loaded_model("torch", NAME, num_classes=10).eval()
    with torch.no_grad():
        assert torch.equal(ours.forward_features(x), ref.forward_features(x))
        feats = ours.forward_features(x)
        assert torch.equal(ours.forward_head(feats, pre_logits=True), ref.forward_head(feats, pre_logits=True))
        for kwargs in [{}, dict(indices=2), dict(indices=[0, 3], stop_early=True, intermediates_only=True)]:
            a, b = ours.forward_intermediates(x, **kwargs), ref.forward_intermediates(x, **kwargs)
            a, b = (a, b) if kwargs.get("intermediates_only") else (a[1] + [a[0]], b[1] + [b[0]])
            assert len(a) == len(b) and all(torch.equal(p, q) for p, q in zip(a, b))
        for pool in ("max", "avgmax", "catavgmax"):
            ours.reset_classifier(0, pool)
            ref.reset_classifier(0, pool)
            assert torch.equal(ours(x), ref(x)) and ours.head_hidden_size == ref.head_hidden_size
        pooled = rz.create(NAME, num_classes=0, global_pool="max").eval()
        pooled.load_state_dict(ours.state_dict())
        assert torch.equal(pooled(x), feats.amax((2, 3)))


def test_prune_intermediate_layers_and_forward_output(model, x):
    net = loaded_model("torch", NAME, num_classes=10).eval()
    with torch.no_grad():
        hidden = net(x, output_hidden_states=True).hidden_states
        assert net.prune_intermediate_layers([2]) == [2]
        assert isinstance(net.s3, nn.Identity) and isinstance(net.s4, nn.Identity)
        assert net.num_classes == 0 and net.num_features == net.head_hidden_size == 56
        assert torch.equal(net.forward_features(x), hidden[2])
        assert torch.equal(net(x, output_hidden_states=True).last_hidden_state, hidden[2])
        assert net(x).shape == (2, 56, 8, 8)  # timm: prune_head also drops the pooling
    with pytest.raises(ValueError, match="output_fmt must be 'NCHW'"):
        model.forward_intermediates(x, output_fmt="NHWC")


def test_feature_classes_return_the_same_maps(x):
    state = {k: v for k, v in random_state(NAME).items() if not k.startswith("head.")}
    maps = []
    for feature_cls in (None, "getter", "fx"):
        net = rz.create(NAME, features_only=True, out_indices=(1, 3), feature_cls=feature_cls).eval()
        target = net if feature_cls != "fx" else net.graph_module
        target.load_state_dict({k: torch.from_numpy(v) for k, v in state.items() if k in target.state_dict()},
                               strict=False)
        assert net.feature_info.channels() == [24, 152] and net.feature_info.reduction() == [4, 16]
        assert "num_classes" not in net.pretrained_cfg and net.default_cfg is net.pretrained_cfg
        with torch.no_grad():
            maps.append(net(x))
    assert all(torch.equal(a, b) for other in maps[1:] for a, b in zip(maps[0], other))
    assert isinstance(net, timm.models.FeatureGraphNet)


def test_pretrained_cfg_is_the_tags():
    model = rz.create("regnety_040.pycls_in1k", device="meta")
    assert model.default_cfg is model.pretrained_cfg
    cfg = model.pretrained_cfg
    assert (cfg["tag"], cfg["input_size"], cfg["pool_size"], cfg["first_conv"], cfg["classifier"]) == \
        ("pycls_in1k", (3, 224, 224), (7, 7), "stem.conv", "head.fc")
    assert rz.create("regnety_040", device="meta").pretrained_cfg["test_input_size"] == (3, 288, 288)  # ra3_in1k


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(global_pool="mean"), ValueError, r"global_pool must be one of 'avg', 'max', 'avgmax', 'catavgmax', ''"),
    (dict(global_pool=""), ValueError, r"global_pool='' \(no pooling\) needs num_classes=0"),
    (dict(global_pool="max", features_only=True), ValueError, "has no effect with features_only=True"),
    (dict(feature_cls="getter"), ValueError, "needs features_only=True"),
    (dict(feature_cls="hook", features_only=True), ValueError, "feature_cls must be one of None, 'list', 'getter'"),
    (dict(feature_cls="fx", features_only=True, fast=True), ValueError, "feature_cls='fx'"),
    (dict(not_a_model_arg=1), TypeError, "unknown option for framework 'torch': 'not_a_model_arg'"),
])
def test_timm_keyword_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        rz.create(NAME, device="meta", **kwargs)
