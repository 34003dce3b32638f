"""Canonical (timm-named, PyTorch-layout) numpy weights in and out of the NNX and linen forms.

The variable tree mirrors the canonical names, so the mapping is a rename plus a layout change:

=====================================  ==============================================  ===========================
canonical key                          variable (collection / path)                    layout
=====================================  ==============================================  ===========================
``<m>.conv.weight`` (O, I/g, kh, kw)   ``params / <m>/conv/kernel`` (kh, kw, I/g, O)    transpose (2, 3, 1, 0)
``<m>.se.fc1.weight`` (O, I, 1, 1)     ``params / <m>/se/fc1/kernel`` (1, 1, I, O)      transpose (2, 3, 1, 0)
``<m>.bn.weight`` / ``.bias``          ``params / <m>/bn/scale`` / ``bias``
``<m>.bn.running_mean`` / ``_var``     ``batch_stats / <m>/bn/mean`` / ``var``
``<b>.norm1.weight`` ... (preact)      ``params / <b>/norm1/scale`` ... (as ``bn``)
``<b>.conv1.weight`` (preact)          ``params / <b>/conv1/kernel``                   transpose (2, 3, 1, 0)
``<b>.downsample.1.conv.weight``       ``params / <b>/downsample/1/conv/kernel``       transpose (2, 3, 1, 0)
``head.fc.weight`` (K, C)              ``params / head/fc/kernel`` (C, K)               transpose (1, 0)
=====================================  ==============================================  ===========================

GroupNorm layers have the BN names without the running statistics (no ``batch_stats``). Transposes are exact, so
``export_canonical(load_canonical(m, s))`` returns ``s`` bit for bit.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, NamedTuple

import zlib

import numpy as np

from regnet_zoo.keys import canonical_shapes, check_state

BN_NAMES = {"weight": ("params", "scale"), "bias": ("params", "bias"),
            "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}
_BN_BACK = {v: k for k, v in BN_NAMES.items()}
NORM_MODULES = ("bn", "norm1", "norm2", "norm3")  # ConvNormAct's norm; the pre-activation block's norms


class Slot(NamedTuple):
    collection: str  # "params" | "batch_stats"
    path: tuple[str, ...]


def slot_of(key: str) -> Slot:
    """Where canonical ``key`` lives in the Flax variable tree."""
    *module, leaf = key.split(".")
    if module and module[-1] in NORM_MODULES:
        collection, name = BN_NAMES[leaf]
        return Slot(collection, (*module, name))
    return Slot("params", (*module, {"weight": "kernel", "bias": "bias"}[leaf]))


def key_of(collection: str, path: tuple[str, ...]) -> str:
    """The canonical key of a Flax variable (inverse of ``slot_of``)."""
    *module, name = path
    if module and module[-1] in NORM_MODULES:
        return ".".join((*module, _BN_BACK[(collection, name)]))
    return ".".join((*module, {"kernel": "weight", "bias": "bias"}[name]))


def to_flax_layout(array: np.ndarray) -> np.ndarray:
    """PyTorch layout -> Flax: conv OIHW -> HWIO, linear (out, in) -> (in, out); vectors unchanged."""
    if array.ndim == 4:
        return np.transpose(array, (2, 3, 1, 0))
    if array.ndim == 2:
        return np.transpose(array, (1, 0))
    return array


def to_torch_layout(array: np.ndarray) -> np.ndarray:
    if array.ndim == 4:
        return np.transpose(array, (3, 2, 0, 1))
    if array.ndim == 2:
        return np.transpose(array, (1, 0))
    return array


# -- the two model forms ----------------------------------------------------------------------------------------

def _is_linen(model: Any) -> bool:
    from flax import linen as nn

    return isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], nn.Module)


def _config(model: Any):
    config = getattr(model[0] if _is_linen(model) else model, "config", None)
    if config is None or not hasattr(config, "plan"):
        raise TypeError(f"expected a regnet-zoo Flax model (an NNX RegNet or a (RegNetLinen, variables) pair), got "
                        f"{type(model).__name__}")
    return config


def expected_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Canonical keys and PyTorch-layout shapes of ``model``."""
    config = _config(model)
    return canonical_shapes(config.plan, config.num_classes if config.has_head else 0, config.in_chans)


