"""One training step against the torch plugin on the same weights: logits, loss gradients and new BN statistics.

Inference parity over the whole registry is the shared harness's job (tests/test_framework_parity.py). Here both
models are in training mode (BN on batch statistics; torch updates the running variance with the *unbiased* batch
variance, and so does the flax plugin). A core set runs by default; ``-m slow`` runs every variant up to ~150M
parameters.

Gradients of a training-mode RegNet on a tiny batch can be ill-conditioned in float32 (ReLU masks and BN over 8
values at s4): on regnety_002 torch's own float32 gradient of s3.b3.conv1 is 12 % away from torch in float64. So
each gradient is held to 1e-3 of the float64 answer, or to 4x torch's own float32 error where torch cannot do 1e-3.
"""

from __future__ import annotations

import numpy as np
import pytest

from testdeps import require

require("torch", "timm", "jax", "flax")

import torch  # noqa: E402  (before anything that could pull TensorFlow)
import torch.nn.functional as F  # noqa: E402
import jax  # noqa: E402
from flax import nnx  # noqa: E402

import regnet_zoo as rz  # noqa: E402
from harness import HIDDEN_RTOL, LOGITS_RTOL, PARITY_VARIANTS, ops, random_input, random_state, rel_err  # noqa: E402
from regnet_zoo_flax.weights import export_canonical, key_of, load_canonical, to_torch_layout  # noqa: E402

CORE = ["regnetx_002", "regnety_040"]  # an X and the headline Y; -m slow: every variant
VARIANTS = [pytest.param(n, marks=() if n in CORE else pytest.mark.slow) for n in PARITY_VARIANTS]
LABELS = np.array([3, 7])


def torch_step(name: str, state: dict, x: np.ndarray, dtype=torch.float32):
    model = ops("torch").create(name)
    ops("torch").load(model, state)
    model.to(dtype).train()
    logits = model(torch.from_numpy(x).to(dtype))
    loss = F.cross_entropy(logits, torch.from_numpy(LABELS))
    loss.backward()
    grads = {k: p.grad.detach().double().numpy() for k, p in model.named_parameters()}
    return logits.detach().double().numpy(), float(loss.detach()), grads, ops("torch").export(model)


@nnx.jit
def flax_train_step(model, x, labels):
    def loss_fn(m):
        out = m(x, labels=labels)
        return out.loss, out.logits

    (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    return loss, logits, grads


def flax_step(name: str, state: dict, x: np.ndarray):
    model = load_canonical(rz.create(name, framework="flax", data_format="channels_first"), state)
    model.train()
    loss, logits, grads = flax_train_step(model, x, LABELS)
    canonical = {key_of("params", tuple(map(str, p))): to_torch_layout(np.asarray(v.get_value()))
                 for p, v in nnx.to_flat_state(grads)}
    return np.asarray(logits), float(loss), canonical, export_canonical(model)


@pytest.mark.parametrize("name", VARIANTS)
def test_training_step_matches_torch(name):
    state = random_state(name)
    x = random_input()  # NCHW, batch 2, 64x64
    t_logits, t_loss, t_grads, t_after = torch_step(name, state, x)
    f_logits, f_loss, f_grads, f_after = flax_step(name, state, x)

    assert rel_err(f_logits, t_logits) <= LOGITS_RTOL
    assert abs(f_loss - t_loss) <= LOGITS_RTOL * max(1.0, abs(t_loss))
    stats = [k for k in state if k.endswith(("running_mean", "running_var"))]
    assert all(not np.array_equal(t_after[k], state[k]) for k in stats)  # every BN updated, in both
    worst_stat = max(rel_err(f_after[k], t_after[k]) for k in stats)
    assert worst_stat <= HIDDEN_RTOL
    assert f_grads.keys() == t_grads.keys()
    _, _, exact, _ = torch_step(name, state, x, torch.float64)
    f_err = {k: rel_err(f_grads[k], exact[k]) for k in exact}
    t_err = {k: rel_err(t_grads[k], exact[k]) for k in exact}
    bad = {k: (f_err[k], t_err[k]) for k in exact if f_err[k] > max(HIDDEN_RTOL, 4 * t_err[k])}
    assert not bad, f"gradients less accurate than torch's (flax, torch error vs float64): {bad}"
    print(f"{name}: logits {rel_err(f_logits, t_logits):.1e} stats {worst_stat:.1e} grads vs torch "
          f"{max(rel_err(f_grads[k], t_grads[k]) for k in exact):.1e}, vs float64: flax {max(f_err.values()):.1e} "
          f"torch {max(t_err.values()):.1e}")
