"""The plan's activations (``regnet_zoo.variant.ACTIVATIONS``) as Keras functions: this plugin's one name -> function
table, used by the Keras model (``backbone``) and the frozen fast path (``fast``) alike.

Each is the function timm builds for the name, with torch's constants: ``gelu`` is the exact erf form, ``gelu_tanh``
its tanh approximation, ``quick_gelu`` is ``x * sigmoid(1.702 x)`` and ``leaky_relu`` has slope 0.01 (Keras' own
``leaky_relu`` defaults to 0.2, one reason no activation is handed to Keras by name). The functions are registered
Keras serialisables, so a layer holding one round-trips through ``get_config``.
"""

from __future__ import annotations

from ._tf import keras
from .layers import PACKAGE

register = keras.saving.register_keras_serializable(package=PACKAGE)


@register
def relu(x):
    return keras.ops.relu(x)


@register
def silu(x):
    return keras.ops.silu(x)


@register
def gelu(x):
    return keras.ops.gelu(x, approximate=False)


@register
def gelu_tanh(x):
    return keras.ops.gelu(x, approximate=True)


@register
def quick_gelu(x):
    return x * keras.ops.sigmoid(1.702 * x)


@register
def mish(x):
    return keras.activations.mish(x)


@register
def relu6(x):
    return keras.ops.relu6(x)


@register
def leaky_relu(x):
    return keras.ops.leaky_relu(x, negative_slope=0.01)


@register
def tanh(x):
    return keras.ops.tanh(x)


@register
def sigmoid(x):
    return keras.ops.sigmoid(x)


@register
def identity(x):
    return x


# Activations a BN in inference mode must not hand to TF as one FusedBatchNormV3 op: TF 2.21's grappler (oneDNN
# build) rewrites Conv2D + FusedBatchNorm + Tanh / Mish into a _FusedConv2D its CPU kernel does not implement
# ("Fusion is not implemented: [FusedBatchNorm,Tanh]").
NO_FUSED_BN = frozenset({"tanh", "mish"})
ACTIVATIONS = {f.__name__: f for f in (relu, silu, gelu, gelu_tanh, quick_gelu, mish, relu6, leaky_relu, tanh, sigmoid,
                                        identity)}


def activation(name: str):
    """The function of plan activation ``name``; ``ValueError`` for any name this table does not hold."""
    fn = ACTIVATIONS.get(name)
    if fn is None:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}")
    return fn
