"""transformers interop both ways, and loading into every installed framework through create / from_pretrained."""

from __future__ import annotations

import importlib.util
import json
import warnings

import numpy as np
import pytest

import torch  # noqa: F401  (tests/conftest.py imported torch + torch._dynamo before TensorFlow)
import regnet_zoo as rz
from regnet_zoo.errors import WeightsError
from regnet_zoo.plugins import get_host
from regnet_zoo.weights import hf_config, save as save_module
from regnet_zoo.weights.checkpoint import read_checkpoint
from weights_helpers import SMALL, hf_model, image_batch, run, timm_model, torch_state

import transformers  # noqa: F401,E402  (a test dependency: CI installs it)
X = image_batch()
REQUIRES = {"torch": ("torch", "timm"), "tf": ("tensorflow", "keras"), "flax": ("jax", "flax")}
FRAMEWORKS = [f for f, mods in REQUIRES.items() if all(importlib.util.find_spec(m) for m in mods)]


def _run(framework: str, model, x=X) -> np.ndarray:
    fw = get_host().framework(framework)
    return np.asarray(fw.run(model, x))


def _close(a, b, exact: bool):
    if exact:
        np.testing.assert_array_equal(a, b)
    else:  # DESIGN.md parity target across frameworks: 1e-4 relative to the logits' scale
        assert np.max(np.abs(a - b)) <= 1e-4 * max(np.max(np.abs(b)), 1e-12), np.max(np.abs(a - b))


