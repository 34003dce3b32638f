"""Ad-hoc variants (issue 13): a dict or a user's YAML file instead of a registry name, validated by the registry
loader with its messages. Pure Python: nothing is built (tests/test_conformance.py builds them in every framework)."""

from __future__ import annotations

from dataclasses import replace

import pytest

import regnet_zoo as rz
from regnet_zoo.errors import RegistryError, UnknownVariantError

TINY = {"block": "y", "stem_width": 16, "widths": [16, 32, 48, 64], "depths": [1, 1, 2, 1], "group_width": 8}
REGNETX_002 = {"block": "x", "stem_width": 32, "widths": [24, 56, 152, 368], "depths": [1, 1, 4, 7],
               "group_width": 8}
TWO = """schema: 1
variants:
  tiny_x:
    block: x
    stem_width: 16
    widths: [16, 32, 48, 64]
    depths: [1, 1, 2, 1]
    group_width: 8
  tiny_y:
    block: y
    stem_width: 16
    widths: [16, 32, 48, 64]
    depths: [1, 1, 2, 1]
    group_width: 16
"""


def test_dict_builds_the_plan_the_registry_would():
    plan = rz.plan(dict(REGNETX_002, name="my_x"))
    assert plan.name == "my_x" and replace(plan, name="regnetx_002") == rz.plan("regnetx_002")
    assert rz.plan(REGNETX_002).name == "custom"  # name optional
    assert rz.feature_info(TINY, (0, 2)).channels() == [16, 32]
    assert rz.get_variant(TINY).se_ratio == 0.25 and rz.plan(TINY).stages[2].se_widths == (8, 12)
    variant = rz.get_variant(TINY)
    assert rz.resolve(variant).variant is variant and rz.plan(variant) == rz.plan(TINY)
    request = rz.build_request(TINY, "torch", num_classes=0)
    assert request.variant == variant and request.plan == rz.plan(TINY)
    import numpy as np

    assert rz.plan(dict(TINY, widths=tuple(np.int64(w) for w in TINY["widths"]))) == rz.plan(TINY)


@pytest.mark.parametrize("change, message", [
    ({"widths": [16, 32, 48, "x"]}, "<dict>: custom.widths[3] must be an int, got a string ('x')"),
    ({"group_widht": 8}, "<dict>: unknown field 'group_widht' in variant 'custom'; did you mean 'group_width'?"),
    ({"se_ratio": True}, "<dict>: custom.se_ratio must be a number, got a bool ('true')"),
    ({"block": "z"}, "<dict>: custom.block must be one of x, y, got 'z'"),
    ({"name": "My Net"}, "<dict>: variant 'My Net': names are lower-case letters, digits and '_', starting with a "
                         "letter"),
    ({"group_width": 24}, "<dict>: custom: group width 24 does not divide stage s2 width 32 (32 / 24 = 1.33 groups); "
                          "every stage width must be a multiple of its group width"),
])
def test_dict_errors_are_the_loaders(change, message):
    with pytest.raises(RegistryError) as e:
        rz.plan(dict(TINY, **change))
    assert message in e.value.problems


def test_dict_may_not_reuse_a_registry_name():
    with pytest.raises(RegistryError, match=r"^<dict>: 'regnety_002' is already the registry variant 'regnety_002' "
                                            r"\(.*registry.yaml:\d+ .*\); give the ad-hoc variant another name$"):
        rz.plan(dict(TINY, name="regnety_002"))
    with pytest.raises(TypeError, match="widths\\[0\\] must be a string, number, bool, list or mapping, got object"):
        rz.plan(dict(TINY, widths=[object()] * 4))


