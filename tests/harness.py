"""One harness for every framework plugin: build through ``rz.create``, load and export canonical weights, run on
NCHW numpy input, all through the hooks of the ``Framework`` record, and compare with timm on the same weights.

Weights are random with randomised BN statistics and affine parameters, so no branch is zero (timm initialises
the last BN of each block to zero, which would make parity vacuous).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

import regnet_zoo as rz
from regnet_zoo.keys import canonical_shapes
from regnet_zoo.plugins import get_host

FRAMEWORKS = ("torch", "tf", "flax")
FRAMEWORK_MODULES = {"torch": ("torch", "timm"), "tf": ("tensorflow", "keras", "keras_hub"), "flax": ("jax", "flax")}
PARITY_MAX_PARAMS = 150_000_000
PARITY_VARIANTS = [n for n in rz.list_variants() if rz.plan(n).params() <= PARITY_MAX_PARAMS]
# the default suite's registry parity: an X, a Y, a torchvision-style Y, a V (pre-activation, avg shortcuts), a Z
# (linear_out, bottleneck 4, final conv) and a GroupNorm + SiLU Y; every other variant runs under -m slow
# every block kind and design feature (regnety_008_tv, torchvision's weights of a Y, is under -m slow like the rest)
DEFAULT_PARITY_VARIANTS = ("regnetx_002", "regnety_002", "regnetv_040", "regnetz_005", "regnety_040_sgn")
LARGE_VARIANTS = [n for n in rz.list_variants() if rz.plan(n).params() > PARITY_MAX_PARAMS]
LOGITS_RTOL = 1e-4
HIDDEN_RTOL = 1e-3


def slow_unless(names, default) -> list:
    """``names`` as pytest params, those not in ``default`` marked ``slow`` (the every-variant extension)."""
    import pytest

    return [n if n in default else pytest.param(n, marks=pytest.mark.slow) for n in names]


def random_state(name: str, num_classes: int = 1000, in_chans: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Random canonical weights for ``name``: He-scaled convs, BN with random affine and running statistics."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in canonical_shapes(rz.plan(name), num_classes, in_chans).items():
        if key.endswith("running_mean"):
            arr = rng.normal(0.0, 0.1, shape)
        elif key.endswith("running_var"):
            arr = rng.uniform(0.5, 1.5, shape)
        elif key.endswith("weight") and len(shape) == 1:  # a norm's scale (bn.weight, or normN.weight in preact)
            lo, hi = (0.1, 0.4) if ".conv3." in key or ".norm3." in key else (0.5, 1.5)  # bounded residual sums
            arr = rng.uniform(lo, hi, shape)
        elif key.endswith("bias"):
            arr = rng.normal(0.0, 0.1, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            arr = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        state[key] = arr.astype(np.float32)
    return state


def random_input(batch: int = 2, size: int = 64, in_chans: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, in_chans, size, size)).astype(np.float32)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| relative to the scale (max |b|) of the reference ``b``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != reference {b.shape}"
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


class Ops:
    """The hooks of one framework, called exactly as the host calls them."""

    def __init__(self, framework: str):
        self.framework = get_host().framework(framework)

    def create(self, name: str, **kwargs: Any):
        return rz.create(name, framework=self.framework.name, **kwargs)

    def load(self, model, state: dict[str, np.ndarray], strict: bool = True) -> None:
        self.framework.load_weights(model, state, strict=strict)

    def export(self, model) -> dict[str, np.ndarray]:
        return self.framework.export_weights(model)

    def run(self, model, x: np.ndarray, labels: np.ndarray | None = None):
        return self.framework.run(model, x, labels=labels)


@functools.lru_cache(maxsize=4)
def ops(framework: str) -> Ops:
    return Ops(framework)


def loaded_model(framework: str, name: str, num_classes: int = 1000, **kwargs: Any):
    """``rz.create(name, framework, ...)`` with ``random_state`` loaded through the framework's loader hook (without
    the head keys for a headless or ``features_only`` model, nor the stages a ``features_only`` model does not build)."""
    o = ops(framework)
    model = o.create(name, num_classes=num_classes, **kwargs)
    state = random_state(name, num_classes=num_classes)
    if kwargs.get("features_only") or not num_classes:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    if kwargs.get("features_only"):  # the stages after the deepest requested map are not built
        built = {"stem"} | {f"s{i}" for i in range(1, max(kwargs.get("out_indices", (1, 2, 3, 4))) + 1)}
        state = {k: v for k, v in state.items() if k.split(".", 1)[0] in built}
    o.load(model, state)
    return model


def timm_model(name: str, state: dict[str, np.ndarray], num_classes: int = 1000, **timm_kwargs: Any):
    """timm's own model for ``name`` (built from the same explicit plan) with ``state`` loaded, in eval mode;
    ``timm_kwargs`` go to ``timm.create_model`` (``output_stride``, ``in_chans``)."""
    import timm
    import torch

    pl = rz.plan(name)
    assert name in timm.list_models("regnet*"), f"{name} is not a timm model"
    model = timm.create_model(name, num_classes=num_classes, **timm_kwargs)
    sd = {k: torch.from_numpy(v) for k, v in state.items()}
    sd.update({k: torch.zeros((), dtype=torch.long) for k in model.state_dict() if k.endswith("num_batches_tracked")})
    model.load_state_dict(sd, strict=True)
    assert sum(p.numel() for p in model.parameters()) == pl.params(num_classes, timm_kwargs.get("in_chans", 3))
    return model.eval()


def timm_reference(name: str, state: dict[str, np.ndarray], x: np.ndarray, num_classes: int = 1000,
                   **timm_kwargs: Any):
    """(logits, [stem, s1, s2, s3, s4] maps) of timm's model on NCHW ``x``, as numpy."""
    import torch

    model = timm_model(name, state, num_classes, **timm_kwargs)
    with torch.no_grad():
        xt = torch.from_numpy(x)
        logits = model(xt).numpy()
        _, inter = model.forward_intermediates(xt, indices=5)
    return logits, [t.numpy() for t in inter]


