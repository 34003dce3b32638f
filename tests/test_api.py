"""The public API through the toy framework: names, aliases, tags, create() and its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import regnet_zoo as rz
from regnet_zoo.errors import (FrameworkNotInstalledError, UnknownFrameworkError, UnknownVariantError,
                               WeightsError)

ALIASES = {
    "facebook/regnet-y-040": "regnety_040", "RegNetY-4.0GF": "regnety_040", "regnet_y_3_2gf": "regnety_032",
    "RegNetY032": "regnety_032", "regnet_x_400mf": "regnetx_004_tv", "RegNetX-400MF": "regnetx_004",
    "REGNETY_040": "regnety_040", "facebook/regnet-y-10b-seer": "regnety_10b", "regnet_y_128gf": "regnety_1280",
}


def test_import_and_listing_import_no_framework():
    code = ("import sys, regnet_zoo as rz; rz.list_variants(); rz.list_variants(pretrained=True); "
            "rz.plan('regnety_10b').flops(); rz.feature_info('regnety_040'); rz.list_frameworks(); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'torch', 'tensorflow', 'keras', 'jax', 'flax', 'timm', 'transformers', 'numpy'}); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_list_variants():
    names = rz.list_variants()
    assert len(names) == 37 and names[:3] == ["regnetv_040", "regnetv_064", "regnetx_002"]
    assert rz.list_variants("regnety_0[48]0*") == ["regnety_040", "regnety_040_sgn", "regnety_080", "regnety_080_tv"]
    assert "regnety_040.ra3_in1k" in rz.list_variants(pretrained=True)
    assert rz.list_variants("regnety_040", pretrained=True) == ["regnety_040.ra3_in1k", "regnety_040.pycls_in1k",
                                                                "regnety_040.hf_in1k"]
    assert rz.list_variants(framework="torch") == names
    buildable = rz.list_variants(framework="jax")  # what the flax plugin declares it builds (design_features)
    assert set(buildable) <= set(names) and {n for n in names if n.startswith(("regnetx", "regnety_0"))} <= \
        set(buildable) | {"regnety_040_sgn"}
    with pytest.raises(UnknownFrameworkError, match="unknown framework 'mxnet'; known frameworks: torch"):
        rz.list_variants(framework="mxnet")


@pytest.mark.parametrize("alias, name", sorted(ALIASES.items()))
def test_aliases(alias, name):
    assert rz.get_variant(alias).name == name


def test_tags_and_hub_ids():
    assert rz.resolve("regnety_040.ra3_in1k").tag == "ra3_in1k"
    assert rz.resolve("RegNetY-4.0GF.hf_in1k").weight.hub == "facebook/regnet-y-040"
    assert rz.resolve("facebook/regnet-y-320-seer-in1k").tag == "hf_seer_in1k"
    assert rz.resolve("timm/regnety_160.swag_ft_in1k").weight.input_size == 384
    assert rz.resolve("regnety_040").tag is None and rz.get_variant("regnety_040").default_tag == "ra3_in1k"


def test_unknown_names_suggest():
    with pytest.raises(UnknownVariantError) as e:
        rz.get_variant("regnety_04")
    assert str(e.value) == "unknown variant 'regnety_04'; did you mean 'regnety_040'?"
    with pytest.raises(UnknownVariantError) as e:
        rz.get_variant("regnety_040.ra3_in1")
    assert str(e.value) == ("unknown weight tag 'ra3_in1' for variant 'regnety_040'; did you mean "
                            "'regnety_040.ra3_in1k'?")
    with pytest.raises(UnknownVariantError, match=r"did you mean 'regnety_002.pycls_in1k'\?"):
        rz.get_variant("regnety_02.pycls_in1k")
    with pytest.raises(UnknownVariantError, match=r"did you mean 'regnety_040'\?"):
        rz.get_variant("RegNetY-4.0G")  # a dot inside a name is not a tag
    with pytest.raises(UnknownVariantError, match=r"did you mean 'regnety_040.hf_in1k'\?"):
        rz.get_variant("facebook/regnet-y-04")  # a hub id selects its tag


def test_a_did_you_mean_only_offers_close_names():
    families = ("the registry holds regnetx_* (13 variants), regnety_* (19 variants), regnetv_* (2 variants) and "
                "regnetz_* (3 variants): see rz.list_variants()")
    for name in ("resnet50", "efficientnet_b0", "vit_base_patch16_224"):
        with pytest.raises(UnknownVariantError) as e:
            rz.create(name)
        assert str(e.value) == f"unknown variant {name!r}, and no variant has a close name; {families}"
    with pytest.raises(UnknownVariantError) as e:  # a tag far from every tag of the variant: list them
        rz.resolve("regnety_040.tv2_in1k")
    assert str(e.value) == ("unknown weight tag 'tv2_in1k' for variant 'regnety_040'; its tags: ra3_in1k, pycls_in1k, "
                            "hf_in1k")
    with pytest.raises(WeightsError, match="tags of regnety_040: ra3_in1k, pycls_in1k, hf_in1k"):
        rz.create("regnety_040", framework="torch", pretrained="tv2_in1k")


def test_close_matches():
    from regnet_zoo.registry import close_matches, edit_distance

    assert edit_distance("regnety_04", "regnety_040") == 1 and edit_distance("ab", "ba") == 1
    names = rz.list_variants()
    assert close_matches("regnety_04", names) == ["regnety_040"]
    assert close_matches("regnety_02", names) == ["regnety_002"]  # same numbers
    assert close_matches("regnety_080_vt", names) == ["regnety_080_tv"]  # swapped letters
    assert close_matches("resnet50", names) == [] and close_matches("regnet", names) == []


class HugeModel:
    """Something with a repr as long as a real model's."""

    def __repr__(self) -> str:
        return "HugeModel(\n" + "  (layer): Conv2d(3, 32, kernel_size=(3, 3))\n" * 500 + ")"


