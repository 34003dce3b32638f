"""The inference fast path: BatchNorm folded into the convolutions and the weights frozen into the graph, in float32
or bfloat16.

``optimize_for_inference(model, precision="fp32")`` (also ``rz.create(..., framework="tf", fast=True | "bf16")`` and
``model.optimize_for_inference(precision)``) returns a ``FrozenRegNet``: a ``tf.Module`` whose ``__call__`` (and
``serve``, the ``tf.function`` ``tf.saved_model.save`` keeps) takes what ``model`` takes (a float32 batch of any
size, in its ``data_format``) and returns what it returns in inference mode (float32 logits, pooled features, or the
list of feature maps), within 1e-5 relative for ``"fp32"``. The weights are a snapshot: later changes to ``model`` do
not reach it, and it cannot train.

``"bf16"`` is the same graph in bfloat16: BN is folded in float64 as for fp32, the folded kernels and biases are stored
as bfloat16 constants, the input is cast to bfloat16 after the input check, and every conv, matmul, activation and
squeeze-excitation runs in bfloat16; GroupNorm statistics, the global pool and the classifier run in float32, and the
outputs are float32 (logits within about 1e-2 relative of fp32; feature maps are the bfloat16 activations). It is meant
for GPUs and CPUs with AMX (``lscpu`` flag ``amx_bf16``), where oneDNN runs the convs on the AMX tiles, helps on
AVX-512 BF16 CPUs, and warns on a CPU with neither (emulated bf16 is slower than fp32). Measured on a shared 2-core
AMX CPU (TF 2.21, batch 8, 224x224): regnety_040 2.7-3.1x the fp32 fast path, regnetx_004 1.8-2.0x (its oneDNN convs
are 2.6x faster, but per-op dispatch and the many small 7x7 convs, far below the AMX peak, do not shrink with
bf16); regnetz_005 (depthwise convs) about 1.3x. A bf16 model exports to SavedModel, not TFLite.

Why it is faster than the Keras graph on CPU (measured on regnety_040, batch 1, 224x224, 2 cores): with the kernels
as graph constants oneDNN keeps them in its blocked layout between calls instead of reordering every variable on
every call, and each conv + folded BN (+ activation) runs as one fused conv with a bias; the residual sum is an AddN,
which grappler fuses into the block's last conv too (it left an AddV2 unfused, even with a fixed input shape). The
squeeze-excitation 1x1 convs on the pooled vector run as matmuls.

The whole design space is supported: a BN that a conv feeds directly is folded into it (post-activation units, and
a pre-activation block's norm2 into conv1); the other pre-activation norms (norm1, norm3) run as a per-channel
multiply-add, and GroupNorm (which depends on each sample) is computed, never folded.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from regnet_zoo import cpu, layer_flow, layer_table
from regnet_zoo.plan import MIN_INPUT_SIZE, ArchPlan

from ._tf import tf
from .activations import activation
from .layers import InputGuard, global_pool

# A GraphDef (where the frozen weights live) is a protobuf message, capped at 2 GB; leave room for the graph.
MAX_FROZEN_BYTES = 1_800_000_000
BN_EPS = 1e-5
PRECISIONS = ("fp32", "bf16")
# Activations after which the residual sum stays an AddV2 (which grappler leaves unfused). TF 2.21's
# grappler (oneDNN build) rewrites Conv2D + BiasAdd + AddN + activation into one _FusedConv2D, but for mish its CPU
# kernel does not implement it ("Fusion is not implemented: [BiasAdd,Add,Mish]") and for leaky_relu it computes a
# wrong result (17% off in a 1x1 conv test: the 0.01 slope is not what the fused kernel applies).
NO_FUSED_ADD = frozenset({"mish", "leaky_relu"})


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


class _FrozenOps:
    """``layer_flow.NetworkOps`` on frozen weights. Weights enter as Const nodes (``tf.constant`` of numpy inside the
    trace), never as captured tensors; BN is folded in float64, then every constant is stored in ``dtype`` (float32
    or bfloat16), except GroupNorm's affine and the classifier, which stay float32."""

    def __init__(self, plan: ArchPlan, state: Mapping[str, np.ndarray], dtype, fused_add: bool):
        self.plan, self.state, self.dtype = plan, state, dtype
        self.fused_add = fused_add and plan.act not in NO_FUSED_ADD

    def const(self, a, dtype=None):
        return tf.constant(np.asarray(a, np.float32), dtype or self.dtype)

    def unit(self, u: layer_flow.Unit, x):
        layer = u.layer
        if u.pooled:  # SE 1x1 on the pooled vector: a matmul
            x = tf.matmul(x, self.const(self.state[f"{u.name}.weight"][:, :, 0, 0].T))
            x += self.const(self.state[f"{u.name}.bias"])
        elif layer.kind == "conv":
            x = self._conv(x, layer, u.norm)
        elif layer.kind == "norm":
            x = self._norm(x, layer.name)
        elif layer.kind == "pool":
            x = self._pool(x, layer)
        elif layer.kind == "linear":  # in float32
            x = tf.matmul(x, self.const(self.state[f"{u.name}.weight"].T, tf.float32))
            x += self.const(self.state[f"{u.name}.bias"], tf.float32)
        elif layer.kind != "act":
            raise NotImplementedError(f"the TensorFlow fast path has no {layer.kind!r} layer ({layer.name})")
        return activation(u.activation)(x) if u.activation is not None else x

    def squeeze(self, x, unit):
        return tf.reduce_mean(x, axis=(1, 2))

    def gate(self, x, s, unit):
        return x * tf.sigmoid(s)[:, None, None, :]

    def add(self, y, shortcut, block):
        return tf.math.add_n([y, shortcut]) if self.fused_add else y + shortcut

    def _norm(self, x, name: str):
        """A norm no conv is folded with: BN as a per-channel affine, or GroupNorm (its statistics in float32)."""
        if self.plan.norm == "groupnorm":
            gamma, beta = (self.const(self.state[f"{name}.{k}"], tf.float32) for k in ("weight", "bias"))
            return tf.cast(_group_norm(tf.cast(x, tf.float32), gamma, beta, self.plan.norm_groups(x.shape[-1])),
                           self.dtype)
        scale, shift = _bn_affine(self.state, name)
        return x * self.const(scale) + self.const(shift)

    def _conv(self, x, layer, norm):
        """The conv ``layer`` with PyTorch's symmetric padding, then ``norm`` (a BN is folded into its kernel and
        bias; a GroupNorm is computed)."""
        w, bias = self.state[f"{layer.name}.weight"].astype(np.float64), None
        if norm is not None and self.plan.norm != "groupnorm":
            scale, bias = _bn_affine(self.state, norm.name)
            w = w * scale[:, None, None, None]
        pad = layer.dilation * (layer.kernel // 2)
        if pad:
            x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        # a grouped kernel (k, k, in / groups, out) makes a grouped conv
        y = tf.nn.conv2d(x, self.const(np.transpose(w, (2, 3, 1, 0))), layer.stride, "VALID",
                         dilations=layer.dilation)
        if bias is not None:
            return tf.nn.bias_add(y, self.const(bias))
        return self._norm(y, norm.name) if norm is not None else y

    @staticmethod
    def _pool(x, layer):
        """timm's shortcut pool: ``AvgPool2dSame(2, 1)`` when dilated (zero-pad right / bottom, zeros counted),
        ``AvgPool2d(2, stride, ceil_mode, count_include_pad=False)`` (TF's "SAME" average) when strided."""
        if layer.dilation > 1:
            return tf.nn.avg_pool2d(tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]]), 2, 1, "VALID")
        return tf.nn.avg_pool2d(x, 2, layer.stride, "SAME") if layer.stride > 1 else x


