"""Key spaces against the real libraries: timm, transformers, torchvision (always), pycls and ClassyVision (when
importable); every conversion is checked numerically through timm's model (max |diff| = 0.0 unless stated)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from testdeps import require

import torch  # noqa: F401  (tests/conftest.py imported torch + torch._dynamo before TensorFlow)
from regnet_zoo.errors import WeightsError
from regnet_zoo.keys import canonical_shapes
from regnet_zoo.weights import keyspaces
from regnet_zoo.weights.checkpoint import read_checkpoint
from regnet_zoo.weights.keyspaces import UnknownKeySpaceError, detect_key_space, to_canonical
from weights_helpers import SMALL, hf_model, image_batch, randomize, run, timm_model, timm_with, torch_state

import timm  # noqa: F401,E402  (a test dependency: CI installs it)
X = image_batch()


@pytest.mark.parametrize("name", SMALL + ("regnetv_064", "regnetz_005", "regnety_040_sgn"))
def test_timm_is_canonical(name, tmp_path):
    """Every layout of timm's design space (pre-activation bare convs and norms, avg-pool shortcuts, final conv,
    GroupNorm without statistics) reads as timm's key space and names its variant."""
    import torch

    model = timm_model(name)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    ck = read_checkpoint(tmp_path / "w.pth")
    assert (ck.key_space, ck.format, ck.variant, ck.num_classes) == ("timm", "pickle", name, 1000)
    assert list(ck.state) == [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    np.testing.assert_array_equal(run(timm_with(name, ck.state), X), run(model, X))


@pytest.mark.parametrize("name", SMALL)
def test_hf_pure_rename_both_ways(name, tmp_path):
    """transformers' RegNet and timm's are the same function: renaming the keys gives max |diff| = 0.0."""
    hf = hf_model(name)
    hf.save_pretrained(tmp_path)
    ck = read_checkpoint(tmp_path)
    assert (ck.key_space, ck.format, ck.variant) == ("hf", "safetensors", name)
    np.testing.assert_array_equal(run(timm_with(name, ck.state), X), run(hf, X))
    hf_names = {k: v for k, v in torch_state(hf).items() if not k.endswith("num_batches_tracked")}
    back = keyspaces.canonical_to_hf(ck.state)
    assert set(back) == set(hf_names)
    assert all(np.array_equal(back[k], hf_names[k]) for k in hf_names)


def test_hf_layer_indices_differ_between_x_and_y():
    x = keyspaces.canonical_to_hf({"s1.b1.conv3.conv.weight": np.zeros(1)})
    y = keyspaces.canonical_to_hf({"s1.b1.conv3.conv.weight": np.zeros(1), "s1.b1.se.fc1.weight": np.zeros(1)})
    assert list(x) == ["regnet.encoder.stages.0.layers.0.layer.2.convolution.weight"]
    assert list(y) == ["regnet.encoder.stages.0.layers.0.layer.3.convolution.weight",
                       "regnet.encoder.stages.0.layers.0.layer.2.attention.0.weight"]


@pytest.mark.parametrize("builder, name", [("regnet_y_400mf", "regnety_004"), ("regnet_x_400mf", "regnetx_004_tv")])
def test_torchvision(builder, name, tmp_path):
    import torch
    import torchvision

    torch.manual_seed(0)
    tv = randomize(getattr(torchvision.models, builder)())
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    ck = read_checkpoint(tmp_path / "tv.pth")
    assert (ck.key_space, ck.variant, ck.num_classes) == ("torchvision", name, 1000)
    np.testing.assert_array_equal(run(timm_with(name, ck.state), X), run(tv, X))
    tv_names = {k: v for k, v in torch_state(tv).items() if not k.endswith("num_batches_tracked")}
    assert set(keyspaces.canonical_to_torchvision(ck.state)) == set(tv_names)


# -- pycls -----------------------------------------------------------------------------------------------------------
def _pycls_names(state: dict) -> dict:
    """timm -> pycls names, written from pycls/models/anynet.py (ResBottleneckBlock, BottleneckTransform, SE)."""
    out = {}
    for k, v in state.items():
        k2 = re.sub(r"\.downsample\.conv\.weight$", ".proj.weight", k)
        k2 = re.sub(r"\.downsample\.bn\.", ".bn.", k2)
        for i, letter in (("1", "a"), ("2", "b"), ("3", "c")):
            k2 = k2.replace(f".conv{i}.conv.weight", f".f.{letter}.weight").replace(f".conv{i}.bn.", f".f.{letter}_bn.")
        k2 = k2.replace(".se.fc1.", ".f.se.f_ex.0.").replace(".se.fc2.", ".f.se.f_ex.2.")
        out[k2] = v
    return out


def test_pycls_pyth_wrapper_and_bgr_flip(tmp_path):
    import torch

    model = timm_model("regnety_002")
    sd = model.state_dict()
    bgr_stem = sd["stem.conv.weight"].flip(1)  # a pycls checkpoint holds BGR weights
    pycls_sd = _pycls_names({**sd, "stem.conv.weight": bgr_stem})
    assert {"s1.b1.f.se.f_ex.0.weight", "s1.b1.proj.weight", "s1.b1.f.c_bn.bias"} <= set(pycls_sd)
    torch.save({"epoch": 100, "model_state": pycls_sd, "optimizer_state": {"state": {}, "param_groups": []},
                "cfg": "MODEL:\n  TYPE: regnet\n"}, tmp_path / "RegNetY-200MF_dds_8gpu.pyth")
    ck = read_checkpoint(tmp_path / "RegNetY-200MF_dds_8gpu.pyth")
    assert (ck.key_space, ck.variant) == ("pycls", "regnety_002")
    assert any("BGR" in n for n in ck.notes) and any("model_state" in n for n in ck.notes)
    np.testing.assert_array_equal(run(timm_with("regnety_002", ck.state), X), run(model, X))
    kept = read_checkpoint(tmp_path / "RegNetY-200MF_dds_8gpu.pyth", bgr=False)
    np.testing.assert_array_equal(kept.state["stem.conv.weight"], bgr_stem.numpy())


def test_pycls_real_library(tmp_path):
    """pycls's own RegNetY-200MF on BGR input == timm with the converted weights on RGB input."""
    require("pycls", "yacs")  # pip install --no-deps -r tests/reference-libs.txt
    import pycls.models.regnet as pycls_regnet
    import torch
    from pycls.core.config import cfg

    cfg.MODEL.TYPE, cfg.MODEL.NUM_CLASSES = "regnet", 1000
    cfg.REGNET.SE_ON, cfg.REGNET.DEPTH, cfg.REGNET.W0, cfg.REGNET.WA, cfg.REGNET.WM, cfg.REGNET.GROUP_W = \
        True, 13, 24, 36.44, 2.49, 8
    torch.manual_seed(0)
    model = randomize(pycls_regnet.RegNet())
    torch.save({"epoch": 1, "model_state": model.state_dict()}, tmp_path / "m.pyth")
    ck = read_checkpoint(tmp_path / "m.pyth")
    assert (ck.key_space, ck.variant) == ("pycls", "regnety_002")
    bgr = np.ascontiguousarray(X[:, ::-1])
    np.testing.assert_allclose(run(timm_with("regnety_002", ck.state), X), run(model, bgr), rtol=0, atol=1e-5)


# -- VISSL / ClassyVision ----------------------------------------------------------------------------------------
def _vissl_names(state: dict, fsdp: bool = False) -> dict:
    """timm -> VISSL trunk names, from vissl/models/trunks/regnet.py (+ regnet_fsdp.py) over ClassyVision AnyNet."""
    out = {}
    for k, v in state.items():
        if k.startswith("stem."):
            out[k.replace("stem.conv.", "_feature_blocks.conv1.stem.0.").replace("stem.bn.",
                                                                                 "_feature_blocks.conv1.stem.1.")] = v
            continue
        if k.startswith("head."):
            continue
        m = re.match(r"s(\d)\.b(\d+)\.(.*)", k)
        s, b, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        rest = (rest.replace("downsample.conv.weight", "proj.weight").replace("downsample.bn.", "bn.")
                .replace("conv1.conv.", "f.a.0.").replace("conv1.bn.", "f.a.1.").replace("conv2.conv.", "f.b.0.")
                .replace("conv2.bn.", "f.b.1.").replace("se.fc1.", "f.se.excitation.0.")
                .replace("se.fc2.", "f.se.excitation.2.").replace("conv3.conv.", "f.c.")
                .replace("conv3.bn.", "f.final_bn."))
        group = f"block{s}-part0." if fsdp else ""
        out[f"_feature_blocks.res{s + 1}.{group}block{s}-{b - 1}.{rest}"] = v
    return out


@pytest.mark.parametrize("fsdp", [False, True], ids=["regnet", "regnet_fsdp"])
def test_vissl_classy_state_dict(fsdp, tmp_path):
    import torch

    model = timm_model("regnety_002")
    sd = model.state_dict()
    heads = {"0.clf.0.weight": sd["head.fc.weight"], "0.clf.0.bias": sd["head.fc.bias"]}
    trunk = _vissl_names(sd, fsdp)
    torch.save({"classy_state_dict": {"base_model": {"model": {"trunk": trunk, "heads": heads}, "meta": {}}},
                "iteration": 10, "phase_idx": 3}, tmp_path / "seer.torch")
    ck = read_checkpoint(tmp_path / "seer.torch")
    assert (ck.key_space, ck.variant, ck.num_classes) == ("vissl", "regnety_002", 1000)
    np.testing.assert_array_equal(run(timm_with("regnety_002", ck.state), X), run(model, X))


def test_vissl_swav_heads_are_dropped_and_named(tmp_path):
    import torch

    model = timm_model("regnety_002")
    heads = {"0.projection_head.0.weight": torch.zeros(8, 368), "0.prototypes0.weight": torch.zeros(16, 8)}
    torch.save({"classy_state_dict": {"base_model": {"model": {"trunk": _vissl_names(model.state_dict()),
                                                               "heads": heads}}}}, tmp_path / "swav.torch")
    ck = read_checkpoint(tmp_path / "swav.torch")
    assert ck.num_classes == 0 and "head.fc.weight" not in ck.state
    assert any("self-supervised head" in n for n in ck.notes)


def test_classy_vision_real_library(tmp_path):
    """ClassyVision's RegNet, raw and wrapped the way VISSL's RegNet trunk wraps it (_feature_blocks)."""
    require("classy_vision", "fvcore")  # pip install --no-deps -r tests/reference-libs.txt
    import torch
    from classy_vision.models import RegNet

    torch.manual_seed(0)
    cv = randomize(RegNet.from_config({"depth": 13, "w_0": 24, "w_a": 36.44, "w_m": 2.49, "group_width": 8,
                                       "se_ratio": 0.25}))
    feature_blocks = torch.nn.ModuleDict([("conv1", cv.stem)] + [(f"res{i + 2}", block) for i, (_, block) in
                                                                 enumerate(cv.trunk_output.named_children())])
    trunk = {f"_feature_blocks.{k}": v for k, v in feature_blocks.state_dict().items()}
    with torch.no_grad():
        ref = cv(torch.from_numpy(X)).mean((2, 3)).numpy()
    for what, sd in (("classy", cv.state_dict()), ("vissl", trunk)):
        torch.save(sd, tmp_path / f"{what}.pth")
        ck = read_checkpoint(tmp_path / f"{what}.pth")
        assert (ck.key_space, ck.variant) == ("vissl", "regnety_002"), what
        np.testing.assert_array_equal(run(timm_with("regnety_002", ck.state), X), ref)


# -- detection and errors ------------------------------------------------------------------------------------------
def test_detection_and_forcing():
    state = {"s1.b1.conv1.conv.weight": np.zeros((1,))}
    assert detect_key_space(state) == "timm"
    with pytest.raises(UnknownKeySpaceError,
                       match=r"(?s)unknown key space.*conv\.weight, fc\.weight.*timm.*hf.*torchvision.*pycls.*vissl"):
        detect_key_space(["conv.weight", "fc.weight"], "model.pth")
    with pytest.raises(WeightsError, match=r"do not fit the hf RegNet key space:\n  unknown keys \(1\): "
                                           r"s1\.b1\.conv1\.conv\.weight"):
        to_canonical(state, keys="hf")
    with pytest.raises(UnknownKeySpaceError, match="unknown key space 'keras'; known: timm, hf"):
        to_canonical(state, keys="keras")


def test_conversions_rename_without_copying():
    shapes = canonical_shapes(__import__("regnet_zoo").plan("regnety_002"))
    state = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    hf = keyspaces.canonical_to_hf(state)
    back = to_canonical(hf).state
    assert list(back) == list(state) and all(back[k] is state[k] for k in state)
