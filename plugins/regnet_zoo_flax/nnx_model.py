"""RegNet X/Y (and the V / Z design space: preact, GroupNorm, activations, avg / absent shortcuts, final_conv) as
Flax NNX modules, built from a regnet-zoo plan.

The variable tree mirrors timm's module names (``stem/conv/kernel``, ``s2/b1/conv2/bn/mean``,
``s3/b4/se/fc1/bias``, ``head/fc/kernel``), so canonical weights map to it by name. The linen form
(``linen_model.py``) is this module through ``nnx.bridge``: ``nnx.split(model, nnx.Param, nnx.BatchStat)`` gives
the ``params`` and ``batch_stats`` of ``RegNetLinen.init``.

Mode is NNX-style state: ``model.train()`` makes every BN use and update batch statistics and turns on dropout
(``head/drop``) and drop-path (``s2/b1/drop_path``) when the model was built with ``drop_rate`` /
``drop_path_rate``; ``model.eval()`` (the default after ``create``) uses the running statistics and no dropout.
Each dropout module draws from its own ``nnx.Rngs`` stream, seeded by ``seed_dropout``.
"""

from __future__ import annotations

import functools
import itertools
import math
import weakref

import jax
import jax.numpy as jnp
from flax import nnx

from regnet_zoo import layer_flow, layer_table
from regnet_zoo.plan import ArchPlan, BlockPlan

from . import network, ops
from .config import NetConfig
from .weights import NORM_MODULES
from .xla_options import jit_inference


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


def dropout(rate: float, *, per_sample: bool = False) -> nnx.Dropout | None:
    """timm's head dropout, or with ``per_sample`` its ``DropPath`` (one draw per sample, kept samples scaled by
    1 / (1 - rate)); None at rate 0. Its key is a placeholder until ``seed_dropout``."""
    if not rate:
        return None
    return nnx.Dropout(rate, broadcast_dims=(1, 2, 3) if per_sample else (), deterministic=True,
                       rngs=nnx.Rngs(dropout=0))