class FrozenRegNet(tf.Module):
    """An inference-only RegNet with folded, constant weights (see the module docstring); ``precision`` is the
    compute precision, ``"fp32"`` or ``"bf16"`` (inputs and outputs are float32 either way)."""

    def __init__(self, plan: ArchPlan, state: Mapping[str, np.ndarray], *, num_classes: int,
                 out_indices: tuple[int, ...] | None, data_format: str, in_chans: int, name: str,
                 precision: str = "fp32", global_pool: str = "avg"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")
        super().__init__(name=name.replace(".", "_"))
        self.num_classes, self.out_indices, self.data_format, self.in_chans = num_classes, out_indices, data_format, \
            in_chans
        self.precision, self.global_pool = precision, global_pool
        # plain attributes, kept out of TensorFlow's object tracking (nothing in them is a variable)
        object.__setattr__(self, "plan", plan)
        object.__setattr__(self, "feature_info", plan.all_feature_info() if out_indices is None else
                           plan.feature_info(out_indices))
        object.__setattr__(self, "_guard", InputGuard(in_chans, data_format, MIN_INPUT_SIZE, plan.name))
        object.__setattr__(self, "_state", dict(state))  # folded into constants while tracing
        shape = (None, in_chans, None, None) if data_format == "channels_first" else (None, None, None, in_chans)
        self.serve = tf.function(self._graph, input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])
        self.serve.get_concrete_function()  # trace now: creation pays for it, not the first call

    def _graph(self, images, fused_add: bool = True):
        """The network on a float32 batch, walked off the layer table (``regnet_zoo.layer_flow``). ``fused_add``:
        residual sums as AddN, which TF's oneDNN grappler fuses into conv3 (a sum post-op; an AddV2 it leaves
        unfused); the TFLite export passes False, as its converter turns an AddN into ADD_N plus a separate
        activation, an AddV2 into one ADD with the activation fused."""
        plan = self.plan
        ops = _FrozenOps(plan, self._state, tf.bfloat16 if self.precision == "bf16" else tf.float32, fused_add)
        x = tf.cast(images, ops.dtype)
        x = tf.transpose(x, (0, 2, 3, 1)) if self.data_format == "channels_first" else x
        deepest = max(self.out_indices) if self.out_indices is not None else len(plan.stages)
        maps = layer_flow.run_trunk(plan, x, ops, in_chans=self.in_chans, stages=deepest)
        if self.out_indices is not None:
            out = [maps[i] for i in self.out_indices]
            out = [tf.transpose(m, (0, 3, 1, 2)) for m in out] if self.data_format == "channels_first" else out
            return [tf.cast(m, tf.float32) for m in out]
        last = maps[-1]
        for u in layer_flow.units(layer_table.final_layers(plan)):
            last = ops.unit(u, last)
        pooled = global_pool(tf.cast(last, tf.float32), self.global_pool)  # the pool and the classifier in float32
        for u in layer_flow.units(layer_table.head_layers(plan, self.num_classes)):
            pooled = ops.unit(u, pooled)
        return pooled

    def __call__(self, images):
        """Logits (N, K), pooled features (N, C) or the list of feature maps, for a float image batch."""
        self._guard.check_shape(tuple(images.shape), getattr(images, "dtype", "float32"))
        images = tf.convert_to_tensor(images, tf.float32)
        return self.serve(images)


