"""The built-in registry against the real libraries: timm, torchvision, transformers (and pycls's published
complexity figures). Parametrised over every variant."""

from __future__ import annotations

import pytest

import regnet_zoo as rz
from testdeps import require
from regnet_zoo.generator import generate
from regnet_zoo.keys import canonical_shapes, is_buffer
from regnet_zoo.pretrained_cfg import pretrained_cfg

ALL = rz.list_variants()

# pycls model zoo (MODEL_ZOO.md / dds_baselines configs): flops (multiply-adds), params, activations at 224.
PYCLS = {
    "regnetx_002": (199040872, 2684792, 2164056), "regnetx_004": (397678568, 5157512, 3143272),
    "regnetx_006": (600891112, 6196040, 3975096), "regnetx_008": (799700712, 7259656, 5148744),
    "regnetx_016": (1602850792, 9190136, 7933512), "regnetx_032": (3176622952, 15296552, 11367432),
    "regnetx_040": (3964499816, 22118248, 12201608), "regnetx_064": (6460292264, 26209256, 16369744),
    "regnetx_080": (7995133416, 39572648, 14059688), "regnetx_120": (12086679016, 46106056, 21366568),
    "regnetx_160": (15940756456, 54278536, 25515496), "regnetx_320": (31735930792, 107811560, 36302160),
    "regnety_002": (199519076, 3162996, 2168052), "regnety_004": (401849056, 4344144, 3892496),
    "regnety_006": (601227608, 6055160, 4334296), "regnety_008": (797183328, 6263168, 5249888),
    "regnety_016": (1612087326, 11202430, 8044814), "regnety_032": (3176496162, 19436338, 11263418),
    "regnety_040": (3973301344, 20646656, 12287200), "regnety_064": (6355221876, 30583252, 16407188),
    "regnety_080": (7963074196, 39180068, 17968916), "regnety_120": (12092395504, 51822544, 21384496),
    "regnety_160": (15911534044, 83590140, 23041228), "regnety_320": (32279583362, 145046770, 30261570),
}
TIMM = [n for n in ALL if n != "regnety_10b"]
TORCHVISION = {"regnet_x_400mf": "regnetx_004_tv", "regnet_x_800mf": "regnetx_008", "regnet_x_1_6gf": "regnetx_016",
               "regnet_x_3_2gf": "regnetx_032", "regnet_x_8gf": "regnetx_080", "regnet_x_16gf": "regnetx_160",
               "regnet_x_32gf": "regnetx_320", "regnet_y_400mf": "regnety_004", "regnet_y_800mf": "regnety_008_tv",
               "regnet_y_1_6gf": "regnety_016", "regnet_y_3_2gf": "regnety_032", "regnet_y_8gf": "regnety_080_tv",
               "regnet_y_16gf": "regnety_160", "regnet_y_32gf": "regnety_320", "regnet_y_128gf": "regnety_1280"}


@pytest.mark.parametrize("name", ALL)
def test_generator_reproduces_stage_lists(name):
    v = rz.get_variant(name)
    g = v.generator
    widths, depths, groups = generate(g.w0, g.wa, g.wm, g.depth, v.group_widths[0], g.rounding)
    assert (widths, depths) == (list(v.widths), list(v.depths))
    assert groups == [s.group_width for s in rz.plan(name).stages]


@pytest.mark.parametrize("name", sorted(PYCLS))
def test_complexity_equals_pycls_published(name):
    cx = rz.plan(name).complexity(224)
    assert (cx.flops, cx.params, cx.acts) == PYCLS[name]


def test_every_pycls_model_is_in_the_registry():
    assert {rz.get_variant(f"RegNet{n[6].upper()}-{m}").name for n, m in
            [("regnetx", "200MF"), ("regnety", "32GF"), ("regnetx", "8.0GF")]} == {"regnetx_002", "regnety_320",
                                                                                   "regnetx_080"}


