"""Per-tag data configuration and preprocessing, checked against timm's own eval transform."""

from __future__ import annotations

import numpy as np
import pytest

import regnet_zoo as rz
from testdeps import require
from regnet_zoo.preprocessing import SAMPLE_IMAGE, data_config, preprocess


def test_data_config_per_tag():
    assert data_config("regnety_040.ra3_in1k") == {"input_size": 224, "crop_pct": 0.95, "interpolation": "bicubic",
                                                   "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    assert data_config("regnety_040.ra3_in1k", test=True)["input_size"] == 288
    assert data_config("regnety_160.swag_ft_in1k")["input_size"] == 384
    assert data_config("regnety_040")["crop_pct"] == 0.95  # default tag


@pytest.mark.parametrize("tag", ["regnety_040.ra3_in1k", "regnetx_002.pycls_in1k", "regnety_160.swag_ft_in1k",
                                 "regnety_032.tv2_in1k"])
def test_preprocess_matches_timm_eval_transform(tag):
    require("timm", "torch")
    import timm.data
    from PIL import Image

    cfg = timm.data.resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(tag).to_dict())
    want = timm.data.create_transform(**cfg)(Image.open(SAMPLE_IMAGE).convert("RGB")).numpy()[None]
    got = preprocess(SAMPLE_IMAGE, data_config(tag))
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-5


def test_layouts_and_errors(tmp_path):
    nchw = preprocess([SAMPLE_IMAGE, SAMPLE_IMAGE], {"input_size": 64})
    nhwc = preprocess(SAMPLE_IMAGE, {"input_size": 64}, data_format="channels_last")
    assert nchw.shape == (2, 3, 64, 64) and nhwc.shape == (1, 64, 64, 3)
    assert np.array_equal(nchw[0].transpose(1, 2, 0), nhwc[0])
    with pytest.raises(ValueError, match="data_format must be one of channels_first, channels_last"):
        preprocess(SAMPLE_IMAGE, data_format="NCHW")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        preprocess(tmp_path / "nope.jpg")
    (tmp_path / "x.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="is not an image Pillow can read"):
        preprocess(tmp_path / "x.jpg")
    assert rz.get_variant("regnety_040")  # the API is importable alongside


def test_data_config_of_a_model(toy_host):
    ra3, pycls = data_config("regnety_040.ra3_in1k"), data_config("regnety_040.pycls_in1k")
    assert ra3 != pycls
    assert data_config(rz.create("regnety_040.pycls_in1k", framework="toy")) == pycls  # the tag it was built for
    assert data_config(rz.create("regnety_040", framework="toy")) == ra3  # the variant's default tag
    assert data_config(rz.create("regnety_040", framework="toy"), test=True) == data_config("regnety_040", test=True)
    assert data_config(rz.create("toynet_y_tiny", framework="toy")) == data_config("toynet_y_tiny")  # no tags

    class WithPretrainedCfg:  # timm's models (and, once they carry one, ours) have a pretrained_cfg
        pretrained_cfg = {"input_size": (3, 256, 256), "test_input_size": (3, 320, 320), "crop_pct": 0.9,
                          "interpolation": "bilinear", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}

    assert data_config(WithPretrainedCfg()) == {"input_size": 256, "crop_pct": 0.9, "interpolation": "bilinear",
                                                "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    assert data_config(WithPretrainedCfg(), test=True)["input_size"] == 320
    with pytest.raises(TypeError) as e:
        data_config(list(range(1000)))
    assert str(e.value) == ("data_config takes a variant name ('regnety_040', 'regnety_040.ra3_in1k') or a model "
                            "built by rz.create, got a list: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, "
                            "16, 1...")


@pytest.mark.parametrize("framework", ["torch", "tf", "flax"])
def test_data_config_of_each_frameworks_model(framework):
    from harness import FRAMEWORK_MODULES

    require(*FRAMEWORK_MODULES[framework])
    model = rz.create("regnetx_008.pycls_in1k", framework=framework, num_classes=3)
    assert data_config(model) == data_config("regnetx_008.pycls_in1k") != data_config("regnetx_008")  # tv2_in1k
    features = rz.create("regnetx_008", framework=framework, features_only=True)
    assert data_config(features) == data_config("regnetx_008")