def _nnx_variable(model, slot: Slot):
    node = model
    for name in slot.path:
        node = getattr(node, name)
    return node


def _iter_slots(model: Any) -> Iterator[tuple[str, Slot]]:
    for key in expected_shapes(model):
        yield key, slot_of(key)


def load_canonical(model: Any, state: Mapping[str, Any], strict: bool = True):
    """Load canonical numpy weights into ``model`` in place (NNX module, or linen ``(module, variables)``).

    ``strict=True``: the keys must be exactly the model's (timm's ``num_batches_tracked`` are ignored); one
    ``WeightsError`` lists every missing, unexpected and mis-shaped key. ``strict=False``: only the given keys are
    loaded, but each must exist in the model with the right shape. Works on abstract models too (their variables
    become real arrays). Returns ``model``.
    """
    expected = expected_shapes(model)
    origin = getattr(state, "origin", "weights")
    if strict:
        check_state(state, expected, origin)
    else:
        check_state(state, {k: v for k, v in expected.items() if k in state}, origin)
    if _is_linen(model) and not isinstance(model[1], dict):
        raise TypeError(f"linen variables must be a mutable dict to load into in place, got "
                        f"{type(model[1]).__name__}; use flax.core.unfreeze(variables)")
    for key in expected:
        if key in state:
            set_canonical(model, key, state[key])
    return model


def set_canonical(model: Any, key: str, array) -> None:
    """Set one variable from a canonical (PyTorch-layout) array; no checks (``load_canonical`` does them)."""
    import jax.numpy as jnp

    value = jnp.asarray(to_flax_layout(np.asarray(array)), dtype=jnp.float32)
    slot = slot_of(key)
    if _is_linen(model):
        node = model[1][slot.collection]
        for name in slot.path[:-1]:
            node = node[name]
        node[slot.path[-1]] = value
    else:
        _nnx_variable(model, slot).set_value(value)


def export_canonical(model: Any) -> dict[str, np.ndarray]:
    """The model's weights as canonical numpy arrays (timm names, PyTorch layouts), bit-exact."""
    out: dict[str, np.ndarray] = {}
    if _is_linen(model):
        _, variables = model
        for key, slot in _iter_slots(model):
            node = variables[slot.collection]
            for name in slot.path:
                node = node[name]
            out[key] = np.ascontiguousarray(to_torch_layout(np.asarray(node)))
        return out
    for key, slot in _iter_slots(model):
        value = _nnx_variable(model, slot).get_value()
        out[key] = np.ascontiguousarray(to_torch_layout(np.asarray(value)))
    return out


def init_canonical(key: str, shape: tuple[int, ...], plan, seed: int = 0, zero_init_last: bool = True) -> np.ndarray:
    """timm's random initialisation of one canonical variable (PyTorch layout), drawn on the host with numpy.

    Convs N(0, sqrt(2 / fan_out)) with fan_out = kh * kw * out / groups; BN / GroupNorm scale 1 (0 for each
    block's last norm, ``conv3.bn``, with ``zero_init_last``; pre-activation blocks have none), norm biases / conv
    and linear biases 0, running mean 0 / var 1; classifier N(0, 0.01).
    Every key has its own stream (seeded by ``seed`` and the key), so a variable's value does not depend on which
    other variables were loaded from a checkpoint.
    """
    *module, leaf = key.split(".")
    if module and module[-1] in NORM_MODULES:
        zero = zero_init_last and plan.zero_init_last and ".conv3.bn." in key  # plan: timm's RegNetZ keeps 1
        one = leaf == "running_var" or (leaf == "weight" and not zero)
        return (np.ones if one else np.zeros)(shape, np.float32)
    if leaf == "bias":
        return np.zeros(shape, np.float32)
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    if len(shape) == 2:
        std = 0.01
    else:
        groups = 1
        if module[-1] == "conv2" or module[-2:] == ["conv2", "conv"]:  # the grouped 3x3 (preact: no ".conv")
            block = ".".join(module[:2])
            groups = next(b.groups for s in plan.stages for b in s.blocks if b.name == block)
        std = float(np.sqrt(2.0 / (shape[0] * shape[2] * shape[3] // groups)))
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
