"""The inference fast path: BatchNorm folded into the convolutions and the weights frozen into the graph.

``optimize_for_inference(model)`` (also ``rz.create(..., framework="tf", fast=True)``) returns a ``FrozenRegNet``:
a ``tf.Module`` whose ``__call__`` (and ``serve``, the ``tf.function`` ``tf.saved_model.save`` keeps) takes what
``model`` takes (any batch and spatial size, in its ``data_format``) and returns what it returns in inference mode
(logits, pooled features, or the list of feature maps), within 1e-5 relative. The weights are a snapshot: later
changes to ``model`` do not reach it, and it cannot train.

Why it is faster than the Keras graph on CPU (measured on regnety_040, batch 1, 224x224, 2 cores): with the kernels
as graph constants oneDNN keeps them in its blocked layout between calls instead of reordering every variable on
every call, and each conv + folded BN (+ ReLU) runs as one fused conv with a bias. The squeeze-excitation 1x1
convs on the pooled vector run as matmuls.

The whole design space is supported: a BN that a conv feeds directly is folded into it (post-activation units, and
a pre-activation block's norm2 into conv1); the other pre-activation norms (norm1, norm3) run as a per-channel
multiply-add, and GroupNorm (which depends on each sample) is computed, never folded.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from regnet_zoo.plan import MIN_INPUT_SIZE, ArchPlan

from ._tf import tf
from .activations import activation
from .layers import InputGuard

# A GraphDef (where the frozen weights live) is a protobuf message, capped at 2 GB; leave room for the graph.
MAX_FROZEN_BYTES = 1_800_000_000
BN_EPS = 1e-5


def _bn_affine(state: Mapping[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Inference BN ``prefix`` as a per-channel (scale, shift), in float64."""
    gamma, beta, mean, var = (state[f"{prefix}.{k}"].astype(np.float64)
                              for k in ("weight", "bias", "running_mean", "running_var"))
    scale = gamma / np.sqrt(var + BN_EPS)
    return scale, beta - mean * scale


