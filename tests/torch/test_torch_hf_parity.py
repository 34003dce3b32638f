"""HF transformers ``RegNetModel`` / ``RegNetForImageClassification`` and the torch plugin are the same function: a
pure key rename of the same random weights gives max |diff| = 0.0 on every output, for every variant HF's config
can describe (all registry variants up to the parity size)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from testdeps import require

require("torch", "timm", "transformers")

import torch  # noqa: E402  (before transformers, which may import TensorFlow)
from transformers import RegNetConfig, RegNetForImageClassification, RegNetModel  # noqa: E402

import regnet_zoo as rz  # noqa: E402
from harness import PARITY_VARIANTS, ops, random_input  # noqa: E402
from regnet_zoo.weights.hf_config import HF_DESIGN  # noqa: E402  (what transformers' RegNet can express)
from regnet_zoo.keys import canonical_shapes  # noqa: E402

# canonical (timm) module path -> HF module path, inside one block / the stem / the head
_BLOCK = {"x": {"conv1": "layer.0", "conv2": "layer.1", "conv3": "layer.2", "downsample": "shortcut"},
          "y": {"conv1": "layer.0", "conv2": "layer.1", "se.fc1": "layer.2.attention.0",
                "se.fc2": "layer.2.attention.2", "conv3": "layer.3", "downsample": "shortcut"}}
_LEAF = {"conv": "convolution", "bn": "normalization"}
_KEY = re.compile(r"^s(\d+)\.b(\d+)\.(conv\d|downsample|se\.fc\d)\.(?:(conv|bn)\.)?(\w+)$")


def canonical_to_hf(key: str, block: str, prefix: str = "regnet.") -> str:
    """``s2.b1.conv2.bn.running_var`` -> ``regnet.encoder.stages.1.layers.0.layer.1.normalization.running_var``."""
    if key.startswith("stem."):
        _, leaf, param = key.split(".")
        return f"{prefix}embedder.embedder.{_LEAF[leaf]}.{param}"
    if key.startswith("head.fc."):
        return "classifier.1." + key.split(".")[-1]
    m = _KEY.match(key)
    assert m, key
    stage, index, part, leaf, param = m.groups()
    path = f"{prefix}encoder.stages.{int(stage) - 1}.layers.{int(index) - 1}.{_BLOCK[block][part]}"
    return f"{path}.{_LEAF[leaf]}.{param}" if leaf else f"{path}.{param}"


def fast_random_state(name: str, num_classes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Like ``harness.random_state`` (random BN statistics, no zero branch) but drawn in float32: 5x faster."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in canonical_shapes(rz.plan(name), num_classes).items():
        if key.endswith(("running_var", "bn.weight")):
            arr = rng.uniform(0.5, 1.5, shape).astype(np.float32)
            if ".conv3.bn.weight" in key:
                arr *= 0.25
        elif key.endswith(("running_mean", "bias")):
            arr = rng.standard_normal(shape, dtype=np.float32) * 0.1
        else:
            arr = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / np.prod(shape[1:])))
        state[key] = arr
    return state


def hf_config(name: str, num_classes: int) -> RegNetConfig:
    plan, variant = rz.plan(name), rz.get_variant(name)
    group_widths = set(variant.group_widths)  # before clipping: HF clips with max(1, width // group_width)
    assert len(group_widths) == 1 and (plan.block == "x" or plan.se_ratio == 0.25), "HF cannot describe " + name
    return RegNetConfig(num_channels=3, embedding_size=plan.stem_width, hidden_sizes=[s.out_width for s in plan.stages],
                        depths=[s.depth for s in plan.stages], groups_width=group_widths.pop(),
                        layer_type=plan.block, hidden_act="relu", downsample_in_first_stage=True,
                        num_labels=num_classes)


def hf_model(name: str, state: dict[str, np.ndarray], num_classes: int, headless: bool = False):
    config = hf_config(name, num_classes)
    block = rz.plan(name).block
    prefix = "" if headless else "regnet."
    with torch.device("meta"):  # no random init: every tensor comes from the renamed state
        model = RegNetModel(config) if headless else RegNetForImageClassification(config)
    sd = {canonical_to_hf(k, block, prefix): torch.from_numpy(v) for k, v in state.items()
          if not (headless and k.startswith("head."))}
    sd.update({k: torch.zeros((), dtype=torch.long) for k in model.state_dict() if k.endswith("num_batches_tracked")})
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval()


def test_rename_is_a_bijection_onto_hf_keys():
    for name in ("regnetx_002", "regnety_002"):
        state = fast_random_state(name, 3)
        hf_keys = {k for k in RegNetForImageClassification(hf_config(name, 3)).state_dict()
                   if not k.endswith("num_batches_tracked")}
        block = rz.plan(name).block
        renamed = {canonical_to_hf(k, block) for k in state}
        assert len(renamed) == len(state) and renamed == hf_keys


# run by default: X and Y, a clipped group width (regnetx_080 s1: 80 < 120), torchvision rounding, a large Y;
# the rest of the registry (up to the parity size) with ``pytest -m slow``
CORE = ("regnetx_002", "regnetx_004_tv", "regnetx_080", "regnety_004", "regnety_008_tv", "regnety_040")


@pytest.mark.parametrize("name", [n if n in CORE else pytest.param(n, marks=pytest.mark.slow)
                                  for n in PARITY_VARIANTS if rz.plan(n).design_features() <= HF_DESIGN])
def test_same_function_as_hf(name):
    num_classes = 10
    state = fast_random_state(name, num_classes)
    x = random_input(batch=2, size=32)
    labels = torch.tensor([3, 7])
    o = ops("torch")
    ours = o.create(name, num_classes=num_classes, device="meta").to_empty(device="cpu")  # skip the random init
    o.load(ours, state)
    ours.eval()
    hf = hf_model(name, state, num_classes)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        got = ours(xt, labels=labels, output_hidden_states=True)
        want = hf(xt, labels=labels, output_hidden_states=True)
        base = hf.regnet(xt, output_hidden_states=True)
    assert torch.equal(got.logits, want.logits)
    assert torch.equal(got.loss, want.loss)
    assert len(got.hidden_states) == len(want.hidden_states) == 5
    for ours_map, hf_map in zip(got.hidden_states, want.hidden_states):
        assert torch.equal(ours_map, hf_map)
    assert torch.equal(got.last_hidden_state, base.last_hidden_state)
    assert torch.equal(got.pooler_output, base.pooler_output.flatten(1))  # HF keeps (B, C, 1, 1)


def test_headless_against_hf_regnet_model():
    name = "regnety_004"
    state = fast_random_state(name, 1000)
    headless = rz.create(name, num_classes=0)
    ops("torch").load(headless, {k: v for k, v in state.items() if not k.startswith("head.")})
    headless.eval()
    hf = hf_model(name, state, 1000, headless=True)
    xt = torch.from_numpy(random_input(batch=1, size=64))
    with torch.no_grad():
        assert torch.equal(headless(xt), hf(xt).pooler_output.flatten(1))
