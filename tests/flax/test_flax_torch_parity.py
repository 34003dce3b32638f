"""One training step against the torch plugin on the same weights: logits, loss gradients and new BN statistics.

Inference parity over the whole registry is the shared harness's job (tests/test_framework_parity.py). Here both
models are in training mode (BN on batch statistics; torch updates the running variance with the *unbiased* batch
variance, and so does the flax plugin). A core set runs by default; ``-m slow`` runs every variant up to ~150M
parameters.

The float32 gradient of a training-mode RegNet is decided by ReLU kinks: out of millions of ReLU inputs a few
lie within float32 rounding of zero (|z| ~ 1e-7 of their layer's largest), take the other side of the kink than in
float64, and that one element moves the whole gradient by up to 1e-2 (relative L2 over all parameters) — in torch
as in flax, and at different elements depending on rounding alone. Measured on regnetx_320: torch's two flips
(s2.b1.conv2, s3.b2.act3) give 1.0e-3, flax's one (s3.b8.conv2) 1.3e-3; flax with its BN computed in float64 flips
elsewhere and gets 9.1e-3, torch in channels_last on one thread 2.7e-3 (regnety_040: torch 3.6e-3 or 1.2e-5). On
the float64 run's ReLU pattern both are at 6-7e-6. So the float32 test checks that every ReLU input on the other
side of zero than in float64 is within rounding of zero (``KINK_RTOL``), in both frameworks, and holds the gradient
computed on the float64 ReLU pattern (the same pattern pinned in both) to 4x torch's own error on that pattern; the
raw errors are printed. A float64 run (subprocess, flax_float64_check.py, one variant per process) holds every tensor
to 1e-9 of torch in float64, where conditioning cannot hide anything. The float64 run checks the semantics (BN with
batch statistics, SE, residuals, grouped convs, loss), which are one code path for every variant: it runs on the
core X, the headline Y, the largest X (where the float32 gap was reported) and a mid-size Y, under ``-m slow``
only, not on all 25 variants: at ~1 min each it would double the every-variant set's time.
"""

from __future__ import annotations

import ctypes
import gc
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import numpy as np
import pytest

from testdeps import require

require("torch", "timm", "jax", "flax")

import torch  # noqa: E402  (before anything that could pull TensorFlow)
import torch.nn.functional as F  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

import regnet_zoo as rz  # noqa: E402
from harness import HIDDEN_RTOL, LOGITS_RTOL, PARITY_VARIANTS, ops, random_input, random_state, rel_err  # noqa: E402
from regnet_zoo_flax import ops as flax_ops  # noqa: E402
from regnet_zoo_flax.weights import export_canonical, key_of, load_canonical, to_torch_layout  # noqa: E402

CORE = ["regnetx_002"]  # -m slow: every other X / Y variant (a Y's flax training step: test_flax_model, test_flax_hf)
# peak memory of one test, measured in a fresh process: regnety_320 8.0 GB (float64 check) / 6.6 GB (float32),
# regnetx_320 6.8 / 5.5, regnety_160 5.4 / 4.6; every variant below 80M parameters 4.2 GB at most (regnetx_160)
BIGMEM_PARAMS = 80_000_000
VARIANTS = [pytest.param(n, marks=(() if n in CORE else (pytest.mark.slow,))
                         + ((pytest.mark.bigmem,) if rz.plan(n).params() > BIGMEM_PARAMS else ()))
            for n in PARITY_VARIANTS if not rz.plan(n).design_features()]  # ReLU kink analysis: X / Y corner
# the float64 run checks one code path, under -m slow only (about 1 min a variant; the default suite keeps the float32
# step above): the core X, the headline Y, the largest X and a mid-size Y
FLOAT64_VARIANTS = [pytest.param(n, marks=(pytest.mark.slow,)
                                 + ((pytest.mark.bigmem,) if rz.plan(n).params() > BIGMEM_PARAMS else ()))
                    for n in ("regnetx_002", "regnety_040", "regnetx_320", "regnety_016")]
