"""The linen form: the same network and variable tree as ``nnx_model.RegNet``, for linen code bases.

``module.apply(variables, x, train=False)``; with ``train=True`` pass ``mutable=["batch_stats"]`` and get
``(outputs, {"batch_stats": ...})`` back. It embeds as a submodule of a user's linen model like any other
module (its variables then sit under the submodule's name).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

from regnet_zoo.plan import BlockPlan

from . import network, ops
from .config import NetConfig


def _conv_init(groups: int):
    def init(key, shape):
        kh, kw, _, out = shape
        return jax.random.normal(key, shape, jnp.float32) * math.sqrt(2.0 / (kh * kw * out // groups))

    return init


class Conv(nn.Module):
    in_features: int
    out_features: int
    kernel_size: int
    stride: int = 1
    groups: int = 1
    use_bias: bool = False
    impl: str = "xla"
    dilation: int = 1

    @nn.compact
    def __call__(self, x):
        shape = (self.kernel_size, self.kernel_size, self.in_features // self.groups, self.out_features)
        kernel = self.param("kernel", _conv_init(self.groups), shape)
        bias = self.param("bias", lambda k, s: jnp.zeros(s, jnp.float32), (self.out_features,)) \
            if self.use_bias else None
        return ops.conv2d(x, kernel, stride=self.stride, groups=self.groups, impl=self.impl, bias=bias,
                          dilation=self.dilation)


class BatchNorm(nn.Module):
    """PyTorch-semantics BN (see ``ops.batch_norm``); ``frozen`` = always running statistics."""

    num_features: int
    zero_init: bool = False
    frozen: bool = False
    axis_name: str | None = None
    momentum: float = 0.9
    epsilon: float = 1e-5
    where: str = ""

    @nn.compact
    def __call__(self, x, train: bool = False):
        n = (self.num_features,)
        scale = self.param("scale", lambda k, s: (jnp.zeros if self.zero_init else jnp.ones)(s, jnp.float32), n)
        bias = self.param("bias", lambda k, s: jnp.zeros(s, jnp.float32), n)
        mean = self.variable("batch_stats", "mean", lambda: jnp.zeros(n, jnp.float32))
        var = self.variable("batch_stats", "var", lambda: jnp.ones(n, jnp.float32))
        use_running = (not train) or self.frozen or self.is_initializing()
        y, stats = ops.batch_norm(x, scale, bias, mean.value, var.value, use_running_average=use_running,
                                  momentum=self.momentum, epsilon=self.epsilon, axis_name=self.axis_name,
                                  where=self.where)
        if stats is not None:
            mean.value, var.value = stats
        return y


class ConvNormAct(nn.Module):
    in_features: int
    out_features: int
    kernel_size: int
    stride: int = 1
    groups: int = 1
    act: bool = True
    zero_init_bn: bool = False
    frozen: bool = False
    axis_name: str | None = None
    impl: str = "xla"  # grouped conv in inference mode
    train_impl: str = "xla"  # ... and in training mode
    where: str = ""
    dilation: int = 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = Conv(self.in_features, self.out_features, self.kernel_size, self.stride, self.groups,
                 impl=self.train_impl if train else self.impl, dilation=self.dilation, name="conv")(x)
        x = BatchNorm(self.out_features, self.zero_init_bn, self.frozen, self.axis_name, where=f"{self.where}.bn",
                      name="bn")(x, train)
        return jax.nn.relu(x) if self.act else x


class SqueezeExcite(nn.Module):
    channels: int
    se_width: int

    @nn.compact
    def __call__(self, x):
        fc1 = Conv(self.channels, self.se_width, 1, use_bias=True, name="fc1")
        fc2 = Conv(self.se_width, self.channels, 1, use_bias=True, name="fc2")
        s = jnp.mean(x.astype(ops.acc_dtype(x.dtype)), axis=(1, 2), keepdims=True).astype(x.dtype)
        return x * jax.nn.sigmoid(fc2(jax.nn.relu(fc1(s))))


class Bottleneck(nn.Module):
    block: BlockPlan
    config: NetConfig
    frozen: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        b, a, w = self.block, self.config.axis_name, self.block.bottleneck_width
        shortcut = x
        if b.shortcut_conv:
            shortcut = ConvNormAct(b.in_width, b.out_width, 1, b.stride, act=False, frozen=self.frozen, axis_name=a,
                                   where=f"{b.name}.downsample", name="downsample")(x, train)
        x = ConvNormAct(b.in_width, w, 1, frozen=self.frozen, axis_name=a, where=f"{b.name}.conv1",
                        name="conv1")(x, train)
        x = ConvNormAct(w, w, 3, b.stride, b.groups, frozen=self.frozen, axis_name=a,
                        impl=self.config.conv_impl(b.name), train_impl=self.config.conv_impl(b.name, True),
                        where=f"{b.name}.conv2", dilation=b.dilation, name="conv2")(x, train)
        if b.se_width:
            x = SqueezeExcite(w, b.se_width, name="se")(x)
        x = ConvNormAct(w, b.out_width, 1, act=False, zero_init_bn=self.config.zero_init_last, frozen=self.frozen,
                        axis_name=a, where=f"{b.name}.conv3", name="conv3")(x, train)
        return jax.nn.relu(x + shortcut)


class Stage(nn.Module):
    blocks: tuple[BlockPlan, ...]
    config: NetConfig
    frozen: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        for j, block in enumerate(self.blocks, start=1):
            x = Bottleneck(block, self.config, self.frozen, name=f"b{j}")(x, train)
        return x


class Linear(nn.Module):
    in_features: int
    out_features: int

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", lambda k, s: jax.random.normal(k, s, jnp.float32) * 0.01,
                            (self.in_features, self.out_features))
        bias = self.param("bias", lambda k, s: jnp.zeros(s, jnp.float32), (self.out_features,))
        return jnp.dot(x, kernel.astype(x.dtype)) + bias.astype(x.dtype)


class Head(nn.Module):
    in_features: int
    num_classes: int

    @nn.compact
    def __call__(self, x):
        return Linear(self.in_features, self.num_classes, name="fc")(x)


class RegNetLinen(nn.Module):
    """RegNet X/Y as a ``flax.linen.Module``; variables: ``{"params": ..., "batch_stats": ...}``.

    ``__call__(x, train=False, output_hidden_states=False, labels=None)``: same inputs and outputs as the NNX form.
    """

    config: NetConfig

    @property
    def feature_info(self):
        return self.config.feature_info

    @property
    def plan(self):
        return self.config.plan

    @nn.compact
    def __call__(self, x, train: bool = False, output_hidden_states: bool = False, labels=None):
        c = self.config
        stem = ConvNormAct(c.in_chans, c.plan.stem_width, 3, 2, frozen=c.bn_frozen(0), axis_name=c.axis_name,
                           where="stem", name="stem")
        stages = [Stage(s.blocks, c, c.bn_frozen(s.index), name=s.name) for s in c.plan.stages]
        head = Head(c.plan.num_features, c.num_classes, name="head") if c.has_head else None
        return network.forward(c, x, lambda h: stem(h, train), [lambda h, s=s: s(h, train) for s in stages], head,
                               output_hidden_states=output_hidden_states, labels=labels)
