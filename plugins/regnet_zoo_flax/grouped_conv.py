"""Which way to express each grouped 3x3 conv on XLA, and the tool that measures it.

Inference compiles without YNNPACK on CPU (``xla_options.py``). Measured there (2-core AMD EPYC, 2026-11-30, batch 8,
224x224, ``python -m regnet_zoo_flax.grouped_conv regnety_040`` prints the table): one dense conv per group over
channel slices, unrolled (``"split"``), is 1.2-1.5x faster than XLA's ``feature_group_count`` up to 10 groups and no
faster at 17-24; whole ``model.predict``: regnety_040 248 ms split, 276 ms in a ``fori_loop`` over dynamic channel
slices (``"loop"``), 275 ms ``"xla"``; regnetx_004 39 / 46 / 39 ms. Unrolling compiles one conv per group (about
50 ms of XLA compile each), so above ``SPLIT_MAX_GROUPS`` inference takes XLA's grouped conv. (With YNNPACK on,
XLA's grouped conv was 5-7x slower than either.) Also measured earlier and dropped: vmapped per-group convs (XLA
turns them back into a grouped conv), im2col / shifted-slice matmuls (2-10x slower except on the 7x7 stage), a
block-diagonal dense kernel, NCHW layout, and space-to-depth / polyphase forms of the stride-2 conv.

Training is different: the gradient of the ``fori_loop`` form is slow. One training step (forward in training
mode, cross-entropy, ``nnx.value_and_grad``) at batch 8, 224x224, 2 cores (2026-11-25): regnety_040 1.64 s with
``"split"`` against 5.54 s with the loop (``"xla"``: slower still), regnetx_004 0.28 s against 0.60 s, regnetx_002
0.18 s against 0.30 s, for 3-11 s more compile time.

RegNetZ's convs have 100-264 groups of 4-8 channels (s3 / s4), where unrolling does not pay: one gradient step of
regnetz_005 (batch 2, 64x64, 2 loaded cores, 2026-11-29) had not finished compiling after 4 min with every grouped conv
split; with the loop above ``SPLIT_TRAIN_MAX_GROUPS`` groups it took 164 s to compile and 2.3 s a step, with the
loop everywhere 38 s and 0.40 s (``"xla"`` everywhere: 39 s and 6.7 s). The cap keeps every X / Y variant (at most
63 groups) as measured above; ``conv_impl="loop"`` is the faster choice for training RegNetZ on CPU.

``"auto"`` therefore picks, on CPU, in inference mode ``"split"`` up to ``SPLIT_MAX_GROUPS`` groups and ``"xla"``
above, and in training mode (BN on batch statistics: ``model.train()``, linen ``train=True``) ``"split"`` up to
``SPLIT_TRAIN_MAX_GROUPS`` and ``"loop"`` above; on accelerators XLA's own grouped conv. Every choice reads the same
single kernel (3, 3, in / groups, out), so the parameter tree never depends on it.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Mapping

from regnet_zoo.plan import ArchPlan

from .ops import CONV_IMPLS
from .xla_options import jit_inference

SPLIT_MAX_GROUPS = 16  # inference: unrolled per-group convs up to here; XLA's grouped conv above
SPLIT_TRAIN_MAX_GROUPS = 64  # the same in training mode (RegNetZ's 100+ groups: unrolling them compiles for minutes)


def _platform() -> str:
    import jax

    return jax.default_backend()


def auto_impl(groups: int, group_width: int, platform: str, training: bool = False) -> str:
    """The measured default for one grouped conv, in inference or training mode (see the module docstring)."""
    if groups == 1 or platform != "cpu":
        return "xla"
    if training:
        return "split" if groups <= SPLIT_TRAIN_MAX_GROUPS else "loop"
    return "split" if groups <= SPLIT_MAX_GROUPS else "xla"


def choose_impls(plan: ArchPlan, conv_impl: Any, training: bool = False) -> tuple[tuple[str, str], ...]:
    """(block name, impl) for every block whose 3x3 conv is grouped, from the ``conv_impl`` option; ``"auto"``
    entries resolve for inference or, with ``training=True``, for training mode."""
    blocks = [b for s in plan.stages for b in s.blocks if b.groups > 1]
    if isinstance(conv_impl, Mapping):
        names = {b.name for b in blocks}
        bad_names = sorted(set(conv_impl) - names)
        bad_impls = sorted({str(v) for v in conv_impl.values() if v not in CONV_IMPLS})
        if bad_names or bad_impls:
            raise ValueError(f"conv_impl mapping: {'unknown blocks ' + ', '.join(bad_names) if bad_names else ''}"
                             f"{'; ' if bad_names and bad_impls else ''}"
                             f"{'unknown impls ' + ', '.join(bad_impls) if bad_impls else ''}; keys are grouped "
                             f"blocks of {plan.name} (e.g. {blocks[0].name if blocks else 's1.b1'}), values one of "
                             f"{CONV_IMPLS}")
        overrides: Mapping[str, str] = conv_impl
    elif conv_impl == "auto":
        overrides = {}
    elif conv_impl in CONV_IMPLS:
        return tuple((b.name, conv_impl) for b in blocks)
    else:
        raise ValueError(f"conv_impl={conv_impl!r}; expected 'auto', one of {', '.join(map(repr, CONV_IMPLS))}, or a "
                         f"mapping from block name to impl")
    platform = _platform()
    return tuple((b.name, overrides.get(b.name) or auto_impl(b.groups, b.bottleneck_width // b.groups, platform,
                                                             training))
                 for b in blocks)


def block_shapes(plan: ArchPlan, size: int = 224) -> list[tuple[str, int, int, int, int]]:
    """(first block name, input size, channels, groups, stride) of every distinct grouped 3x3 conv of ``plan``."""
    shapes, seen = [], set()
    h = (size + 1) // 2  # after the stem
    for stage in plan.stages:
        for b in stage.blocks:
            key = (h, b.bottleneck_width, b.groups, b.stride)
            if b.groups > 1 and key not in seen:
                seen.add(key)
                shapes.append((b.name, *key))
            h = (h - 1) // b.stride + 1
    return shapes


def tune(plan: ArchPlan, batch: int = 8, size: int = 224, impls=CONV_IMPLS, repeats: int = 5,
         verbose: bool = True) -> dict[str, str]:
    """Time every impl on every distinct grouped-conv shape of ``plan``; return {block name: fastest impl}.

    The result can be passed as ``create(..., framework="flax", conv_impl=result)``; blocks of the same shape as
    a timed one get its choice.
    """
    import jax
    import numpy as np

    from .ops import conv2d

    rng = np.random.default_rng(0)
    best: dict[tuple, str] = {}
    for name, h, c, g, s in block_shapes(plan, size):
        x = jax.device_put(rng.normal(size=(batch, h, h, c)).astype(np.float32))
        k = jax.device_put((rng.normal(size=(3, 3, c // g, c)) * 0.05).astype(np.float32))
        times = {}
        for impl in impls:
            f = jit_inference(lambda x, k, impl=impl: conv2d(x, k, stride=s, groups=g, impl=impl))
            f(x, k).block_until_ready()
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                f(x, k).block_until_ready()
                ts.append(time.perf_counter() - t0)
            times[impl] = min(ts) * 1e3
        best[(h, c, g, s)] = min(times, key=times.get)
        if verbose:
            row = "  ".join(f"{i}={t:7.2f}ms" for i, t in times.items())
            print(f"{name:7s} {h:4d}x{h:<4d} C={c:5d} groups={g:3d} stride={s}  {row}  -> {best[(h, c, g, s)]}",
                  flush=True)
    result, h = {}, (size + 1) // 2
    for stage in plan.stages:
        for b in stage.blocks:
            if b.groups > 1:
                result[b.name] = best[(h, b.bottleneck_width, b.groups, b.stride)]
            h = (h - 1) // b.stride + 1
    return result


def main(argv=None) -> None:
    import regnet_zoo as rz

    p = argparse.ArgumentParser(description="Time the ways to express RegNet's grouped 3x3 convs with JAX.")
    p.add_argument("variant")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--impls", default=",".join(CONV_IMPLS))
    a = p.parse_args(argv)
    tune(rz.plan(a.variant), a.batch, a.size, tuple(a.impls.split(",")), a.repeats)


if __name__ == "__main__":
    main()