def _group_norm(x, gamma, beta, groups: int):
    """torch's ``F.group_norm`` on NHWC: per sample over (H, W, the channels of each group), eps 1e-5."""
    c = x.shape[-1]
    shape = tf.shape(x)
    g = tf.reshape(x, tf.stack([shape[0], shape[1], shape[2], groups, c // groups]))
    mean, var = tf.nn.moments(g, axes=(1, 2, 4), keepdims=True)
    g = (g - mean) * tf.math.rsqrt(var + BN_EPS)
    return tf.reshape(g, shape) * gamma + beta


class FrozenRegNet(tf.Module):
    """An inference-only RegNet with folded, constant weights (see the module docstring)."""

    def __init__(self, plan: ArchPlan, state: Mapping[str, np.ndarray], *, num_classes: int,
                 out_indices: tuple[int, ...] | None, data_format: str, in_chans: int, name: str):
        super().__init__(name=name.replace(".", "_"))
        self.num_classes, self.out_indices, self.data_format, self.in_chans = num_classes, out_indices, data_format, \
            in_chans
        # plain attributes, kept out of TensorFlow's object tracking (nothing in them is a variable)
        object.__setattr__(self, "plan", plan)
        object.__setattr__(self, "feature_info", plan.all_feature_info() if out_indices is None else
                           plan.feature_info(out_indices))
        object.__setattr__(self, "_guard", InputGuard(in_chans, data_format, MIN_INPUT_SIZE, plan.name))
        object.__setattr__(self, "_state", dict(state))  # folded into constants while tracing
        shape = (None, in_chans, None, None) if data_format == "channels_first" else (None, None, None, in_chans)
        self.serve = tf.function(self._graph, input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])
        self.serve.get_concrete_function()  # trace now: creation pays for it, not the first call

    def _graph(self, images):
        # Weights enter as Const nodes (tf.constant of numpy inside the trace), never as captured tensors.
        st, plan = self._state, self.plan
        groupnorm, post, act = plan.norm == "groupnorm", not plan.preact, activation(plan.act)
        se_act = activation(plan.se_activation)

        def const(a):
            return tf.constant(np.asarray(a, np.float32))

        def norm(x, p, apply_act=True):
            """A norm no conv feeds directly (pre-activation): BN as a per-channel affine, or GroupNorm."""
            if groupnorm:
                x = _group_norm(x, const(st[f"{p}.weight"]), const(st[f"{p}.bias"]), plan.norm_groups(x.shape[-1]))
            else:
                scale, shift = _bn_affine(st, p)
                x = x * const(scale) + const(shift)
            return act(x) if apply_act else x

        def conv(x, weight, norm_prefix=None, stride=1, dilation=1, apply_act=False):
            """Conv ``weight`` (canonical key), then the norm ``norm_prefix`` (a BN is folded into the conv's
            kernel and bias), then the activation."""
            w = st[weight].astype(np.float64)
            bias = None
            if norm_prefix and not groupnorm:
                scale, bias = _bn_affine(st, norm_prefix)
                w = w * scale[:, None, None, None]
            if w.shape[-1] > 1:
                x = tf.pad(x, [[0, 0], [dilation, dilation], [dilation, dilation], [0, 0]])
            # a grouped kernel (k, k, in / groups, out) makes a grouped conv
            y = tf.nn.conv2d(x, const(np.transpose(w, (2, 3, 1, 0))), stride, "VALID", dilations=dilation)
            if bias is not None:
                y = tf.nn.bias_add(y, const(bias))
            elif norm_prefix:
                y = norm(y, norm_prefix, apply_act=False)
            return act(y) if apply_act else y

        def unit(x, p, stride=1, dilation=1, apply_act=True):
            """timm's ``ConvNormAct`` ``p`` (post-activation networks)."""
            return conv(x, f"{p}.conv.weight", f"{p}.bn", stride, dilation, apply_act)

        def shortcut(x, b):
            if b.shortcut in ("identity", "none"):
                return x if b.shortcut == "identity" else None
            p, stride = f"{b.name}.downsample", b.stride
            if b.shortcut == "avg":
                if b.dilation > 1:  # timm's AvgPool2dSame(2, 1): zero-pad right / bottom, zeros counted
                    x = tf.nn.avg_pool2d(tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]]), 2, 1, "VALID")
                elif stride > 1:  # ceil_mode, count_include_pad=False: TF's "SAME" average
                    x = tf.nn.avg_pool2d(x, 2, stride, "SAME")
                p, stride = f"{p}.1", 1
            return unit(x, p, stride, apply_act=False) if post else conv(x, f"{p}.weight", stride=stride)

        def squeeze_excite(y, p):
            s = tf.reduce_mean(y, axis=(1, 2))  # the 1x1 convs on the pooled vector run as matmuls
            s = se_act(tf.matmul(s, const(st[f"{p}.fc1.weight"][:, :, 0, 0].T)) + const(st[f"{p}.fc1.bias"]))
            s = tf.sigmoid(tf.matmul(s, const(st[f"{p}.fc2.weight"][:, :, 0, 0].T)) + const(st[f"{p}.fc2.bias"]))
            return y * s[:, None, None, :]

        def block(x, b):
            p = b.name
            if post:
                y = unit(unit(x, f"{p}.conv1"), f"{p}.conv2", b.stride, b.dilation)
            else:  # PreBottleneck: norm1 + act on the input (the shortcut's input too); norm2 folds into conv1
                x = norm(x, f"{p}.norm1")
                y = conv(conv(x, f"{p}.conv1.weight", f"{p}.norm2", apply_act=True), f"{p}.conv2.weight",
                         stride=b.stride, dilation=b.dilation)
            if b.se_width:
                y = squeeze_excite(y, f"{p}.se")
            y = unit(y, f"{p}.conv3", apply_act=False) if post else conv(norm(y, f"{p}.norm3"), f"{p}.conv3.weight")
            s = shortcut(x, b)
            y = y if s is None else y + s
            return y if plan.preact or plan.linear_out else act(y)

        x = tf.transpose(images, (0, 2, 3, 1)) if self.data_format == "channels_first" else images
        maps = [unit(x, "stem", 2) if post else conv(x, "stem.weight", stride=2)]
        deepest = max(self.out_indices) if self.out_indices is not None else len(plan.stages)
        for stage in plan.stages[:deepest]:
            x = maps[-1]
            for b in stage.blocks:
                x = block(x, b)
            maps.append(x)
        if self.out_indices is not None:
            out = [maps[i] for i in self.out_indices]
            return [tf.transpose(m, (0, 3, 1, 2)) for m in out] if self.data_format == "channels_first" else out
        last = maps[-1]
        if plan.final_conv_width:
            last = unit(last, "final_conv")
        elif plan.final_act:
            last = act(last)
        pooled = tf.reduce_mean(last, axis=(1, 2))
        if not self.num_classes:
            return pooled
        return tf.matmul(pooled, const(st["head.fc.weight"].T)) + const(st["head.fc.bias"])

    def __call__(self, images):
        """Logits (N, K), pooled features (N, C) or the list of feature maps, for a float image batch."""
        self._guard.check_shape(tuple(images.shape), getattr(images, "dtype", "float32"))
        images = tf.convert_to_tensor(images, tf.float32)
        return self.serve(images)


def check_freezable(plan: ArchPlan, num_classes: int, in_chans: int) -> None:
    """Refuse, before anything is built, a model whose weights cannot be constants of one graph."""
    size = plan.params(num_classes, in_chans) * 4
    if size > MAX_FROZEN_BYTES:
        raise ValueError(f"fast=True freezes the weights into a TensorFlow graph, which protobuf caps at 2 GB; "
                         f"{plan.name} has {size / 1e9:.1f} GB of float32 weights. Use the default path "
                         f"(fast=False), whose tf.function reads the weights from variables.")


def optimize_for_inference(model: Any) -> FrozenRegNet:
    """A ``FrozenRegNet`` computing ``model``'s inference-mode outputs from a snapshot of its weights."""
    from .backbone import RegNetBackbone
    from .weights import export_canonical

    backbone = model if isinstance(model, RegNetBackbone) else model.backbone
    plan = backbone.plan
    features = isinstance(model, RegNetBackbone)
    num_classes = 0 if features else model.num_classes
    check_freezable(plan, num_classes, backbone.in_chans)
    if features and backbone.out_indices is None:
        raise ValueError("fast=True needs a classifier, a headless model (num_classes=0) or a features_only model; "
                         "this keras-hub form backbone has no out_indices")
    return FrozenRegNet(plan, export_canonical(model), num_classes=num_classes,
                        out_indices=tuple(backbone.out_indices) if features else None,
                        data_format=backbone.data_format, in_chans=backbone.in_chans, name=model.name)