def test_errors_show_a_type_and_a_short_repr_never_a_whole_object(toy_host):
    model = HugeModel()
    calls = [lambda: rz.create(model), lambda: rz.plan(model), lambda: rz.data_config(list(range(1000))),
             lambda: rz.create("regnetx_002", framework=model), lambda: rz.create("regnetx_002", num_classes=model),
             lambda: rz.create("regnetx_002", framework="toy", features_only=model),
             lambda: rz.create("regnetx_002", framework="toy", pretrained=model),
             lambda: rz.feature_info("regnetx_002", list(range(1000))),
             lambda: rz.preprocess(rz.preprocessing.SAMPLE_IMAGE, data_format=model)]
    for call in calls:
        with pytest.raises(Exception) as e:
            call()
        message = str(e.value)
        assert len(message) < 250 and "\n" not in message, message
        assert "HugeModel: HugeModel(..." in message or "[0, 1, 2, 3" in message or "(0, 1, 2, 3" in message, message
    with pytest.raises(UnknownVariantError) as e:
        rz.create(model)
    assert str(e.value).startswith("variant name must be a non-empty string, got a ")
    assert str(e.value).endswith("HugeModel: HugeModel(...")


def test_plan_and_feature_info():
    pl = rz.plan("regnetx_080")
    assert [s.group_width for s in pl.stages] == [80, 120, 120, 120]  # clipped in s1
    assert [s.groups for s in pl.stages] == [1, 2, 6, 16]
    assert [(f.name, f.level, f.channels, f.reduction) for f in rz.feature_info("regnety_040", (0, 4))] == \
        [("stem", "P1", 32, 2), ("s4", "P5", 1088, 32)]
    assert [f.index for f in rz.feature_info("regnety_040", [3, 1])] == [1, 3]
    for bad in [(5,), (), (1, 1), (True,), 2, ("1",)]:
        with pytest.raises(ValueError, match="out_indices"):
            rz.feature_info("regnety_040", bad)


def test_output_stride_is_in_the_plan():
    """timm's rule, in pure Python: stages past the reduction get stride 1 and a dilation; block 0 of a dilated stage
    keeps the previous one (1 for dilation 2, 2 for dilation 4). Keys, params and widths do not change."""
    plain, os16, os8 = (rz.plan("regnety_040", s) for s in (32, 16, 8))
    assert rz.plan("regnety_040") is plain and plain.output_stride == 32
    assert [(s.stride, s.dilation) for s in os16.stages] == [(2, 1), (2, 1), (2, 1), (1, 2)]
    assert [(s.stride, s.dilation) for s in os8.stages] == [(2, 1), (2, 1), (1, 2), (1, 4)]
    assert [b.dilation for b in os8.stages[3].blocks] == [2, 4]
    assert [b.dilation for b in os8.stages[2].blocks] == [1] + [2] * 11
    assert [b.stride for b in os8.stages[2].blocks] == [1] * 12
    assert all(b.shortcut_conv == (j == 0) for s in os8.stages for j, b in enumerate(s.blocks))
    assert os8.params() == plain.params() and os8.flops() > os16.flops() > plain.flops()
    assert rz.feature_info("regnety_040", output_stride=16).reduction() == [4, 8, 16, 16]
    assert rz.feature_info("regnety_040", (0, 4), output_stride=8).reduction() == [2, 8]
    with pytest.raises(ValueError, match=r"output_stride must be one of 8, 16, 32 .*got 12"):
        rz.plan("regnety_040", 12)
    with pytest.raises(ValueError, match="already 8"):
        os8.with_output_stride(16)