def randomize(model, seed: int = 0):
    """Random BN statistics and norm affine parameters (timm/HF zero-init some BN weights, which hides mistakes)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)):
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


def export_all(models: dict, specs: list, out, fmt: str, suffix: str, input_size: int) -> dict:
    """``rz.export`` of each built model: ``specs`` rows are (key, variant, create kwargs, export kwargs)."""
    return {key: rz.export(models[key], out / f"{key}{suffix}", fmt, input_size=input_size, **ekw)
            for key, _, _, ekw in specs}


def training_gradients(framework: str, model, x: np.ndarray, labels: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """One training step's (cross-entropy loss, gradient of every trainable tensor under its canonical name, torch
    layout) of a classifier in training mode (BN on batch statistics), on NCHW ``x``. The flax model must be built
    with ``data_format="channels_first"``; a tf model takes either layout."""
    if framework == "torch":
        import torch

        model.train()
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(labels))
        model.zero_grad()
        loss.backward()
        return float(loss.detach()), {k: p.grad.numpy().copy() for k, p in model.named_parameters()}
    if framework == "tf":
        import tensorflow as tf

        from regnet_zoo_tf.weights import slots

        table = {k: s for k, s in slots(model).items() if s.variable.trainable}
        with tf.GradientTape() as tape:
            logits = model(x if model.data_format == "channels_first" else np.transpose(x, (0, 2, 3, 1)), training=True)
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        grads = tape.gradient(loss, [s.variable for s in table.values()])
        return float(loss), {k: s.to_canonical(np.asarray(g)) for (k, s), g in zip(table.items(), grads)}
    if framework == "flax":
        import jax.numpy as jnp
        from flax import nnx

        from regnet_zoo_flax.weights import key_of, to_torch_layout

        model.train()
        loss, grads = _flax_value_and_grad()(model, jnp.asarray(x), jnp.asarray(labels))
        return float(loss), {key_of("params", tuple(map(str, p))): to_torch_layout(np.asarray(v.get_value()))
                             for p, v in nnx.to_flat_state(grads)}
    raise ValueError(f"no gradient code for framework {framework!r}")


@functools.cache
def _flax_value_and_grad():
    """One jitted loss-and-gradient function: compiled once per model structure, not once per call (eager op-by-op
    is 4x slower here)."""
    import optax
    from flax import nnx

    def loss_fn(model, x, labels):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), labels).mean()

    return nnx.jit(nnx.value_and_grad(loss_fn))


def global_rel_err(grads: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
    """L2 norm of the difference over every tensor, relative to the reference's L2 norm (same keys required)."""
    assert grads.keys() == reference.keys(), sorted(grads.keys() ^ reference.keys())[:10]
    num = sum(float(np.sum((grads[k].astype(np.float64) - reference[k]) ** 2)) for k in reference)
    return float(np.sqrt(num / sum(float(np.sum(reference[k].astype(np.float64) ** 2)) for k in reference)))
