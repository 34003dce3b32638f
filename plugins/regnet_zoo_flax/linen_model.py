"""The linen form: the same network and variable tree as ``nnx_model.RegNet``, for linen code bases.

``module.apply(variables, x, train=False)``; with ``train=True`` pass ``mutable=["batch_stats"]`` and get
``(outputs, {"batch_stats": ...})`` back. It embeds as a submodule of a user's linen model like any other
module (its variables then sit under the submodule's name).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

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
    """PyTorch-semantics BN (see ``ops.batch_norm``), then ``act``; ``frozen`` = always running statistics."""

    num_features: int
    zero_init: bool = False
    frozen: bool = False
    axis_name: str | None = None
    momentum: float = 0.9
    epsilon: float = 1e-5
    where: str = ""
    act: str | None = None

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
        return ops.activation(y, self.act)


class GroupNorm(nn.Module):
    """``torch.nn.GroupNorm`` (see ``ops.group_norm``), then ``act``; scale and bias only."""

    num_features: int
    num_groups: int
    zero_init: bool = False
    epsilon: float = 1e-5
    act: str | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        n = (self.num_features,)
        scale = self.param("scale", lambda k, s: (jnp.zeros if self.zero_init else jnp.ones)(s, jnp.float32), n)
        bias = self.param("bias", lambda k, s: jnp.zeros(s, jnp.float32), n)
        return ops.activation(ops.group_norm(x, scale, bias, self.num_groups, self.epsilon), self.act)


def Norm(num_features: int, *, norm_groups: int = 0, act: str | None = None, zero_init: bool = False,
         frozen: bool = False, axis_name: str | None = None, where: str = "", name: str | None = None):
    """The plan's norm (+ act): ``GroupNorm`` when ``norm_groups`` > 0, else ``BatchNorm``."""
    if norm_groups:
        return GroupNorm(num_features, norm_groups, zero_init, act=act, name=name)
    return BatchNorm(num_features, zero_init, frozen, axis_name, where=where, act=act, name=name)


class ConvNormAct(nn.Module):
    in_features: int
    out_features: int
    kernel_size: int
    stride: int = 1
    groups: int = 1
    act: str | None = "relu"
    zero_init_bn: bool = False
    frozen: bool = False
    axis_name: str | None = None
    impl: str = "xla"  # grouped conv in inference mode
    train_impl: str = "xla"  # ... and in training mode
    where: str = ""
    dilation: int = 1
    norm_groups: int = 0  # GroupNorm groups; 0 = BatchNorm

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = Conv(self.in_features, self.out_features, self.kernel_size, self.stride, self.groups,
                 impl=self.train_impl if train else self.impl, dilation=self.dilation, name="conv")(x)
        return Norm(self.out_features, norm_groups=self.norm_groups, act=self.act, zero_init=self.zero_init_bn,
                    frozen=self.frozen, axis_name=self.axis_name, where=f"{self.where}.bn", name="bn")(x, train)


class SqueezeExcite(nn.Module):
    channels: int
    se_width: int
    act: str = "relu"

    @nn.compact
    def __call__(self, x):
        fc1 = Conv(self.channels, self.se_width, 1, use_bias=True, name="fc1")
        fc2 = Conv(self.se_width, self.channels, 1, use_bias=True, name="fc2")
        s = jnp.mean(x.astype(ops.acc_dtype(x.dtype)), axis=(1, 2), keepdims=True).astype(x.dtype)
        return x * jax.nn.sigmoid(fc2(ops.activation(fc1(s), self.act)))


class AvgShortcut(nn.Module):
    """timm's ``downsample_avg``: ``ops.avg_downsample``, then the 1x1 conv (+ norm), submodule ``"1"``."""

    make_conv: Callable  # make_conv(name=...) -> the Conv / ConvNormAct, created here so it is our submodule
    stride: int
    dilation: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        return _call(self.make_conv(name="1"), ops.avg_downsample(x, self.stride, self.dilation), train)