@pytest.mark.parametrize("name", SMALL)
def test_save_pretrained_loads_in_transformers_identically(name, tmp_path):
    from transformers import RegNetForImageClassification

    model = rz.create(name, "torch")
    import torch

    with torch.no_grad():  # non-trivial BN statistics
        for k, v in model.state_dict().items():
            if k.endswith("running_var"):
                v.uniform_(0.5, 1.5)
    out = rz.save_pretrained(model, tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    hf, info = RegNetForImageClassification.from_pretrained(out, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
    np.testing.assert_array_equal(run(hf.eval(), X), _run("torch", model))
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "regnet" and config["layer_type"] == name[6]
    assert config["id2label"]["0"] == "tench" and config["regnet_zoo_variant"] == name
    assert config["architectures"] == ["RegNetForImageClassification"]


def test_save_pretrained_headless_and_labels(tmp_path):
    from transformers import RegNetModel

    model = rz.create("regnety_002", "torch", num_classes=0)
    rz.save_pretrained(model, tmp_path / "trunk")
    hf, info = RegNetModel.from_pretrained(tmp_path / "trunk", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    np.testing.assert_array_equal(run(hf.eval(), X), _run("torch", model))
    head = rz.create("regnety_002", "torch", num_classes=3)
    rz.save_pretrained(head, tmp_path / "three", labels=["cat", "dog", "emu"])
    assert json.loads((tmp_path / "three" / "config.json").read_text())["label2id"] == {"cat": 0, "dog": 1, "emu": 2}
    with pytest.raises(WeightsError, match="labels has 2 names; the classifier has 3 classes"):
        rz.save_pretrained(head, tmp_path / "bad", labels=["cat", "dog"])
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_save_pretrained_from_every_framework(framework, tmp_path):
    state = torch_state(timm_model("regnety_002"))
    model = rz.create("regnety_002", framework)
    fw = get_host().framework(framework)
    fw.load_weights(model, {k: v for k, v in state.items() if "num_batches" not in k})
    rz.save_pretrained(model, tmp_path / "hf")  # the framework is found from the model's type
    back = read_checkpoint(tmp_path / "hf")
    assert back.variant == "regnety_002"
    assert all(np.array_equal(back.state[k], state[k]) for k in back.state)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("fmt", ["pt", "tf", "flax"])
def test_from_pretrained_of_transformers_directories(hf_dirs, framework, fmt):
    path, logits = hf_dirs["regnety_002", fmt]
    model = rz.from_pretrained(path, framework=framework)
    _close(_run(framework, model), logits, exact=framework == "torch")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_create_pretrained_path_and_head_policy(framework, tmp_path):
    from regnet_zoo.weights import safetensors_io

    model = timm_model("regnetx_002")
    safetensors_io.save(torch_state(model), tmp_path / "w.safetensors")
    loaded = rz.create("regnetx_002", framework, pretrained=tmp_path / "w.safetensors")
    _close(_run(framework, loaded), run(model, X), exact=framework == "torch")
    with pytest.warns(UserWarning, match="classifier has 1000 classes, the model 10; head.fc is re-initialised"):
        rz.create("regnetx_002", framework, pretrained=tmp_path / "w.safetensors", num_classes=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trunk = rz.create("regnetx_002", framework, pretrained=tmp_path / "w.safetensors", num_classes=0)
    assert _run(framework, trunk).shape == (2, 368)


def test_wrong_variant_lists_keys_and_names_the_right_one(tmp_path):
    from regnet_zoo.weights import safetensors_io

    safetensors_io.save(torch_state(timm_model("regnetx_002")), tmp_path / "x.safetensors")
    with pytest.raises(WeightsError) as e:
        rz.create("regnety_002", "torch", pretrained=tmp_path / "x.safetensors")
    message = str(e.value)
    assert "missing keys (52): s1.b1.se.fc1.weight" in message and "(the model is regnety_002)" in message
    assert "these weights fit variant 'regnetx_002': create('regnetx_002', ...)" in message
    with pytest.raises(WeightsError, match=r"mis-shaped keys \(216\): s1.b1.conv1.conv.weight: checkpoint "
                                           r"\(24, 32, 1, 1\), model \(32, 32, 1, 1\)"):
        rz.create("regnetx_004", "torch", pretrained=tmp_path / "x.safetensors")


def test_directory_config_must_match_the_named_variant(tmp_path):
    hf_model("regnety_002").save_pretrained(tmp_path / "hf")
    with pytest.raises(WeightsError, match=r"holds weights for regnety_002 \(from its config.json\), not regnetx_002"):
        rz.create("regnetx_002", "torch", pretrained=tmp_path / "hf")


# -- config.json <-> variant --------------------------------------------------------------------------------------
def test_every_hf_tagged_variant_round_trips_through_a_transformers_config():
    """config_for -> transformers builds exactly our parameter count (meta device) -> variant_from_config."""
    import torch
    from transformers import RegNetConfig, RegNetModel

    names = sorted({n.split(".")[0] for n in rz.list_variants(pretrained=True)
                    if rz.resolve(n).weight.keys == "hf"})
    assert len(names) >= 26
    for name in names:
        config = hf_config.config_for(name, 0)
        assert hf_config.variant_from_config(config) == name
        with torch.device("meta"):
            model = RegNetModel(RegNetConfig(**config))
        assert sum(p.numel() for p in model.parameters()) == rz.plan(name).params(0), name


def test_unbuildable_and_unknown_configs():
    seer_2560 = {"model_type": "regnet", "embedding_size": 32, "hidden_sizes": [640, 1696, 2544, 5088],
                 "depths": [3, 7, 16, 1], "groups_width": 640, "layer_type": "y"}
    with pytest.raises(WeightsError, match=r"cannot be built \(transformers cannot build it either\): stage 4: 5088 "
                                           r"channels in 7 groups \(groups_width 640\)"):
        hf_config.variant_from_config(seer_2560, "facebook/regnet-y-2560-seer")
    other = dict(seer_2560, hidden_sizes=[64, 128, 256, 512], groups_width=16)  # not a registry variant: built
    variant = hf_config.variant_from_config(other)  # as transformers would (issue 13)
    assert variant.name == "hf_custom" and [s.groups for s in rz.plan(variant).stages] == [4, 8, 16, 32]
    with pytest.raises(WeightsError, match="hidden_sizes and depths must have one entry per stage"):
        hf_config.variant_from_config(dict(other, depths=[1, 1]))
    with pytest.raises(WeightsError, match=r"hf_custom.widths must have 4 entries, got 3"):
        hf_config.variant_from_config(dict(other, hidden_sizes=[64, 128, 256], depths=[1, 1, 1]))
    with pytest.raises(WeightsError, match="model_type is 'resnet', not 'regnet'"):
        hf_config.variant_from_config({"model_type": "resnet"})


def test_unbuildable_config_directory(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "regnet", "hidden_sizes": [640, 1696, 2544, 5088], "depths": [3, 7, 16, 1],
        "groups_width": 640, "layer_type": "y"}))
    from regnet_zoo.weights import safetensors_io

    safetensors_io.save({"embedder.embedder.convolution.weight": np.zeros((32, 3, 3, 3), np.float32)},
                        tmp_path / "model.safetensors")
    with pytest.raises(WeightsError, match="5088 channels in 7 groups"):
        rz.from_pretrained(tmp_path)


def test_save_pretrained_failure_leaves_nothing(tmp_path, monkeypatch):
    state = {k: v for k, v in torch_state(timm_model("regnetx_002")).items() if "num_batches" not in k}

    def broken(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(save_module.hf_config, "dumps", broken)
    with pytest.raises(OSError, match="No space left"):
        rz.save_pretrained(state, tmp_path / "new")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text("{}")
    with pytest.raises(OSError, match="No space left"):
        rz.save_pretrained(state, tmp_path / "old")
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == ["config.json", "model.safetensors"]
    assert (tmp_path / "old" / "config.json").read_text() == "{}"  # weights first, config last, each atomic
