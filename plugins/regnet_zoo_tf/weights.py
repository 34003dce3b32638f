"""Canonical (timm-named, PyTorch-layout) numpy weights <-> the variables of a regnet_zoo_tf model.

Layer names are canonical module paths, so the map is a rename plus a layout change:

=============================  ===========================================  ==============================
canonical key                  Keras variable                               layout change
=============================  ===========================================  ==============================
``<p>.conv.weight``            ``get_layer("<p>.conv").kernel``             (O, I/g, kh, kw) -> (kh, kw, I/g, O)
``<p>.bn.weight / bias``       ``get_layer("<p>.bn").gamma / beta``         none
``<p>.bn.running_mean / var``  ``moving_mean / moving_variance``            none
``<p>.bn.weight / bias`` (GN)  ``get_layer("<p>.bn").gamma / beta``         none (GroupNorm: no statistics)
``<p>.weight`` (preact conv)   ``get_layer("<p>").kernel``                  (O, I/g, kh, kw) -> (kh, kw, I/g, O)
``<p>.normN.*`` (preact norm)  ``get_layer("<p>.normN")``, as a BN / GN     none
``<p>.se.fc1.weight / bias``   ``get_layer("<p>.se.fc1").kernel / bias``    (O, I, 1, 1) -> (1, 1, I, O)
``head.fc.weight / bias``      ``classifier.fc.kernel / bias``              (out, in) -> (in, out)
=============================  ===========================================  ==============================
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from regnet_zoo.errors import WeightsError
from regnet_zoo.keys import canonical_shapes, check_state

from ._tf import keras
from .backbone import RegNetBackbone
from .classifier import RegNetClassifier
from .fast import FrozenRegNet
from .layers import BatchNorm, DropPath

_BN = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"), ("running_var", "moving_variance"))
_GN = _BN[:2]


def _conv_to_keras(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))


def _conv_to_canonical(k: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(k, (3, 2, 0, 1)))


def _linear_to_keras(w: np.ndarray) -> np.ndarray:
    return np.transpose(w)


def _linear_to_canonical(k: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(k))


def _same(a: np.ndarray) -> np.ndarray:
    return a


class Slot:
    """One canonical tensor: the Keras variable holding it and the layout changes both ways."""

    __slots__ = ("variable", "to_keras", "to_canonical", "shape")

    def __init__(self, variable, to_keras: Callable, to_canonical: Callable, shape: tuple[int, ...]):
        self.variable, self.to_keras, self.to_canonical, self.shape = variable, to_keras, to_canonical, shape


def _backbone_of(model) -> RegNetBackbone:
    if isinstance(model, RegNetBackbone):
        return model
    if isinstance(model, RegNetClassifier):
        return model.backbone
    if isinstance(model, FrozenRegNet):
        raise TypeError("a FrozenRegNet (fast=True) holds a folded snapshot of the weights and cannot load or export "
                        "them; load into or export from the Keras model (fast=False), then optimize_for_inference it")
    raise TypeError(f"expected a regnet_zoo_tf model (RegNetClassifier or RegNetBackbone), got {type(model).__name__}")


def slots(model) -> dict[str, Slot]:
    """Canonical key -> ``Slot`` for every tensor of ``model``, in timm's ``state_dict`` order."""
    backbone = _backbone_of(model)
    out: dict[str, Slot] = {}
    for layer in backbone.layers:
        name = layer.name
        if isinstance(layer, (BatchNorm, keras.layers.GroupNormalization)):
            for key, attr in _BN if isinstance(layer, BatchNorm) else _GN:
                v = getattr(layer, attr)
                out[f"{name}.{key}"] = Slot(v, _same, _same, tuple(v.shape))
        elif isinstance(layer, keras.layers.Conv2D):
            k = layer.kernel
            shape = (k.shape[3], k.shape[2], k.shape[0], k.shape[1])
            out[f"{name}.weight"] = Slot(k, _conv_to_keras, _conv_to_canonical, shape)
            if layer.use_bias:
                out[f"{name}.bias"] = Slot(layer.bias, _same, _same, tuple(layer.bias.shape))
        elif layer.weights and not isinstance(layer, DropPath):  # DropPath holds only its RNG state
            raise AssertionError(f"layer {name} has weights without a canonical name")
    if isinstance(model, RegNetClassifier) and model.fc is not None:
        k, b = model.fc.kernel, model.fc.bias
        out["head.fc.weight"] = Slot(k, _linear_to_keras, _linear_to_canonical, (k.shape[1], k.shape[0]))
        out["head.fc.bias"] = Slot(b, _same, _same, tuple(b.shape))
    num_classes = out["head.fc.bias"].shape[0] if "head.fc.bias" in out else 0
    order = canonical_shapes(backbone.plan, num_classes, backbone.in_chans)
    if order.keys() != out.keys():  # a construction bug, never a user error
        raise AssertionError(f"layer names do not match the canonical keys: {sorted(order.keys() ^ out.keys())[:10]}")
    return {k: out[k] for k in order}


def expected_shapes(model) -> dict[str, tuple[int, ...]]:
    """Canonical keys and (PyTorch-layout) shapes of ``model``."""
    return {k: s.shape for k, s in slots(model).items()}


def load_canonical(model, state: Mapping[str, Any], strict: bool = True, origin: str = "weights") -> None:
    """Load canonical numpy weights into ``model``.

    ``strict=True``: the key set must match exactly (every missing, unexpected and mis-shaped key is listed in one
    ``WeightsError``). ``strict=False``: only the given keys are loaded; each must exist with the right shape.
    timm's ``num_batches_tracked`` counters are ignored.
    """
    table = slots(model)
    expected = {k: s.shape for k, s in table.items()}
    if strict:
        check_state(state, expected, origin)
    else:
        given = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        check_state(given, {k: expected[k] for k in given if k in expected}, origin)
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        slot = table[key]
        array = np.asarray(value)
        if not np.issubdtype(array.dtype, np.floating):
            raise WeightsError(f"{origin}: {key} has dtype {array.dtype}; expected a floating-point array")
        slot.variable.assign(slot.to_keras(array).astype(slot.variable.dtype, copy=False))


def export_canonical(model) -> dict[str, np.ndarray]:
    """``model``'s weights as canonical numpy arrays (bit-exact inverse of ``load_canonical``)."""
    return {key: slot.to_canonical(keras.ops.convert_to_numpy(slot.variable)) for key, slot in slots(model).items()}