def _call(module, x, train: bool):
    """A bare conv (preact) takes no ``train``; a ConvNormAct does."""
    return module(x, train) if isinstance(module, ConvNormAct) else module(x)



class Bottleneck(nn.Module):
    """One RegNet block, timm's ``Bottleneck`` or (``plan.preact``) ``PreBottleneck``; see ``nnx_model.Bottleneck``."""

    block: BlockPlan
    config: NetConfig
    frozen: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        b, plan, w = self.block, self.config.plan, self.block.bottleneck_width
        norm = dict(frozen=self.frozen, axis_name=self.config.axis_name)
        impl = self.config.conv_impl(b.name, train)
        conv2 = dict(stride=b.stride, groups=b.groups, dilation=b.dilation)
        se = SqueezeExcite(w, b.se_width, plan.se_activation, name="se") if b.se_width else (lambda h: h)
        if plan.preact:
            def nrm(h, c, i):
                return Norm(c, norm_groups=self.config.norm_groups(c), act=plan.act, where=f"{b.name}.norm{i}",
                            name=f"norm{i}", **norm)(h, train)

            x = nrm(x, b.in_width, 1)
            y = Conv(b.in_width, w, 1, name="conv1")(x)
            y = se(Conv(w, w, 3, **conv2, impl=impl, name="conv2")(nrm(y, w, 2)))
            y = Conv(w, b.out_width, 1, name="conv3")(nrm(y, w, 3))
            shortcut = functools.partial(Conv, b.in_width, b.out_width, 1)
        else:
            def cna(cin, cout, k, part, name=None, **kw):  # part: the canonical name below the block
                return ConvNormAct(cin, cout, k, norm_groups=self.config.norm_groups(cout), where=f"{b.name}.{part}",
                                   name=name or part, **norm, **kw)

            y = cna(b.in_width, w, 1, "conv1", act=plan.act)(x, train)
            y = cna(w, w, 3, "conv2", act=plan.act, impl=self.config.conv_impl(b.name),
                    train_impl=self.config.conv_impl(b.name, True), **conv2)(y, train)
            y = cna(w, b.out_width, 1, "conv3", act=None, zero_init_bn=self.config.zero_init_last)(se(y), train)
            part = "downsample.1" if b.shortcut == "avg" else "downsample"
            shortcut = functools.partial(cna, b.in_width, b.out_width, 1, part, act=None)
        if b.shortcut == "conv1x1":
            y = y + _call(shortcut(stride=b.stride, name="downsample"), x, train)
        elif b.shortcut == "avg":
            y = y + AvgShortcut(shortcut, b.stride, b.dilation, name="downsample")(x, train)
        elif b.shortcut == "identity":
            y = y + x
        return ops.activation(y, None if plan.preact or plan.linear_out else plan.act)


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
        plan = c.plan
        if plan.preact:
            stem = Conv(c.in_chans, plan.stem_width, 3, 2, name="stem")
        else:
            stem = ConvNormAct(c.in_chans, plan.stem_width, 3, 2, act=plan.act,
                               norm_groups=c.norm_groups(plan.stem_width), frozen=c.bn_frozen(0),
                               axis_name=c.axis_name, where="stem", name="stem")
            stem = functools.partial(stem, train=train)
        stages = [Stage(s.blocks, c, c.bn_frozen(s.index), name=s.name) for s in plan.stages]
        final_conv = None
        if plan.final_conv_width:
            final_conv = ConvNormAct(plan.stages[-1].out_width, plan.final_conv_width, 1, act=plan.act,
                                     frozen=c.bn_frozen(5), axis_name=c.axis_name,
                                     norm_groups=c.norm_groups(plan.final_conv_width), where="final_conv",
                                     name="final_conv")
            final_conv = functools.partial(final_conv, train=train)
        head = Head(plan.num_features, c.num_classes, name="head") if c.has_head else None
        return network.forward(c, x, stem, [lambda h, s=s: s(h, train) for s in stages], head,
                               final_conv=final_conv, output_hidden_states=output_hidden_states, labels=labels)
