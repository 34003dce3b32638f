"""Run by test_flax_multidevice.py in a fresh process with XLA_FLAGS=--xla_force_host_platform_device_count=2.

A BN ``axis_name`` makes training-mode statistics those of the global batch: under ``jax.pmap`` (linen and NNX) and
``jax.shard_map`` (NNX), two devices with half a batch each must give the logits and new running statistics of
one device with the whole batch. Prints one line per check; exits non-zero on the first mismatch.
"""

from __future__ import annotations

import os
import sys

assert "--xla_force_host_platform_device_count=2" in os.environ.get("XLA_FLAGS", ""), "set XLA_FLAGS first"
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import Mesh, PartitionSpec as P  # noqa: E402

import regnet_zoo as rz  # noqa: E402
from harness import random_state, rel_err  # noqa: E402
from regnet_zoo_flax.weights import load_canonical  # noqa: E402

NAME = "regnety_002"
TOL = 1e-5


def check(what: str, err: float) -> None:
    print(f"{what}: max rel err {err:.2e}", flush=True)
    if not err <= TOL:
        sys.exit(f"FAIL {what}: {err} > {TOL}")


def main() -> None:
    assert jax.device_count() == 2, jax.devices()
    state = random_state(NAME)
    x = np.random.default_rng(0).normal(size=(4, 64, 64, 3)).astype(np.float32)
    shards = x.reshape(2, 2, 64, 64, 3)

    # reference: one device, the whole batch
    ref = load_canonical(rz.create(NAME, framework="flax", conv_impl="xla"), state)
    ref.train()
    ref_logits = nnx.jit(lambda m, x: m(x))(ref, x)
    ref_stats = nnx.state(ref, nnx.BatchStat).to_pure_dict()

    def stats_err(stats) -> float:
        return max(rel_err(a, b) for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(ref_stats)))

    # NNX under pmap
    model = load_canonical(rz.create(NAME, framework="flax", conv_impl="xla", axis_name="batch"), state)
    model.train()
    graphdef, variables = nnx.split(model)

    def nnx_step(variables, x):
        m = nnx.merge(graphdef, variables)
        return m(x), nnx.state(m, nnx.BatchStat).to_pure_dict()

    logits, stats = jax.pmap(nnx_step, axis_name="batch", in_axes=(None, 0))(variables, shards)
    check("nnx pmap logits", rel_err(np.asarray(logits).reshape(4, -1), ref_logits))
    check("nnx pmap batch_stats", stats_err(jax.tree.map(lambda a: a[1], stats)))

    # control: without axis_name each device normalises with its own half batch, and the numbers differ
    local = load_canonical(rz.create(NAME, framework="flax", conv_impl="xla"), state)
    local.train()
    local_graphdef, local_vars = nnx.split(local)

    def local_step(variables, x):
        m = nnx.merge(local_graphdef, variables)
        return m(x), nnx.state(m, nnx.BatchStat).to_pure_dict()

    _, stats = jax.pmap(local_step, in_axes=(None, 0))(local_vars, shards)
    control = stats_err(jax.tree.map(lambda a: a[0], stats))
    print(f"control, no axis_name: batch_stats rel err {control:.2e} (must be large)")
    if control < 1e-3:
        sys.exit("FAIL control: per-device statistics should differ from the global ones")

    # NNX under shard_map over a 2-device mesh
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    sharded = jax.jit(jax.shard_map(nnx_step, mesh=mesh, in_specs=(P(), P("batch")), out_specs=(P("batch"), P())))
    logits, stats = sharded(variables, x)
    check("nnx shard_map logits", rel_err(logits, ref_logits))
    check("nnx shard_map batch_stats", stats_err(stats))

    # linen under pmap
    module, lvars = load_canonical(rz.create(NAME, framework="flax", api="linen", conv_impl="xla",
                                             axis_name="batch"), state)

    def linen_step(v, x):
        out, mutated = module.apply(v, x, train=True, mutable=["batch_stats"])
        return out, mutated["batch_stats"]

    logits, stats = jax.pmap(linen_step, axis_name="batch", in_axes=(None, 0))(lvars, jnp.asarray(shards))
    check("linen pmap logits", rel_err(np.asarray(logits).reshape(4, -1), ref_logits))
    check("linen pmap batch_stats", stats_err(jax.tree.map(lambda a: a[0], stats)))
    print("OK")


if __name__ == "__main__":
    main()