@pytest.mark.parametrize("name", TIMM)
def test_plan_matches_timm(name):
    """Stage widths, depths, groups, SE widths, parameter count and feature_info equal timm's model."""
    require("torch", "timm")
    import timm
    import torch

    with torch.device("meta"):
        model = timm.create_model(name)
    pl = rz.plan(name)
    assert sum(p.numel() for p in model.parameters()) == pl.params(1000)
    assert [dict(num_chs=f.channels, reduction=f.reduction, module=f.name) for f in pl.all_feature_info()] == \
        [dict(num_chs=f["num_chs"], reduction=f["reduction"], module=f["module"]) for f in model.feature_info]
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert shapes == canonical_shapes(pl)
    for s in pl.stages:
        stage = getattr(model, s.name)
        for b in s.blocks:
            block = getattr(stage, b.name.split(".")[1])
            assert (block.conv2 if pl.preact else block.conv2.conv).groups == b.groups
            assert (block.se.fc1.out_channels if b.se_width else 0) == b.se_width


def test_regnety_10b_matches_hf_config():
    """The SEER 10B trunk: HF's RegNetModel built from the registry has the plan's parameter count."""
    require("torch", "transformers")
    import torch
    from transformers import RegNetConfig, RegNetModel

    v, pl = rz.get_variant("regnety_10b"), rz.plan("regnety_10b")
    cfg = RegNetConfig(hidden_sizes=list(v.widths), depths=list(v.depths), groups_width=1010, layer_type="y")
    with torch.device("meta"):
        model = RegNetModel(cfg)
    assert sum(p.numel() for p in model.parameters()) == pl.params(0) == 9_323_934_872


@pytest.mark.parametrize("name", [n for n in ALL if any(w.keys == "hf" for w in rz.get_variant(n).weights.values())])
def test_hf_checkpoints_build_with_the_plan_parameter_count(name):
    require("torch", "transformers")
    import torch
    from transformers import RegNetConfig, RegNetModel

    v, pl = rz.get_variant(name), rz.plan(name)
    cfg = RegNetConfig(hidden_sizes=list(v.widths), depths=list(v.depths), groups_width=v.group_widths[0],
                       layer_type=v.block, embedding_size=v.stem_width)
    with torch.device("meta"):
        model = RegNetModel(cfg)
    assert sum(p.numel() for p in model.parameters()) == pl.params(0)


@pytest.mark.parametrize("tv_name", sorted(TORCHVISION))
def test_torchvision_aliases_resolve_to_torchvision_rounding(tv_name, monkeypatch):
    """torchvision's own width rule (BlockParams) gives the stage lists of the variant its builder name selects."""
    require("torch", "torchvision")
    from torchvision.models import regnet as tv

    variant = rz.get_variant(tv_name)
    assert variant.name == TORCHVISION[tv_name]
    captured = {}
    monkeypatch.setattr(tv, "_regnet", lambda params, *a, **k: captured.setdefault("params", params))
    getattr(tv, tv_name)()  # the builder's own BlockParams, without building the network
    params = captured["params"]
    widths, _, _, group_widths, _ = zip(*params._get_expanded_params())
    assert list(widths) == list(variant.widths)
    assert list(params.depths) == list(variant.depths)
    assert list(group_widths) == [s.group_width for s in rz.plan(tv_name).stages]


@pytest.mark.parametrize("name", ALL)
def test_canonical_shapes_count_the_parameters(name):
    import math

    pl = rz.plan(name)
    shapes = canonical_shapes(pl, 1000)
    assert sum(math.prod(s) for k, s in shapes.items() if not is_buffer(k)) == pl.params(1000)


def test_weight_tags_cover_timm_pretrained_tags():
    require("timm")
    import timm

    ours = set(rz.list_variants(pretrained=True))
    theirs = {n for n in timm.list_models("regnet[xy]_*", pretrained=True) if not n.startswith("regnety_040_sgn")}
    assert theirs <= ours, sorted(theirs - ours)
    for name in theirs:
        res = rz.resolve(name)
        assert res.weight.hub == f"timm/{name}" and res.weight.keys == "timm"
        cfg = timm.models.get_pretrained_cfg(name)
        assert (res.weight.num_classes, res.weight.input_size, res.weight.crop_pct, res.weight.interpolation) == \
            (cfg.num_classes, cfg.input_size[1], cfg.crop_pct, cfg.interpolation)
        assert tuple(res.weight.mean) == tuple(cfg.mean) and res.weight.license == cfg.license
        ours, theirs = pretrained_cfg(res.variant, res.weight), cfg.to_dict()  # what every model carries
        assert {k: theirs.get(k) for k in ours} == ours, name
        assert pretrained_cfg(res.variant, res.weight, features_only=True) == \
            {k: v for k, v in ours.items() if k not in ("num_classes", "classifier")}
