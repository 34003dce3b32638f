"""RegNet X/Y (and the V / Z design space: preact, GroupNorm, activations, avg / absent shortcuts, final_conv) as
Flax NNX modules, built from a regnet-zoo plan.

The variable tree mirrors timm's module names (``stem/conv/kernel``, ``s2/b1/conv2/bn/mean``,
``s3/b4/se/fc1/bias``, ``head/fc/kernel``), so canonical weights map to it by name. The linen form
(``linen_model.py``) is this module through ``nnx.bridge``: ``nnx.split(model, nnx.Param, nnx.BatchStat)`` gives
the ``params`` and ``batch_stats`` of ``RegNetLinen.init``.

Mode is NNX-style state: ``model.train()`` makes every BN use and update batch statistics, ``model.eval()``
(the default after ``create``) uses the running ones; ``nnx.view(model, use_running_average=...)`` works too.
"""

from __future__ import annotations

import functools
import itertools
import math
import weakref

import jax
import jax.numpy as jnp
from flax import nnx

from regnet_zoo.plan import ArchPlan, BlockPlan

from . import network, ops
from .config import NetConfig


_structure_version = itertools.count()
_STRUCTURE = [next(_structure_version)]  # bumped by every attribute assignment on any module of this file


class Module(nnx.Module):
    """Base of this file's modules: records that *some* module changed structure or static attributes.

    ``RegNet.predict`` caches its traversal of the module graph; any ``setattr`` (``model.train()``, replacing a
    submodule, ``nnx.update``) invalidates that cache. Variable values are read live, so they need no tracking.
    """

    def __setattr__(self, name, value):
        _STRUCTURE[0] = next(_structure_version)
        super().__setattr__(name, value)


