"""The XLA compiler options of the plugin's jitted inference: on CPU, convolutions without YNNPACK.

jaxlib 0.10 hands every convolution on CPU to YNNPACK (an ``ynn_fusion`` in the compiled HLO). For RegNet's
inference that is the slower choice. Measured on a 2-core AMD EPYC (Zen 5, AVX-512), 2026-11-30, batch 8, NHWC,
fp32, one compilation each way (``--xla_cpu_experimental_ynn_fusion_type=`` turns YNNPACK off):

| op | YNNPACK | XLA's own |
|---|---:|---:|
| grouped 3x3, 128 ch, 2 groups, 56x56 | 110 ms | 15.2 ms |
| grouped 3x3, 1088 ch, 17 groups, 7x7 | 11.8 ms | 2.2 ms |
| 1x1, 512 ch, 28x28 | 9.8 ms | 7.4 ms |
| dense 3x3, 256 ch, 56x56 | 75 ms | 75 ms |
| ``model.predict``, regnety_040 (benchmark harness) | 314 ms | 271 ms |
| ``model.predict``, regnetx_004 (benchmark harness) | 51.5 ms | 47.3 ms |
| one training step (``nnx.jit``), regnetx_004 | 235 ms | 435 ms |

So only inference compiles with these options: ``model.predict`` / ``inference_fn``, the linen pair's ``predict``
and the transformers-style classes in inference. Training steps (the user's own ``nnx.jit``, or the
transformers-style classes with ``train=True``) keep XLA's default, which is the faster one there.
"""

from __future__ import annotations

import functools

import jax

_YNNPACK_OFF = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def inference_options(platform: str) -> tuple[tuple[str, str], ...]:
    """The compiler options for inference on ``platform``: YNNPACK off on a CPU whose jaxlib has it, else none."""
    if platform != "cpu":
        return ()
    try:
        jax.jit(lambda x: x + 1, compiler_options=_YNNPACK_OFF).lower(1.0).compile()
    except jax.errors.JaxRuntimeError:  # "No such compile option": a jaxlib without YNNPACK
        return ()
    return tuple(_YNNPACK_OFF.items())


class jit_inference:
    """``jax.jit(fn)`` compiled with the inference options of the default backend when called at top level; inside
    a caller's trace (their ``jax.jit``, ``jax.export``) a plain jit, since JAX refuses compiler options on a nested
    jit and the caller's own compilation decides there."""

    def __init__(self, fn):
        options = dict(inference_options(jax.default_backend()))
        self._top = jax.jit(fn, compiler_options=options or None)
        self._nested = jax.jit(fn) if options else self._top

    def __call__(self, *args):
        traced = any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(args))
        return (self._nested if traced else self._top)(*args)

    def lower(self, *args):
        return self._top.lower(*args)