def _fast_option(precision: str) -> str:
    return "fast=True" if precision == "fp32" else f"fast={precision!r}"


def check_freezable(plan: ArchPlan, num_classes: int, in_chans: int, precision: str = "fp32") -> None:
    """Refuse, before anything is built, a model whose weights cannot be constants of one graph."""
    itemsize, dtype = (2, "bfloat16") if precision == "bf16" else (4, "float32")
    size = plan.params(num_classes, in_chans) * itemsize
    if size > MAX_FROZEN_BYTES:
        raise ValueError(f"{_fast_option(precision)} freezes the weights into a TensorFlow graph, which protobuf caps "
                         f"at 2 GB; {plan.name} has {size / 1e9:.1f} GB of {dtype} weights. Use the default path "
                         f"(fast=False), whose tf.function reads the weights from variables.")


def optimize_for_inference(model: Any, precision: str = "fp32") -> FrozenRegNet:
    """A ``FrozenRegNet`` computing ``model``'s inference-mode outputs from a snapshot of its weights.

    ``precision="bf16"`` stores the folded weights and computes in bfloat16 (outputs are returned as float32, within
    about 1e-2 relative of fp32); it is meant for GPUs and CPUs with AMX (``lscpu`` flag ``amx_bf16``), helps on
    AVX-512 BF16 CPUs, and warns on a CPU with neither (emulated bf16 is slower than fp32).
    """
    return _optimize_for_inference(model, precision)


def _optimize_for_inference(model: Any, precision: str) -> FrozenRegNet:
    """``optimize_for_inference``, called by it and by the models' method of that name (one frame below the user's
    call either way, which is where the warning points)."""
    from .backbone import RegNetBackbone
    from .weights import export_canonical

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")
    backbone = model if isinstance(model, RegNetBackbone) else model.backbone
    plan = backbone.plan
    features = isinstance(model, RegNetBackbone)
    num_classes = 0 if features else model.num_classes
    check_freezable(plan, num_classes, backbone.in_chans, precision)
    if features and backbone.out_indices is None:
        raise ValueError(f"{_fast_option(precision)} needs a classifier, a headless model (num_classes=0) or a "
                         f"features_only model; this keras-hub form backbone has no out_indices")
    if precision == "bf16" and not tf.config.list_logical_devices("GPU"):
        cpu.warn_if_bf16_is_emulated(stacklevel=3)
    return FrozenRegNet(plan, export_canonical(model), num_classes=num_classes,
                        out_indices=tuple(backbone.out_indices) if features else None,
                        data_format=backbone.data_format, in_chans=backbone.in_chans, name=model.name,
                        precision=precision, global_pool="avg" if features else model.global_pool)
