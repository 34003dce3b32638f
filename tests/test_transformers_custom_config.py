"""issue 13: a transformers RegNetConfig that describes no registry variant (transformers' own test-suite tiny
configs, a custom fine-tune) loads in all three frameworks as an unnamed variant built from its fields.

The reference is a random transformers 4.x ``RegNetForImageClassification`` with randomised BN statistics and affine
parameters (transformers initialises them to 0 / 1, which would make parity vacuous), saved with
``save_pretrained``. torch must equal it exactly (the same timm-style ops in the same order); tf and flax within
1e-4 of its scale.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from harness import LOGITS_RTOL, randomize, rel_err
from testdeps import require

CONFIGS = {
    # transformers' tests/models/regnet/test_modeling_regnet.py RegNetModelTester.get_config, verbatim: its
    # "embeddings_size" is no RegNetConfig field, so the stem keeps 32 channels and groups_width stays 64
    "hf-test-suite": dict(num_channels=3, embeddings_size=10, hidden_sizes=[10, 20, 30, 40], depths=[1, 1, 2, 1],
                          hidden_act="relu", num_labels=3),
    # the tiny config as meant: 10-channel stem (SE of s1.b1: round(10 / 4) = 2, banker's rounding)
    "stem10-y": dict(embedding_size=10, hidden_sizes=[10, 20, 30, 40], depths=[1, 1, 2, 1], num_labels=3),
    # grouped convs: groups = width // groups_width = [2, 4, 6, 8]
    "stem10-x-gw5": dict(embedding_size=10, hidden_sizes=[10, 20, 30, 40], depths=[1, 1, 2, 1], groups_width=5,
                         layer_type="x", num_labels=3),
    # max(1, 24 // 16) = 1 group of 24 and 3 groups of 16 in s4: a group width clipped / different per stage
    "y-gw16": dict(embedding_size=16, hidden_sizes=[24, 32, 40, 48], depths=[1, 2, 1, 1], groups_width=16,
                   layer_type="y", num_labels=3),
    # a stride-1 first stage (strides [1, 2, 2, 2]): its first block's 1x1 shortcut conv has stride 1
    "x-no-first-downsample": dict(embedding_size=16, hidden_sizes=[24, 32, 48, 64], depths=[1, 2, 1, 1],
                                  groups_width=8, layer_type="x", downsample_in_first_stage=False, num_labels=3),
    # another activation: an X block has no SE, so transformers' hidden_act is the plan's act everywhere
    "x-gelu": dict(embedding_size=16, hidden_sizes=[24, 32, 48, 64], depths=[1, 1, 2, 1], groups_width=8,
                   layer_type="x", hidden_act="gelu", num_labels=3),
    # Y with another activation: transformers keeps ReLU inside squeeze-excitation (the plan's se_act)
    "y-silu": dict(embedding_size=16, hidden_sizes=[24, 32, 48, 64], depths=[1, 1, 2, 1], groups_width=8,
                   layer_type="y", hidden_act="silu", num_labels=3),
    # activations timm and transformers share: mish (torch's F.mish in both); gelu_new, transformers' own formula of
    # the tanh approximation, is the plan's gelu_tanh (torch's F.gelu(approximate="tanh")), within float32 rounding
    "x-mish": dict(embedding_size=16, hidden_sizes=[24, 32, 48, 64], depths=[1, 1, 2, 1], groups_width=8,
                   layer_type="x", hidden_act="mish", num_labels=3),
    "y-gelu-new": dict(embedding_size=16, hidden_sizes=[24, 32, 48, 64], depths=[1, 1, 2, 1], groups_width=8,
                       layer_type="y", hidden_act="gelu_new", num_labels=3),
    # a 1-channel (grey-scale) model: num_channels is the model's in_chans, taken from the checkpoint's stem
    "y-1-channel": dict(num_channels=1, embedding_size=16, hidden_sizes=[24, 32, 48, 64], depths=[1, 1, 2, 1],
                        groups_width=8, num_labels=3),
}


# cases whose hidden_act is another formula of the plan's activation: torch agrees within float32 rounding (relative
# to the logits' scale), not bit for bit
TORCH_RTOL = {"y-gelu-new": 1e-6}


@functools.lru_cache(maxsize=None)
def _checkpoint(case: str, tmp: str):
    """(directory, input, transformers logits, transformers last_hidden_state) of a random transformers model."""
    import torch
    from transformers import RegNetConfig, RegNetForImageClassification

    model = randomize(RegNetForImageClassification(RegNetConfig(**CONFIGS[case])), seed=sorted(CONFIGS).index(case))
    directory = f"{tmp}/{case}"
    model.save_pretrained(directory)
    x = np.random.default_rng(0).normal(size=(2, CONFIGS[case].get("num_channels", 3), 64, 64)).astype(np.float32)
    with torch.no_grad():
        out = model(torch.from_numpy(x), output_hidden_states=True)
    return directory, x, out.logits.numpy(), out.hidden_states[-1].numpy()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    require("torch", "transformers")
    tmp = str(tmp_path_factory.mktemp("hf_custom"))
    return lambda case: _checkpoint(case, tmp)


@pytest.mark.parametrize("case", list(CONFIGS))
def test_torch_equals_transformers_exactly(checkpoints, case, tmp_path):
    import torch
    from transformers import RegNetForImageClassification as HFClassifier

    import regnet_zoo as rz
    import regnet_zoo.transformers as rzt
    from regnet_zoo.weights import hf_config

    directory, x, logits, last = checkpoints(case)
    tol = TORCH_RTOL.get(case, 0.0)
    assert rz.get_variant(hf_config.variant_from_config(rzt.RegNetConfig.from_pretrained(directory).to_dict())) \
        .name == "hf_custom"
    model = rzt.RegNetForImageClassification.from_pretrained(directory)
    with torch.no_grad():
        assert rel_err(model(torch.from_numpy(x)).logits.numpy(), logits) <= tol
        base = rzt.RegNetModel.from_pretrained(directory)
        assert rel_err(base(torch.from_numpy(x)).last_hidden_state.numpy(), last) <= tol
    plain = rz.from_pretrained(directory, framework="torch").eval()
    with torch.no_grad():
        assert rel_err(plain(torch.from_numpy(x)).numpy(), logits) <= tol
    model.save_pretrained(tmp_path / "ours")  # written back: transformers loads it, with the same outputs
    back = HFClassifier.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert np.abs(back(torch.from_numpy(x)).logits.numpy() - logits).max() == 0.0
    rz.save_pretrained(plain, tmp_path / "rz", variant=hf_config.variant_from_config(model.config.to_dict()))
    back = HFClassifier.from_pretrained(tmp_path / "rz").eval()
    assert [back.config.hidden_sizes, back.config.depths, back.config.layer_type] == [
        model.config.hidden_sizes, model.config.depths, model.config.layer_type]
    with torch.no_grad():  # hidden_act written as transformers' name of the plan's act (gelu_new: gelu_pytorch_tanh)
        assert rel_err(back(torch.from_numpy(x)).logits.numpy(), logits) <= tol


@pytest.mark.parametrize("framework", ["tf", "flax"])
@pytest.mark.parametrize("case", ["hf-test-suite", "stem10-y", "y-gw16", "x-no-first-downsample", "x-gelu", "y-silu",
                                  "x-mish", "y-gelu-new", "y-1-channel"])
def test_tf_and_flax_match_transformers(checkpoints, case, framework, tmp_path):
    require(*{"tf": ("tensorflow", "keras"), "flax": ("jax", "flax")}[framework])
    import regnet_zoo as rz
    import regnet_zoo.transformers as rzt
    from harness import ops

    directory, x, logits, last = checkpoints(case)
    prefix = {"tf": "TF", "flax": "Flax"}[framework]
    model = getattr(rzt, f"{prefix}RegNetForImageClassification").from_pretrained(directory)
    assert rel_err(np.asarray(model(x).logits), logits) < LOGITS_RTOL
    base = getattr(rzt, f"{prefix}RegNetModel").from_pretrained(directory)
    assert rel_err(np.asarray(base(x).last_hidden_state), last) < LOGITS_RTOL
    plain = rz.from_pretrained(directory, framework=framework, data_format="channels_first")
    assert rel_err(ops(framework).run(plain, x), logits) < LOGITS_RTOL
    model.save_pretrained(tmp_path / "ours")
    from transformers import RegNetConfig

    assert RegNetConfig.from_pretrained(tmp_path / "ours").hidden_sizes == CONFIGS[case]["hidden_sizes"]
    again = getattr(rzt, f"{prefix}RegNetForImageClassification").from_pretrained(tmp_path / "ours")
    assert rel_err(np.asarray(again(x).logits), logits) < LOGITS_RTOL


def test_unsupported_fields_are_named():
    import regnet_zoo.transformers as rzt
    from regnet_zoo.errors import WeightsError
    from regnet_zoo.weights import hf_config

    tiny = dict(CONFIGS["stem10-y"], model_type="regnet")
    with pytest.raises(WeightsError) as e:
        hf_config.variant_from_config(dict(tiny, num_channels=0), "my/config.json")
    assert str(e.value) == "my/config.json: num_channels must be an int >= 1 (input channels), got 0"
    with pytest.raises(WeightsError) as e:  # prelu's slope is a learnable weight no plan activation has
        hf_config.variant_from_config(dict(tiny, layer_type="x", hidden_act="prelu"), "my/config.json")
    assert str(e.value) == ("my/config.json: hidden_act='prelu' is not supported; regnet-zoo builds hidden_act 'relu', "
                            "'gelu', 'gelu_python', 'silu', 'swish', 'gelu_new', 'gelu_fast', 'gelu_pytorch_tanh', "
                            "'gelu_accurate', 'gelu_python_tanh', 'quick_gelu', 'mish', 'relu6', 'leaky_relu', "
                            "'tanh', 'sigmoid', 'linear'")
    for act in ("relu2", "laplace", "gelu_10", "xielu"):
        with pytest.raises(WeightsError, match=f"hidden_act='{act}' is not supported"):
            rzt.RegNetModel(rzt.RegNetConfig(**dict(CONFIGS["stem10-y"], hidden_act=act)))
    with pytest.raises(WeightsError, match=r"regnety_040_sgn cannot be expressed as a transformers RegNetConfig: "
                                           r"silu inside squeeze-excitation; transformers keeps relu there"):
        hf_config.config_for("regnety_040_sgn", 1000)


def test_hidden_acts_are_the_plans_activations():
    """Each ``hidden_act`` regnet-zoo maps computes, in transformers 4.57, the function timm builds for the plan's
    act (equal in float64; within 1e-6 in float32, where gelu_new / gelu_fast are other formulas of the tanh
    approximation; gelu_python's ``1 + erf(x / sqrt(2))`` cancels in float32, 1.2e-6 off torch's GELU at worst), and
    ``config_for`` writes every plan act back as a ``hidden_act`` that maps to it."""
    require("torch", "timm", "transformers")
    import torch
    from timm.layers import get_act_layer
    from transformers.activations import ACT2FN

    import regnet_zoo as rz
    from regnet_zoo.adhoc import with_overrides
    from regnet_zoo.variant import ACTIVATIONS
    from regnet_zoo.weights import hf_config

    x = torch.linspace(-10.0, 10.0, 20001, dtype=torch.float64)
    for hidden_act, act in hf_config.HF_ACTS.items():
        ours = get_act_layer(act)()
        torch.testing.assert_close(ACT2FN[hidden_act](x), ours(x), rtol=1e-10, atol=1e-10, msg=hidden_act)
        atol = 2e-6 if hidden_act == "gelu_python" else 1e-6
        torch.testing.assert_close(ACT2FN[hidden_act](x.float()), ours(x.float()), rtol=0.0, atol=atol, msg=hidden_act)
    assert set(hf_config.HF_ACTS.values()) == set(ACTIVATIONS)
    for act in ACTIVATIONS:
        config = hf_config.config_for(with_overrides(rz.get_variant("regnetx_002"), {"act": act}), 10)
        assert config["hidden_act"] in ACT2FN and hf_config.HF_ACTS[config["hidden_act"]] == act
