"""Against transformers' FlaxRegNet (4.x): same numbers on its Y weights, and the two bugs we do not copy.

HF's Flax weights are made by HF's own PyTorch -> Flax converter (``from_pretrained(..., from_pt=True)``) from a
``RegNetForImageClassification`` holding harness random weights (random BN statistics, so no branch is trivial).
"""

from __future__ import annotations

import numpy as np
import pytest

from testdeps import require

require("torch", "transformers", "jax", "flax")

import torch  # noqa: E402,F401  (before anything that could pull TensorFlow)
import jax  # noqa: E402
from flax import nnx  # noqa: E402
from flax.traverse_util import flatten_dict  # noqa: E402

import regnet_zoo as rz  # noqa: E402
from harness import HIDDEN_RTOL, LOGITS_RTOL, random_input, random_state, rel_err  # noqa: E402
from regnet_zoo.weights.hf_config import config_for  # noqa: E402
from regnet_zoo.weights.keyspaces import canonical_to_hf  # noqa: E402
from regnet_zoo_flax.nnx_model import BatchNorm  # noqa: E402
from regnet_zoo_flax.weights import export_canonical, load_canonical  # noqa: E402

HF_Y = ["regnety_002", pytest.param("regnety_040", marks=pytest.mark.slow)]


def hf_config(name: str):
    from transformers import RegNetConfig

    return RegNetConfig(**{k: v for k, v in config_for(name, 1000).items() if k != "architectures"})


def hf_flax_from_torch(name: str, state: dict, tmp_path):
    """transformers' FlaxRegNetForImageClassification converted by transformers from a PyTorch save of ``state``."""
    from transformers import FlaxRegNetForImageClassification, RegNetForImageClassification

    pt = RegNetForImageClassification(hf_config(name))
    missing, unexpected = pt.load_state_dict({k: torch.from_numpy(v) for k, v in canonical_to_hf(state).items()},
                                             strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    pt.save_pretrained(tmp_path)
    # HF initialises eagerly with one forward pass before converting (from_pt does not allow _do_init=False):
    # keep that pass small
    model = FlaxRegNetForImageClassification.from_pretrained(tmp_path, from_pt=True, input_shape=(1, 32, 32, 3))
    return model, model.params


@pytest.mark.parametrize("name", HF_Y)
def test_matches_hf_flax_on_its_y_weights(name, tmp_path):
    state = random_state(name)
    hf, params = hf_flax_from_torch(name, state, tmp_path)
    x = random_input()  # NCHW, HF's layout
    ref = jax.jit(lambda p, x: hf(x, params=p, output_hidden_states=True))(params, x)
    model = load_canonical(rz.create(name, framework="flax", data_format="channels_first"), state)
    out = model.predict(x, output_hidden_states=True)
    assert rel_err(out.logits, ref.logits) <= LOGITS_RTOL
    assert len(out.hidden_states) == len(ref.hidden_states) == 5
    for i, (a, b) in enumerate(zip(out.hidden_states, ref.hidden_states)):
        assert rel_err(a, b) <= HIDDEN_RTOL, f"hidden state {i}"
    print(f"{name}: logits rel {rel_err(out.logits, ref.logits):.2e}, hidden max rel "
          f"{max(rel_err(a, b) for a, b in zip(out.hidden_states, ref.hidden_states)):.2e}")


def test_hf_flax_checkpoint_loads_through_create(tmp_path):
    """A directory written by HF's Flax ``save_pretrained`` (flax_model.msgpack) is a valid ``pretrained=``."""
    name = "regnety_002"
    state = random_state(name)
    hf, params = hf_flax_from_torch(name, state, tmp_path / "pt")
    hf.save_pretrained(tmp_path / "flax", params=params)
    model = rz.create(name, framework="flax", pretrained=str(tmp_path / "flax"))
    out = export_canonical(model)
    assert out.keys() == state.keys() and all(np.array_equal(out[k], v) for k, v in state.items())


def test_hf_flax_cannot_build_x_variants_we_can():
    from transformers import FlaxRegNetModel

    with pytest.raises(TypeError, match="in_channels"):
        FlaxRegNetModel(hf_config("regnetx_002"), input_shape=(1, 32, 32, 3))
    model = rz.create("regnetx_002", framework="flax", data_format="channels_first")
    assert model.predict(random_input()).shape == (2, 1000)


def test_hf_flax_training_mode_updates_only_stem_and_shortcut_bn(tmp_path):
    """HF runs the residual branch's BN with running statistics even when ``train=True``; we update all of them."""
    name = "regnety_002"
    state = random_state(name)
    hf, params = hf_flax_from_torch(name, state, tmp_path)
    x = random_input()
    _, mutated = jax.jit(lambda p, x: hf(x, params=p, train=True))(params, x)
    before, after = flatten_dict(params["batch_stats"]), flatten_dict(mutated["batch_stats"])
    hf_changed = {k[:-1] for k in before if not np.array_equal(before[k], after[k])}
    plan = rz.plan(name)
    n_bn = 1 + sum(3 + b.shortcut_conv for s in plan.stages for b in s.blocks)
    n_shortcut = sum(b.shortcut_conv for s in plan.stages for b in s.blocks)
    assert len(before) // 2 == n_bn and len(hf_changed) == 1 + n_shortcut

    model = load_canonical(rz.create(name, framework="flax", data_format="channels_first"), state)
    model.train()
    nnx.jit(lambda m, x: m(x))(model, x)
    after_ours = export_canonical(model)
    ours_changed = {k.rsplit(".", 1)[0] for k in state if k.endswith("running_mean")
                    and not np.array_equal(after_ours[k], state[k])}
    assert len(ours_changed) == n_bn == sum(isinstance(m, BatchNorm) for _, m in nnx.iter_modules(model))
