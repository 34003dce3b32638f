"""One training step against the torch plugin on the same weights: logits, loss gradients and new BN statistics.

Inference parity over the whole registry is the shared harness's job (tests/test_framework_parity.py). Here both
models are in training mode (BN on batch statistics; torch updates the running variance with the *unbiased* batch
variance, and so does the flax plugin). A core set runs by default; ``-m slow`` runs every variant up to ~150M
parameters.

Gradients of a training-mode RegNet on a tiny batch are ill-conditioned in float32 (ReLU kinks, BN over 8 values
at s4): per tensor, torch's own float32 gradient is up to 22 % away from torch in float64 (regnety_002, s3.b3), and
which tensors suffer depends on rounding. So the float32 test holds the whole gradient (relative L2 over all
parameters) to 1e-3 of the float64 answer, or to 4x torch's own error; and a float64 run (subprocess,
flax_float64_check.py) holds every tensor to 1e-9 of torch in float64, where conditioning cannot hide anything.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    f_err, t_err = global_rel_err(f_grads, exact), global_rel_err(t_grads, exact)
    assert f_err <= max(HIDDEN_RTOL, 4 * t_err), f"gradient error vs float64: flax {f_err:.2e}, torch {t_err:.2e}"
    print(f"{name}: logits {rel_err(f_logits, t_logits):.1e} stats {worst_stat:.1e} gradient vs float64 "
          f"(global rel L2): flax {f_err:.1e} torch {t_err:.1e}")


def global_rel_err(grads: dict, exact: dict) -> float:
    num = sum(float(np.sum((grads[k] - exact[k]) ** 2)) for k in exact)
    return float(np.sqrt(num / sum(float(np.sum(exact[k] ** 2)) for k in exact)))


@pytest.mark.parametrize("names", [pytest.param(CORE, id="core"),
                                   pytest.param([n for n in PARITY_VARIANTS if n not in CORE], id="all",
                                                marks=pytest.mark.slow)])
def test_training_step_matches_torch_exactly_in_float64(names):
    script = Path(__file__).with_name("flax_float64_check.py")
    proc = subprocess.run([sys.executable, str(script), *names], capture_output=True, text=True, timeout=3600)
    print(proc.stdout)
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("OK"), proc.stdout + proc.stderr[-3000:]