def test_yaml_file(tmp_path):
    one, two = tmp_path / "one.yaml", tmp_path / "two.yml"
    one.write_text("schema: 1\nvariants:\n  tiny_y:\n" + "".join(f"    {k}: {v}\n" for k, v in TINY.items()))
    two.write_text(TWO)
    assert rz.plan(str(one)).name == "tiny_y" and rz.plan(one) == rz.plan(str(one))  # str or path object
    assert replace(rz.plan(str(one)), name="custom") == rz.plan(TINY)
    assert rz.get_variant(f"{two}::tiny_x").block == "x" and rz.plan(f"{two}::tiny_y").stages[0].groups == 1
    assert rz.get_variant(f"{two}::tiny_x").source == f"{two}:3"
    with pytest.raises(UnknownVariantError, match=rf"^{two} holds 2 variants \(tiny_x, tiny_y\); say which with "
                                                  rf"'{two}::NAME'$"):
        rz.plan(str(two))
    with pytest.raises(UnknownVariantError, match=rf"^{two} has no variant 'tiny_yy'; did you mean '{two}::tiny_y'\?$"):
        rz.plan(f"{two}::tiny_yy")
    bad = tmp_path / "bad.yaml"
    bad.write_text(TWO.replace("[16, 32, 48, 64]\n    depths: [1, 1, 2, 1]\n    group_width: 16",
                               "[16, 32, 48, 64]\n    depths: [1, 1, 2, 1]\n    group_widht: 16"))
    with pytest.raises(RegistryError) as e:
        rz.create(f"{bad}::tiny_x", "torch")  # the whole file is validated, as a registry file is
    assert e.value.problems == [f"{bad}:14:5: unknown field 'group_widht' in variant 'tiny_y'; did you mean "
                                f"'group_width'?", f"{bad}:9:3: variant 'tiny_y' is missing required field "
                                                   f"'group_width'"]
    with pytest.raises(RegistryError, match="cannot read variants file"):
        rz.plan(str(tmp_path / "missing.yaml"))


def test_a_registry_file_entry_is_the_registry_variant():
    path = rz.get_variant("regnetx_002").location.file
    assert rz.get_variant(f"{path}::regnetx_002") is rz.get_variant("regnetx_002")


def _timm_group_norm(group_size):
    from functools import partial

    from timm.layers import GroupNorm

    return partial(GroupNorm, group_size=group_size)


@pytest.mark.parametrize("name, ours, timms", [
    ("regnety_002", dict(act_layer="silu", se_ratio=0.0), dict(act_layer="silu", se_ratio=0.0)),  # timm's spelling
    ("regnety_002", dict(act="gelu", se_ratio=0.5), dict(act_layer="gelu", se_ratio=0.5)),
    ("regnety_002", dict(linear_out=True, num_features=512), dict(linear_out=True, num_features=512)),
    ("regnety_002", dict(downsample="avg", preact=True), dict(downsample="avg", preact=True)),
    ("regnety_002", dict(norm_layer="groupnorm", norm_group_size=8), dict(norm_layer=(_timm_group_norm, 8))),
    ("regnety_040", dict(norm_layer="groupnorm"), dict(norm_layer="groupnorm")),  # timm's default: 32 groups
    ("regnety_040_sgn", dict(norm_layer="batchnorm"), dict(norm_layer="batchnorm")),
])
def test_create_time_overrides_equal_timms(name, ours, timms):
    """issue 13: timm's ``create_model(name, act_layer=..., se_ratio=...)`` overrides, same network as timm's."""
    from testdeps import require

    require("torch", "timm")
    import timm
    import torch

    from harness import randomize

    timms = {k: v[0](*v[1:]) if isinstance(v, tuple) else v for k, v in timms.items()}
    theirs = randomize(timm.create_model(name, **timms))
    model = rz.create(name, "torch", **ours).eval()
    model.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), theirs(x))
    assert model.variant_name == name
    assert model.pretrained_cfg.get("tag") == rz.get_variant(name).default_tag  # the weight tags are kept


def test_bad_overrides_get_the_loaders_errors():
    with pytest.raises(RegistryError) as e:
        rz.create("regnety_002", "torch", act="swish")
    assert e.value.problems == ["<regnety_002 overrides>: regnety_002.act must be one of relu, silu, gelu, gelu_tanh, "
                                "quick_gelu, mish, relu6, leaky_relu, tanh, sigmoid, identity, got 'swish'"]
    with pytest.raises(RegistryError, match="regnety_002.preact must be true or false, got a string"):
        rz.build_request("regnety_002", "torch", preact="yes")
    with pytest.raises(RegistryError, match=r"regnety_002.norm_groups 32 does not divide the normalised widths \[24, "):
        rz.build_request("regnety_002", "torch", norm_layer="groupnorm")  # timm's default 32 groups: 24 channels
    with pytest.raises(ValueError, match="use norm_layer='groupnorm'"):
        rz.build_request("regnety_002", "torch", norm="groupnorm")  # norm= is BatchNorm's mode
    with pytest.raises(TypeError, match=r"'act_layr' \(did you mean 'act_layer'\?\).*architecture overrides: act, "):
        rz.build_request("regnety_002", "torch", act_layr="silu")