@pytest.mark.parametrize("output_stride", (32, 16, 8))
def test_every_plan_survives_its_json_config(output_stride):
    """``to_config`` is what a framework serialises (Keras ``get_config``); ``from_config`` gives back an equal plan,
    for every variant, dilated or truncated, and refuses anything else by name."""
    from regnet_zoo.plan import ArchPlan

    for name in rz.list_variants():
        for plan in (rz.plan(name, output_stride), rz.plan(name, output_stride).truncated(2)):
            assert ArchPlan.from_config(json.loads(json.dumps(plan.to_config()))) == plan, name
    with pytest.raises(ValueError, match=r"not an ArchPlan config \(KeyError: 'stages'\); expected the dict"):
        ArchPlan.from_config({"name": "x"})
    with pytest.raises(ValueError, match=r"TypeError: .*unexpected keyword argument 'widths'"):
        ArchPlan.from_config({**rz.plan("regnetx_002").to_config(), "widths": [1]})


def test_create_through_toy_framework(toy_host):
    model = rz.create("regnety_040.ra3_in1k", framework="toyfw", num_classes=7, note="hi")
    req = model.request
    assert (req.variant.name, req.weight.tag, req.num_classes, req.options) == ("regnety_040", "ra3_in1k", 7,
                                                                                  {"note": "hi"})
    backbone = rz.create("toynet_y_tiny", framework="toy", features_only=True, out_indices=(4, 0))
    assert [f.index for f in backbone.feature_info] == [0, 4]
    assert rz.create("regnety_120.sw_in12k", framework="toy").request.num_classes == 11821  # the tag's head
    assert rz.create("regnety_040", framework="toy").request.num_classes == 1000
    req = rz.build_request("regnetx_002", framework="toy", features_only=True, out_indices=(3,), output_stride=8)
    assert req.plan == rz.plan("regnetx_002", 8).truncated(3) and req.feature_info.reduction() == [8]


def test_create_errors(toy_host, tmp_path):
    with pytest.raises(FrameworkNotInstalledError) as e:
        rz.create("regnety_040", framework="ghost")
    assert str(e.value) == ("framework 'ghost' needs definitely_not_installed_xyz, which is not installed; install "
                            "it with: pip install 'regnet-zoo[ghost]'")
    with pytest.raises(TypeError, match=r"unknown option for framework 'toy': 'colour'; accepted: drop_rate, "):
        rz.create("regnety_040", framework="toy", colour="red")
    with pytest.raises(ValueError, match="num_classes must be an int >= 0, got -1"):
        rz.create("regnety_040", framework="toy", num_classes=-1)
    with pytest.raises(ValueError, match="in_chans must be an int >= 1, got True"):
        rz.create("regnety_040", framework="toy", in_chans=True)
    with pytest.raises(WeightsError, match="neither a weight tag of 'regnety_040' nor an existing file or directory; did you mean "
                                           "tag 'ra3_in1k'"):
        rz.create("regnety_040", framework="toy", pretrained="ra3_in1")
    with pytest.raises(WeightsError, match="has no published weights"):
        rz.create("toynet_y_tiny", framework="toy", pretrained=True)
    with pytest.raises(UnknownFrameworkError):
        rz.create("regnety_040", framework="caffe")


def test_toy_runner_shapes(toy_host):
    run = toy_host.framework("toy").run
    backbone = rz.create("regnetx_002", framework="toy", features_only=True, out_indices=(0, 1, 2, 3, 4))
    shapes = [m.shape for m in run(backbone, np.zeros((1, 3, 64, 64), np.float32))]
    assert shapes == [(1, 32, 32, 32), (1, 24, 16, 16), (1, 56, 8, 8), (1, 152, 4, 4), (1, 368, 2, 2)]
