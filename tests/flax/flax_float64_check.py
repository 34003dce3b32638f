"""Run by test_flax_torch_parity.py in a fresh process (64-bit JAX is a process-wide switch).

One training step of the flax plugin with ``dtype="float64"`` against the torch plugin in float64, same float32
weights and input: the exact semantics (BN with batch statistics and unbiased running variance, SE, residuals,
loss) must agree per tensor to ~1e-12 relative, with no ill-conditioning left to hide behind. Prints one line per
variant; exits non-zero on a mismatch.
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

import regnet_zoo as rz  # noqa: E402
from harness import random_input, random_state, rel_err  # noqa: E402
from regnet_zoo_flax.weights import export_canonical, key_of, load_canonical, to_torch_layout  # noqa: E402
from test_flax_torch_parity import LABELS, flax_train_step, torch_step  # noqa: E402

TOL = 1e-9


def main(names: list[str]) -> None:
    for name in names:
        state = random_state(name)
        x = random_input().astype(np.float64)
        t_logits, t_loss, t_grads, t_after = torch_step(name, state, x, torch.float64)
        model = load_canonical(rz.create(name, framework="flax", data_format="channels_first", dtype="float64"),
                               state)
        for _, var in nnx.to_flat_state(nnx.state(model)):  # float64 variables too (float32 ones get float32 grads)
            var.set_value(var.get_value().astype(np.float64))
        model.train()
        loss, logits, grads = flax_train_step(model, x, LABELS)
        assert logits.dtype == np.float64
        f_grads = {key_of("params", tuple(map(str, p))): to_torch_layout(np.asarray(v.get_value()))
                   for p, v in nnx.to_flat_state(grads)}
        f_after = export_canonical(model)
        stats = [k for k in state if k.endswith(("running_mean", "running_var"))]
        errs = {"logits": rel_err(logits, t_logits),
                "stats": max(rel_err(f_after[k], t_after[k]) for k in stats),
                "grads": max(rel_err(f_grads[k], t_grads[k]) for k in t_grads)}
        print(f"{name}: float64 " + " ".join(f"{k} {v:.1e}" for k, v in errs.items()), flush=True)
        if f_grads.keys() != t_grads.keys() or not all(v <= TOL for v in errs.values()):
            sys.exit(f"FAIL {name}: {errs}")
    print("OK")


if __name__ == "__main__":
    main(sys.argv[1:])
