"""Run by test_flax_torch_parity.py in a fresh process (64-bit JAX is a process-wide switch), one variant each.

One training step of the flax plugin with ``dtype="float64"`` against the torch plugin in float64, same float32
weights and input: the exact semantics (BN with batch statistics and unbiased running variance, SE, residuals,
loss) must agree per tensor to ~1e-12 relative, with no ill-conditioning left to hide behind. Prints one line per
variant; exits non-zero on a mismatch. One process per variant keeps the peak memory to that of one variant (all of
them in one process held 9.1 GB).
"""

from __future__ import annotations

import os
import sys

sys.path[:0] = [os.path.join(os.path.dirname(__file__), ".."), os.path.dirname(__file__)]

import torch  # noqa: E402  (first: see DESIGN.md)
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from harness import random_input, random_state, rel_err  # noqa: E402
from regnet_zoo_flax.weights import export_canonical  # noqa: E402
from test_flax_torch_parity import (LABELS, flax_grads, flax_model, flax_train_step, running_stats,  # noqa: E402
                                    torch_step)

TOL = 1e-9


def check(name: str) -> None:
    state = random_state(name)
    x = random_input().astype(np.float64)
    t = torch_step(name, state, x, torch.float64)
    model = flax_model(name, state, dtype="float64")
    del state
    for _, var in nnx.to_flat_state(nnx.state(model)):  # float64 variables too (float32 ones get float32 grads)
        var.set_value(var.get_value().astype(np.float64))
    _, logits, grads, _ = flax_train_step(model, x, LABELS)
    assert logits.dtype == np.float64
    f_grads = flax_grads(grads)
    f_stats = running_stats(export_canonical(model))
    errs = {"logits": rel_err(logits, t.logits),
            "stats": max(rel_err(f_stats[k], t.stats[k]) for k in t.stats),
            "grads": max(rel_err(f_grads[k], t.grads[k]) for k in t.grads)}
    print(f"{name}: float64 " + " ".join(f"{k} {v:.1e}" for k, v in errs.items()), flush=True)
    if f_grads.keys() != t.grads.keys() or not all(v <= TOL for v in errs.values()):
        sys.exit(f"FAIL {name}: {errs}")


if __name__ == "__main__":
    for variant in sys.argv[1:]:
        check(variant)
    print("OK")