def _he_normal_fan_out(key, shape, groups: int):
    """timm's RegNet conv init: N(0, sqrt(2 / fan_out)), fan_out = kh * kw * out / groups."""
    kh, kw, _, out = shape
    return jax.random.normal(key, shape, jnp.float32) * math.sqrt(2.0 / (kh * kw * out // groups))


class Conv(Module):
    """2-D conv holding ONE kernel (kh, kw, in / groups, out); ``impl`` / ``train_impl`` say how a grouped conv is
    computed in inference / training mode."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int, *, stride: int = 1, groups: int = 1,
                 use_bias: bool = False, impl: str = "xla", train_impl: str | None = None, dilation: int = 1,
                 rngs: nnx.Rngs):
        shape = (kernel_size, kernel_size, in_features // groups, out_features)
        self.kernel = nnx.Param(_he_normal_fan_out(rngs.params(), shape, groups))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None
        self.stride, self.groups, self.impl, self.train_impl = stride, groups, impl, train_impl or impl
        self.dilation = dilation

    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        return ops.conv2d(x, self.kernel[...], stride=self.stride, groups=self.groups, dilation=self.dilation,
                          impl=self.train_impl if training else self.impl,
                          bias=None if self.bias is None else self.bias[...])


class BatchNorm(Module):
    """BatchNorm2d with PyTorch semantics (unbiased running variance), eps 1e-5, momentum 0.9 (= torch 0.1), then
    ``act`` (timm's ``BatchNormAct2d``; ``None``: no activation).

    ``frozen=True`` (frozen stages, ``norm_eval``) keeps it at its running statistics in training mode too.
    """

    def __init__(self, num_features: int, *, zero_init: bool = False, frozen: bool = False,
                 axis_name: str | None = None, momentum: float = 0.9, epsilon: float = 1e-5, where: str = "",
                 act: str | None = None):
        self.scale = nnx.Param((jnp.zeros if zero_init else jnp.ones)((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.use_running_average = True
        self.frozen, self.axis_name, self.momentum, self.epsilon, self.where = frozen, axis_name, momentum, epsilon, where
        self.act = act

    def set_view(self, use_running_average: bool | None = None):
        """Used by ``nnx.view(model, use_running_average=...)``."""
        if use_running_average is not None:
            self.use_running_average = use_running_average

    def __call__(self, x: jax.Array) -> jax.Array:
        y, stats = ops.batch_norm(x, self.scale[...], self.bias[...], self.mean[...], self.var[...],
                                  use_running_average=self.use_running_average or self.frozen,
                                  momentum=self.momentum, epsilon=self.epsilon, axis_name=self.axis_name,
                                  where=self.where)
        if stats is not None:
            self.mean[...], self.var[...] = stats
        return ops.activation(y, self.act)


class GroupNorm(Module):
    """``torch.nn.GroupNorm`` (eps 1e-5, scale and bias only), then ``act`` (timm's ``GroupNormAct``).

    It has no statistics; ``use_running_average`` is only the module's mode (it picks the training-mode grouped conv
    implementation of the conv it belongs to), set by ``model.train()`` / ``model.eval()`` like BN's.
    """

    def __init__(self, num_features: int, num_groups: int, *, zero_init: bool = False, epsilon: float = 1e-5,
                 act: str | None = None):
        self.scale = nnx.Param((jnp.zeros if zero_init else jnp.ones)((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.num_groups, self.epsilon, self.act = num_groups, epsilon, act
        self.use_running_average = True

    set_view = BatchNorm.set_view

    def __call__(self, x: jax.Array) -> jax.Array:
        return ops.activation(ops.group_norm(x, self.scale[...], self.bias[...], self.num_groups, self.epsilon),
                              self.act)


def Norm(num_features: int, *, norm_groups: int = 0, act: str | None = None, zero_init: bool = False,
         frozen: bool = False, axis_name: str | None = None, where: str = ""):
    """The plan's norm (+ act): ``GroupNorm`` when ``norm_groups`` > 0, else ``BatchNorm``."""
    if norm_groups:
        return GroupNorm(num_features, norm_groups, zero_init=zero_init, act=act)
    return BatchNorm(num_features, zero_init=zero_init, frozen=frozen, axis_name=axis_name, where=where, act=act)


class ConvNormAct(Module):
    """conv -> norm (-> act); timm's ``ConvNormAct`` (``stem``, ``conv1..3``, ``downsample``, ``final_conv``)."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int, *, stride: int = 1, groups: int = 1,
                 act: str | None = "relu", norm_groups: int = 0, zero_init_bn: bool = False, frozen: bool = False,
                 axis_name=None, impl: str = "xla", train_impl: str | None = None, where: str = "",
                 dilation: int = 1, rngs: nnx.Rngs):
        self.conv = Conv(in_features, out_features, kernel_size, stride=stride, groups=groups, impl=impl,
                         train_impl=train_impl, dilation=dilation, rngs=rngs)
        self.bn = Norm(out_features, norm_groups=norm_groups, act=act, zero_init=zero_init_bn, frozen=frozen,
                       axis_name=axis_name, where=f"{where}.bn")

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.bn(self.conv(x, training=not self.bn.use_running_average))


class SqueezeExcite(Module):
    """timm's ``SEModule``: mean -> fc1 (1x1 conv + bias) -> act -> fc2 -> sigmoid gate."""

    def __init__(self, channels: int, se_width: int, *, act: str = "relu", rngs: nnx.Rngs):
        self.fc1 = Conv(channels, se_width, 1, use_bias=True, rngs=rngs)
        self.fc2 = Conv(se_width, channels, 1, use_bias=True, rngs=rngs)
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        return ops.squeeze_excite(x, self.fc1.kernel[...], self.fc1.bias[...], self.fc2.kernel[...],
                                  self.fc2.bias[...], self.act)


class AvgShortcut(Module):
    """timm's ``downsample_avg``: ``ops.avg_downsample``, then the 1x1 conv (+ norm) as attribute ``"1"`` (its index
    in timm's ``nn.Sequential``, so the variable paths are the canonical names: ``s1/b1/downsample/1/conv/kernel``)."""

    def __init__(self, conv: Module, stride: int, dilation: int):
        setattr(self, "1", conv)
        self.stride, self.dilation = stride, dilation

    def __call__(self, x: jax.Array) -> jax.Array:
        return getattr(self, "1")(ops.avg_downsample(x, self.stride, self.dilation))



class Bottleneck(Module):
    """One RegNet block: 1x1 -> grouped 3x3 (stride, dilation) -> [SE] -> 1x1, plus the shortcut.

    ``plan.preact`` False (timm's ``Bottleneck``): each conv is a ``ConvNormAct`` (conv3 without act), the shortcut
    (identity, 1x1 conv + norm, avg pool + 1x1 conv + norm, or none) is added, then the act (none with
    ``linear_out``). ``plan.preact`` True (timm's ``PreBottleneck``): ``norm1..3`` (norm + act) come before bare convs
    ``conv1..3``, the shortcut (conv without norm) starts from ``norm1``'s output, and nothing follows the add.
    """

    def __init__(self, block: BlockPlan, config: NetConfig, *, frozen: bool, rngs: nnx.Rngs):
        plan, w, n = config.plan, block.bottleneck_width, block.name
        self.preact, self.residual = plan.preact, block.shortcut != "none"
        self.act = None if plan.preact or plan.linear_out else plan.act
        conv2 = dict(stride=block.stride, groups=block.groups, dilation=block.dilation,
                     impl=config.conv_impl(n), train_impl=config.conv_impl(n, True), rngs=rngs)
        norm = dict(frozen=frozen, axis_name=config.axis_name)
        if plan.preact:
            for i, c in enumerate((block.in_width, w, w), start=1):
                setattr(self, f"norm{i}", Norm(c, norm_groups=config.norm_groups(c), act=plan.act,
                                               where=f"{n}.norm{i}", **norm))
            self.conv1 = Conv(block.in_width, w, 1, rngs=rngs)
            self.conv2 = Conv(w, w, 3, **conv2)
            self.conv3 = Conv(w, block.out_width, 1, rngs=rngs)
            shortcut = functools.partial(Conv, block.in_width, block.out_width, 1, rngs=rngs)
        else:
            def cna(cin, cout, k, name, **kw):
                return ConvNormAct(cin, cout, k, norm_groups=config.norm_groups(cout), where=f"{n}.{name}",
                                   **norm, **kw)

            self.conv1 = cna(block.in_width, w, 1, "conv1", act=plan.act, rngs=rngs)
            self.conv2 = cna(w, w, 3, "conv2", act=plan.act, **conv2)
            self.conv3 = cna(w, block.out_width, 1, "conv3", act=None, zero_init_bn=config.zero_init_last,
                             rngs=rngs)
            name = "downsample.1" if block.shortcut == "avg" else "downsample"
            shortcut = functools.partial(cna, block.in_width, block.out_width, 1, name, act=None, rngs=rngs)
        self.se = SqueezeExcite(w, block.se_width, act=plan.se_activation, rngs=rngs) if block.se_width else None
        if block.shortcut == "conv1x1":
            self.downsample = shortcut(stride=block.stride)
        elif block.shortcut == "avg":
            self.downsample = AvgShortcut(shortcut(), block.stride, block.dilation)
        else:
            self.downsample = None

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.preact:
            x = self.norm1(x)
            y = self.conv2(self.norm2(self.conv1(x)), training=not self.norm2.use_running_average)
            if self.se is not None:
                y = self.se(y)
            y = self.conv3(self.norm3(y))
        else:
            y = self.conv2(self.conv1(x))
            if self.se is not None:
                y = self.se(y)
            y = self.conv3(y)
        if self.residual:
            y = y + (x if self.downsample is None else self.downsample(x))
        return ops.activation(y, self.act)


class Stage(Module):
    """Blocks ``b1 .. bN`` of one stage (attribute names = timm's, so paths match the canonical keys)."""

    def __init__(self, blocks: tuple[BlockPlan, ...], config: NetConfig, *, frozen: bool, rngs: nnx.Rngs):
        self.depth = len(blocks)
        for j, block in enumerate(blocks, start=1):
            setattr(self, f"b{j}", Bottleneck(block, config, frozen=frozen, rngs=rngs))

    def __call__(self, x: jax.Array) -> jax.Array:
        for j in range(1, self.depth + 1):
            x = getattr(self, f"b{j}")(x)
        return x


class Linear(Module):
    """Classifier layer: kernel (in, out) + bias; timm init N(0, 0.01), zero bias."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (in_features, out_features), jnp.float32) * 0.01)
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.dot(x, self.kernel[...].astype(x.dtype)) + self.bias[...].astype(x.dtype)


class Head(Module):
    """``head.fc`` (global pooling is done by the network)."""

    def __init__(self, in_features: int, num_classes: int, *, rngs: nnx.Rngs):
        self.fc = Linear(in_features, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc(x)


class RegNet(Module):
    """A RegNet X/Y classifier, headless model or feature backbone (``features_only``), as an NNX module.

    ``model(x, output_hidden_states=False, labels=None)``: ``x`` is NHWC (NCHW with
    ``data_format='channels_first'``). Returns logits, pooled features (``num_classes=0``), or the list of maps at
    ``out_indices`` (``features_only``); a ``RegNetOutput`` with ``output_hidden_states`` or ``labels``.
    ``model.predict(x)`` is the jitted inference path (running statistics, no state change).
    """

    pretrained_cfg_items: tuple = ()  # set by the builder; hashable, as NNX hashes static attributes under jit

    def __init__(self, config: NetConfig, *, rngs: nnx.Rngs):
        plan: ArchPlan = config.plan
        a = config.axis_name
        self.config = config
        if plan.preact:  # timm: a plain 3x3 s2 conv
            self.stem = Conv(config.in_chans, plan.stem_width, 3, stride=2, rngs=rngs)
        else:
            self.stem = ConvNormAct(config.in_chans, plan.stem_width, 3, stride=2, act=plan.act,
                                    norm_groups=config.norm_groups(plan.stem_width), frozen=config.bn_frozen(0),
                                    axis_name=a, where="stem", rngs=rngs)
        for stage in plan.stages:
            setattr(self, stage.name, Stage(stage.blocks, config, frozen=config.bn_frozen(stage.index), rngs=rngs))
        width = plan.final_conv_width  # timm's ConvNormAct after s4; see network.final_layer
        self.final_conv = ConvNormAct(plan.stages[-1].out_width, width, 1, act=plan.act,
                                      norm_groups=config.norm_groups(width), frozen=config.bn_frozen(5), axis_name=a,
                                      where="final_conv", rngs=rngs) if width else None
        self.head = Head(plan.num_features, config.num_classes, rngs=rngs) if config.has_head else None

    # -- metadata -------------------------------------------------------------------------------------------
    @property
    def plan(self) -> ArchPlan:
        return self.config.plan

    @property
    def feature_info(self):
        """``FeatureInfo`` (index, name, level, channels, reduction) of each map a features_only model returns."""
        return self.config.feature_info

    @property
    def pretrained_cfg(self) -> dict:
        """timm's data / head config of the weight tag (``regnet_zoo.pretrained_cfg``)."""
        return dict(self.pretrained_cfg_items)

    @property
    def num_features(self) -> int:
        return self.config.plan.num_features

    def trainable(self, prefix: tuple = ()):
        """An NNX filter for the parameters that train (all but the frozen stages), for ``nnx.Optimizer(wrt=...)``.

        Frozen stages get zero gradients anyway; leaving them out of the optimizer also keeps weight decay off
        them. ``prefix`` is this backbone's path inside a bigger model, e.g. ``("backbone",)``; parameters outside
        it are trainable.
        """
        k, n = self.config.frozen_stages, len(prefix)

        def trains(path, _):
            if tuple(map(str, path[:n])) != tuple(prefix):
                return True
            return network.frozen_index(path[n:]) > k

        return nnx.All(nnx.Param, trains)

    # -- forward ----------------------------------------------------------------------------------------------
    def _check_concrete(self) -> None:
        abstract = [p for p, v in nnx.to_flat_state(nnx.state(self)) if isinstance(v.get_value(), jax.ShapeDtypeStruct)]
        if abstract:
            raise RuntimeError(f"this model is abstract (built with abstract=True or nnx.eval_shape): {len(abstract)} "
                               f"variables are shapes only (e.g. {'/'.join(map(str, abstract[0]))}); load weights "
                               f"into it first with regnet_zoo_flax.weights.load_canonical(model, state)")

    def __call__(self, x, *, output_hidden_states: bool = False, labels=None):
        stem_kernel = (self.stem if isinstance(self.stem, Conv) else self.stem.conv).kernel
        if isinstance(stem_kernel.get_value(), jax.ShapeDtypeStruct):
            self._check_concrete()
        stages = [getattr(self, s.name) for s in self.config.plan.stages]
        return network.forward(self.config, x, self.stem, stages, self.head, final_conv=self.final_conv,
                               output_hidden_states=output_hidden_states, labels=labels)

    def predict(self, x, *, output_hidden_states: bool = False):
        """Jitted inference: running BN statistics, the model's state is not touched. Compiles once per shape.

        The traversal of the module graph is cached until any module attribute is assigned again (then it is
        redone, a few ms for regnet_040); variable values are read on every call.
        """
        ops.check_input(x, self.config.in_chans, self.config.channels_first)  # before jit turns int64 into int32
        cache = _PREDICT_CACHE.setdefault(self, {})
        version, fn = cache.get(output_hidden_states, (None, None))
        if version == _STRUCTURE[0]:
            return fn(x)
        fn = self.inference_fn(output_hidden_states=output_hidden_states)
        out = fn(x)
        cache[output_hidden_states] = _STRUCTURE[0], fn  # after the call: tracing assigns attributes of copies
        return out

    def inference_fn(self, *, output_hidden_states: bool = False):
        """A jitted ``f(x)`` for repeated inference with this model's current structure.

        The module is traversed once, here; each call only reads the (live) variable values, so weight updates
        made in place (``nnx.Optimizer``, ``load_canonical``) are seen, while structural changes (replacing a
        submodule) need a new ``inference_fn``. BN uses running statistics; the model's state is not touched.
        """
        graphdef, state = nnx.split(self)
        variables = [v for _, v in nnx.to_flat_state(state)]
        leaves, treedef = jax.tree.flatten(state)
        if any(isinstance(v, jax.ShapeDtypeStruct) for v in leaves):
            self._check_concrete()
        assert len(leaves) == len(variables) and all(a is v.get_value() for a, v in zip(leaves, variables))
        jitted = _predict_fn(graphdef, treedef, output_hidden_states)

        def infer(x):
            return jitted([v.get_value() for v in variables], x)

        return infer


_PREDICT_CACHE: "weakref.WeakKeyDictionary[RegNet, dict]" = weakref.WeakKeyDictionary()


@functools.lru_cache(maxsize=32)
def _predict_fn(graphdef, treedef, output_hidden_states: bool):
    def predict(values, x):
        model = nnx.merge(graphdef, jax.tree.unflatten(treedef, values))
        model.eval()
        return model(x, output_hidden_states=output_hidden_states)

    return jax.jit(predict)
