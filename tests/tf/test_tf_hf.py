"""Parity with Hugging Face transformers' TFRegNetModel / TFRegNetForImageClassification (4.x) on HF weights.

The HF TF model is built from the variant's plan with random weights and randomised BN statistics; its variables are
renamed to canonical keys (the mapping below is the whole HF-TF <-> timm correspondence) and loaded into a
``data_format="channels_first"`` model, which takes and returns NCHW exactly like HF.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import regnet_zoo as rz
from testdeps import require
from harness import HIDDEN_RTOL, LOGITS_RTOL, random_input, rel_err

require("tensorflow", "keras", "keras_hub", "transformers", "tf_keras")

from tf_helpers import tf_modules  # noqa: E402

tf, keras = tf_modules()
from regnet_zoo_tf.weights import load_canonical  # noqa: E402

_BLOCK_X = {"shortcut": "downsample", "layer.0": "conv1", "layer.1": "conv2", "layer.2": "conv3"}
_BLOCK_Y = {"shortcut": "downsample", "layer.0": "conv1", "layer.1": "conv2", "layer.2": "se", "layer.3": "conv3"}
_PARTS = {"convolution": "conv", "normalization": "bn", "attention.0": "fc1", "attention.2": "fc2"}
_VARS = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
         "moving_variance": "running_var"}


def hf_config(name: str, num_labels: int = 10):
    from transformers import RegNetConfig

    plan = rz.plan(name)
    group_widths = {s.group_width for s in plan.stages}
    assert len(group_widths) == 1, "HF RegNetConfig has one group width"
    return RegNetConfig(embedding_size=plan.stem_width, hidden_sizes=[s.out_width for s in plan.stages],
                        depths=[s.depth for s in plan.stages], groups_width=group_widths.pop(),
                        layer_type=plan.block, num_labels=num_labels)


def hf_tf_to_canonical(model, block: str) -> dict[str, np.ndarray]:
    """HF TF RegNet variables -> canonical (timm) keys in PyTorch layouts."""
    parts = _BLOCK_Y if block == "y" else _BLOCK_X
    state = {}
    for v in model.weights:
        path = v.name.split("/", 1)[1].removesuffix(":0")  # drop the model's own scope
        *mods, var = path.split("/")
        if mods[:3] == ["regnet", "embedder", "embedder"]:
            prefix = "stem." + _PARTS[mods[3]]
        elif mods[:2] == ["regnet", "encoder"]:
            stage = int(re.fullmatch(r"stages\.(\d+)", mods[2]).group(1)) + 1
            blk = int(re.fullmatch(r"layers\.(\d+)", mods[3]).group(1)) + 1
            prefix = f"s{stage}.b{blk}." + ".".join([parts[mods[4]]] + [_PARTS[m] for m in mods[5:]])
        elif mods == ["classifier.1"]:
            prefix = "head.fc"
        else:
            raise AssertionError(f"unmapped HF variable {v.name}")
        value = np.asarray(v.numpy())
        if var == "kernel":
            value = value.T if value.ndim == 2 else np.transpose(value, (3, 2, 0, 1))
        state[f"{prefix}.{_VARS[var]}"] = np.ascontiguousarray(value)
    return state


def randomise(model, seed: int = 0) -> None:
    """Random HF weights with non-trivial BN statistics and affine parameters (no branch is zero)."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        shape, n = tuple(v.shape), v.name
        if "moving_mean" in n:
            value = rng.normal(0, 0.1, shape)
        elif "moving_variance" in n:
            value = rng.uniform(0.5, 1.5, shape)
        elif "gamma" in n:
            value = rng.uniform(0.1, 0.4, shape) if re.search(r"layer\.[23]/normalization", n) else \
                rng.uniform(0.5, 1.5, shape)
        elif "beta" in n or "bias" in n:
            value = rng.normal(0, 0.1, shape)
        else:
            value = rng.normal(0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
        v.assign(value.astype(np.float32))


@pytest.mark.parametrize("name", ["regnetx_004", "regnety_002"])
def test_matches_hf_tf_regnet_on_hf_weights(name):
    from transformers import TFRegNetForImageClassification

    hf = TFRegNetForImageClassification(hf_config(name))
    x = random_input(batch=2, size=64)
    hf(x)
    randomise(hf)
    labels = np.array([3, 7])
    ref = hf(x, labels=labels, output_hidden_states=True, training=False)
    base = hf.regnet(x, output_hidden_states=True, training=False)

    ours = rz.create(name, "tf", num_classes=10, data_format="channels_first")
    load_canonical(ours, hf_tf_to_canonical(hf, rz.plan(name).block))
    out = ours(x, labels=labels, output_hidden_states=True)
    assert rel_err(out.logits, ref.logits) <= LOGITS_RTOL
    assert rel_err(out.last_hidden_state, base.last_hidden_state) <= HIDDEN_RTOL
    assert rel_err(out.pooler_output, np.asarray(base.pooler_output)[:, :, 0, 0]) <= HIDDEN_RTOL
    assert len(out.hidden_states) == len(ref.hidden_states) == 5
    for i, (got, want) in enumerate(zip(out.hidden_states, ref.hidden_states)):
        assert rel_err(got, want) <= HIDDEN_RTOL, f"hidden state {i}"  # both NCHW
    np.testing.assert_allclose(out.loss, np.mean(ref.loss), rtol=1e-4)