def seed_dropout(model: "RegNet", rngs: nnx.Rngs) -> None:
    """Give every dropout stream of ``model`` its own key from ``rngs`` (its ``dropout`` stream, else its default
    one) and a zero count. Needed after ``nnx.eval_shape``, which leaves them abstract. A model built without
    ``drop_rate`` / ``drop_path_rate`` has none, and is not traversed (40 ms for regnety_040)."""
    if not (model.config.drop_rate or model.config.drop_path_rate):
        return
    for _, var in nnx.to_flat_state(nnx.state(model, nnx.RngState)):
        var.set_value(rngs.dropout() if isinstance(var, nnx.RngKey) else jnp.zeros((), jnp.uint32))


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

    ``frozen=True`` (frozen stages, ``norm_eval``) keeps it at its running statistics in training mode too;
    ``constant=True`` (``norm="frozen_bn"``) also stops the gradient of its scale and bias (timm's
    ``FrozenBatchNorm2d``).
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
        self.act, self.constant = act, False

    def set_view(self, use_running_average: bool | None = None):
        """Used by ``nnx.view(model, use_running_average=...)``."""
        if use_running_average is not None:
            self.use_running_average = use_running_average

    def __call__(self, x: jax.Array) -> jax.Array:
        scale, bias = self.scale[...], self.bias[...]
        if self.constant:
            scale, bias = jax.lax.stop_gradient(scale), jax.lax.stop_gradient(bias)
        y, stats = ops.batch_norm(x, scale, bias, self.mean[...], self.var[...],
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


class Slots(Module):
    """A plain container: the intermediate levels of a block's module paths (``se``, ``downsample``)."""


class Bottleneck(Module):
    """One RegNet block (timm's ``Bottleneck``, or ``PreBottleneck`` in a pre-activation plan), built unit by unit
    off the plan's layer table and run by ``layer_flow.run_block``.

    Each unit's modules sit at the table's (timm's) path inside the block: a post-activation conv + norm (+ act) is
    one ``ConvNormAct`` (``conv1`` holding ``conv`` and ``bn``), a bare conv a ``Conv`` (``conv1``) and the norm
    fused after it a ``Norm`` of its own (``norm2``), a lone norm a ``Norm`` (``norm1``), the squeeze-excitation 1x1
    convs ``Conv``s with bias (``se/fc1``), the avg shortcut's conv ``downsample/1``. Pools, gates and lone
    activations hold no weights.
    """

    def __init__(self, block: BlockPlan, config: NetConfig, *, reduction: int, frozen: bool, rngs: nnx.Rngs):
        plan, n = config.plan, block.name
        self.block, self.reduction, self.plan = block, reduction, plan
        self.first_norm = ""  # path of a norm of this block: its mode picks the grouped conv's training impl
        norm = dict(frozen=frozen, axis_name=config.axis_name)
        for u in layer_flow.units(layer_table.block_layers(plan, block, reduction)):
            layer, act = u.layer, u.activation
            if u.pooled:  # squeeze-excitation
                self._put(layer.name, Conv(layer.in_width, layer.out_width, 1, use_bias=True, rngs=rngs))
                continue
            if layer.kind == "conv":
                conv = dict(stride=layer.stride, groups=layer.groups, dilation=layer.dilation, rngs=rngs)
                if layer.kernel > 1:  # the block's spatial (grouped) conv: the impl chosen for this block
                    conv.update(impl=config.conv_impl(n), train_impl=config.conv_impl(n, True))
                if u.conv_norm_act:
                    self._put(u.conv_norm_act, ConvNormAct(
                        layer.in_width, layer.out_width, layer.kernel, act=act, where=u.conv_norm_act,
                        zero_init_bn=config.zero_init_last and u.norm.zero_init,
                        norm_groups=config.norm_groups(layer.out_width), **norm, **conv))
                    self.first_norm = self.first_norm or u.norm.name
                    continue
                self._put(layer.name, Conv(layer.in_width, layer.out_width, layer.kernel, **conv))
            norm_layer = u.norm if layer.kind == "conv" else layer
            if norm_layer is not None and norm_layer.kind == "norm":
                self._put(norm_layer.name, Norm(norm_layer.out_width, norm_groups=config.norm_groups(
                    norm_layer.out_width), act=act, where=norm_layer.name, **norm))
                self.first_norm = self.first_norm or norm_layer.name
        rate = plan.drop_path_rates(config.drop_path_rate)[n] if block.shortcut != "none" else 0.0
        self.drop_path = dropout(rate, per_sample=True)  # timm drops the residual branch only where there is a sum

    def _put(self, name: str, module: Module) -> None:
        """``module`` at ``name`` (a table name, ``s1.b1.se.fc1``) relative to this block, creating ``Slots``."""
        *parents, last = name.removeprefix(f"{self.block.name}.").split(".")
        owner = self
        for p in parents:
            if not hasattr(owner, p):
                setattr(owner, p, Slots())
            owner = getattr(owner, p)
        setattr(owner, last, module)

    def _get(self, name: str) -> Module:
        owner = self
        for p in name.removeprefix(f"{self.block.name}.").split("."):
            owner = getattr(owner, p)
        return owner

    def __call__(self, x: jax.Array) -> jax.Array:
        return layer_flow.run_block(self.plan, self.block, self.reduction, x, _BlockOps(self))


class _BlockOps:
    """``layer_flow.NetworkOps`` on one ``Bottleneck``'s modules."""

    def __init__(self, block: Bottleneck):
        self.block = block
        mode = block._get(block.first_norm) if block.first_norm else None
        self.training = mode is not None and not mode.use_running_average

    def unit(self, u, x):
        layer, act = u.layer, u.activation
        if u.pooled:
            conv = self.block._get(layer.name)
            return ops.activation(jnp.dot(x, conv.kernel[...][0, 0].astype(x.dtype)) + conv.bias[...].astype(x.dtype),
                                  act)
        if layer.kind == "conv":
            if u.conv_norm_act:
                return self.block._get(u.conv_norm_act)(x)
            x = self.block._get(layer.name)(x, training=self.training)
            return self.block._get(u.norm.name)(x) if u.norm is not None else ops.activation(x, act)
        if layer.kind == "norm":
            return self.block._get(layer.name)(x)
        if layer.kind == "pool":
            return ops.avg_downsample(x, layer.stride, layer.dilation)
        if layer.kind == "act":
            return ops.activation(x, layer.act)
        raise NotImplementedError(f"the Flax model has no {layer.kind!r} layer ({layer.name})")

    def squeeze(self, x, unit):
        return jnp.mean(x.astype(ops.acc_dtype(x.dtype)), axis=(1, 2), keepdims=True).astype(x.dtype)

    def gate(self, x, s, unit):
        return x * jax.nn.sigmoid(s)

    def add(self, y, shortcut, block):
        drop_path = self.block.drop_path
        return (y if drop_path is None else drop_path(y)) + shortcut


class Stage(Module):
    """Blocks ``b1 .. bN`` of one stage (attribute names = timm's, so paths match the canonical keys)."""

    def __init__(self, blocks: tuple[BlockPlan, ...], config: NetConfig, *, reduction: int, frozen: bool,
                 rngs: nnx.Rngs):
        """``reduction``: that of the stage's input map."""
        self.depth = len(blocks)
        for j, block in enumerate(blocks, start=1):
            setattr(self, f"b{j}", Bottleneck(block, config, reduction=reduction, frozen=frozen, rngs=rngs))
            reduction *= block.stride

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
    """``head.drop`` (training mode only) and ``head.fc`` (global pooling is done by the network)."""

    def __init__(self, in_features: int, num_classes: int, *, drop_rate: float = 0.0, rngs: nnx.Rngs):
        self.drop = dropout(drop_rate)
        self.fc = Linear(in_features, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc(x if self.drop is None else self.drop(x))


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
        reduction = 2
        for stage in plan.stages:
            setattr(self, stage.name, Stage(stage.blocks, config, reduction=reduction,
                                            frozen=config.bn_frozen(stage.index), rngs=rngs))
            reduction *= math.prod(b.stride for b in stage.blocks)
        width = plan.final_conv_width  # timm's ConvNormAct after s4; see network.final_layer
        self.final_conv = ConvNormAct(plan.stages[-1].out_width, width, 1, act=plan.act,
                                      norm_groups=config.norm_groups(width), frozen=config.bn_frozen(5), axis_name=a,
                                      where="final_conv", rngs=rngs) if width else None
        self.head = Head(plan.num_features, config.num_classes, drop_rate=config.drop_rate,
                         rngs=rngs) if config.has_head else None
        if config.frozen_bn:  # timm's freeze_batch_norm_2d; config.bn_frozen already keeps the running statistics
            for _, module in nnx.iter_graph(self):
                if isinstance(module, BatchNorm):
                    module.constant = True

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
        """An NNX filter for the parameters that train (all but the frozen stages, and the BatchNorm scales and biases
        of ``norm="frozen_bn"``), for ``nnx.Optimizer(wrt=...)``.

        Frozen ones get zero gradients anyway; leaving them out of the optimizer also keeps weight decay off
        them. ``prefix`` is this backbone's path inside a bigger model, e.g. ``("backbone",)``; parameters outside
        it are trainable.
        """
        k, n = self.config.frozen_stages, len(prefix)
        frozen_bn = self.config.frozen_bn and self.config.plan.norm != "groupnorm"

        def trains(path, _):
            if tuple(map(str, path[:n])) != tuple(prefix):
                return True
            if frozen_bn and len(path) > n + 1 and str(path[-2]) in NORM_MODULES:
                return False
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

    return jit_inference(predict)