LABELS = np.array([3, 7])
KINK_RTOL = 1e-5  # a float32 ReLU input may differ in sign from float64 only this close to zero (measured: 3e-7)


@pytest.fixture(autouse=True)
def _release_memory():
    """After each test, drop the compiled steps and hand the freed heap back to the system: glibc keeps it otherwise
    (3 GB after regnety_320), and the worker's next test, or the other worker, needs it."""
    yield
    jax.clear_caches()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class Step(NamedTuple):
    """One training step's results, canonical names and torch layouts; ``relu_inputs`` NCHW, in call order."""

    logits: np.ndarray
    loss: float
    grads: dict
    stats: dict  # BN running statistics after the step
    relu_inputs: list


def running_stats(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


def torch_step(name: str, state: dict, x: np.ndarray, dtype=torch.float32, relu_pattern=None) -> Step:
    """The torch plugin's training step. ``relu_pattern`` (one bool array per ReLU call, NCHW) replaces each ReLU's
    own ``z > 0`` in value and gradient."""
    model = ops("torch").create(name, dtype=dtype)
    ops("torch").load(model, state)
    model.train()
    relu_inputs = []

    def hook(module, args, out):
        z = args[0]
        relu_inputs.append(z.detach().numpy().copy())
        if relu_pattern is not None:
            return z * torch.from_numpy(relu_pattern[len(relu_inputs) - 1]).to(z.dtype)

    relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    for m in relus:
        m.inplace = False  # the hook reads the input
    handles = [m.register_forward_hook(hook) for m in relus]
    logits = model(torch.from_numpy(x).to(dtype))
    loss = F.cross_entropy(logits, torch.from_numpy(LABELS))
    loss.backward()
    for h in handles:
        h.remove()
    grads = {k: p.grad.detach().numpy() for k, p in model.named_parameters()}
    return Step(logits.detach().double().numpy(), float(loss.detach()), grads,
                running_stats(ops("torch").export(model)), relu_inputs)


@nnx.jit
def flax_train_step(model, x, labels, relu_pattern=None, pinned=False):
    """(loss, logits, grads, ReLU inputs). With ``relu_pattern`` (one bool array per ReLU call, NHWC) every ReLU of
    the plugin (``ops.ACTIVATIONS["relu"]``) is traced as ``where(relu_pattern if pinned else z > 0, z, 0)``;
    ``pinned`` is traced, so one compiled step gives both the model's own step and the pinned one."""
    relu_inputs = []

    def relu(z):
        if len(relu_inputs) == len(relu_pattern):
            raise AssertionError(f"more ReLU calls than the {len(relu_pattern)} of the pattern")
        positive = jnp.where(pinned, relu_pattern[len(relu_inputs)], z > 0)
        relu_inputs.append(z)
        return jnp.where(positive, z, jnp.zeros((), z.dtype))

    def loss_fn(m):
        if relu_pattern is None:
            out = m(x, labels=labels)
        else:
            with mock.patch.dict(flax_ops.ACTIVATIONS, relu=relu):  # the plugin's relu while this traces
                out = m(x, labels=labels)
            assert len(relu_inputs) == len(relu_pattern), "fewer ReLU calls than the pattern"
        return out.loss, (out.logits, relu_inputs)

    (loss, (logits, zs)), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    return loss, logits, grads, zs


def flax_grads(grads) -> dict:
    return {key_of("params", tuple(map(str, p))): to_torch_layout(np.asarray(v.get_value()))
            for p, v in nnx.to_flat_state(grads)}


def flax_model(name: str, state: dict, **options):
    """The flax plugin's model with ``state`` loaded, in training mode."""
    model = load_canonical(rz.create(name, framework="flax", data_format="channels_first", abstract=True, **options),
                           state)
    model.train()
    return model


def flax_step(model, x: np.ndarray, relu_pattern: list, pinned: bool) -> Step:
    """The flax model's training step (``pinned``: on ``relu_pattern``, NCHW, instead of its own ReLU pattern)."""
    loss, logits, grads, zs = flax_train_step(model, x, LABELS, [np.moveaxis(p, 1, -1) for p in relu_pattern], pinned)
    return Step(np.asarray(logits), float(loss), flax_grads(grads), running_stats(export_canonical(model)),
                [np.moveaxis(np.asarray(z), -1, 1) for z in zs])


def global_rel_err(grads: dict, exact: dict) -> float:
    num = sum(float(np.sum((grads[k].astype(np.float64) - exact[k]) ** 2)) for k in exact)
    return float(np.sqrt(num / sum(float(np.sum(exact[k] ** 2)) for k in exact)))


def kink_flips(relu_inputs: list, exact_inputs: list) -> list[float]:
    """|z| / max |z| of its ReLU (float64 values) for every input on the other side of zero than in float64."""
    assert [z.shape for z in relu_inputs] == [e.shape for e in exact_inputs]
    return [float(v) for z, e in zip(relu_inputs, exact_inputs)
            for v in np.abs(e[(z > 0) != (e > 0)]) / max(np.abs(e).max(), 1e-30)]


@pytest.mark.parametrize("name", VARIANTS)
def test_training_step_matches_torch(name):
    state = random_state(name)
    x = random_input()  # NCHW, batch 2, 64x64
    # each step's gradient is measured against the float64 one and dropped at once: the largest variants have
    # 145M parameters (see conftest.py's bigmem marker)
    exact = torch_step(name, state, x, torch.float64)
    exact_grads, exact_inputs, keys = exact.grads, exact.relu_inputs, exact.grads.keys()
    pattern = [z > 0 for z in exact_inputs]
    del exact
    t = torch_step(name, state, x)
    t_raw, t_flips = global_rel_err(t.grads, exact_grads), kink_flips(t.relu_inputs, exact_inputs)
    assert t.grads.keys() == keys
    t = t._replace(grads=None, relu_inputs=None)
    t_pinned = global_rel_err(torch_step(name, state, x, relu_pattern=pattern).grads, exact_grads)
    model = flax_model(name, state)
    f = flax_step(model, x, pattern, pinned=False)
    f_raw, f_flips = global_rel_err(f.grads, exact_grads), kink_flips(f.relu_inputs, exact_inputs)
    assert f.grads.keys() == keys
    f = f._replace(grads=None, relu_inputs=None)
    f_pinned = global_rel_err(flax_step(model, x, pattern, pinned=True).grads, exact_grads)
    print(f"{name}: logits {rel_err(f.logits, t.logits):.1e} gradient vs float64 (global rel L2): flax {f_raw:.1e} "
          f"torch {t_raw:.1e} (ReLU kink flips: flax {len(f_flips)}, torch {len(t_flips)}, |z| <= "
          f"{max(f_flips + t_flips, default=0.0):.0e} of max); on the float64 ReLU pattern: flax {f_pinned:.1e} "
          f"torch {t_pinned:.1e}")

    assert rel_err(f.logits, t.logits) <= LOGITS_RTOL
    assert abs(f.loss - t.loss) <= LOGITS_RTOL * max(1.0, abs(t.loss))
    assert all(not np.array_equal(t.stats[k], state[k]) for k in t.stats)  # every BN updated, in both
    assert f.stats.keys() == t.stats.keys()
    assert max(rel_err(f.stats[k], t.stats[k]) for k in t.stats) <= HIDDEN_RTOL
    assert max(f_flips + t_flips, default=0.0) <= KINK_RTOL, f"ReLU flips (|z| / max): flax {f_flips}, torch {t_flips}"
    assert f_pinned <= 4 * t_pinned, f"gradient error vs float64 on its ReLU pattern: flax {f_pinned:.2e}, " \
                                     f"torch {t_pinned:.2e}"


@pytest.mark.parametrize("name", FLOAT64_VARIANTS)
def test_training_step_matches_torch_exactly_in_float64(name):
    script = Path(__file__).with_name("flax_float64_check.py")
    proc = subprocess.run([sys.executable, str(script), name], capture_output=True, text=True, timeout=3600)
    print(proc.stdout)
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("OK"), proc.stdout + proc.stderr[-3000:]
