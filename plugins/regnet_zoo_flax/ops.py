"""Pure JAX functions shared by the NNX and the linen modules, so both forms compute the same numbers.

Layout is NHWC with HWIO kernels. Every 3x3 conv pads symmetrically ((1, 1), (1, 1)) and runs VALID, like
PyTorch; ``"SAME"`` would pad bottom/right only at stride 2 and break parity with PyTorch weights.

Batch norm follows PyTorch's semantics exactly: batch statistics normalise with the *biased* variance while the
running variance is updated with the *unbiased* one (flax's own ``BatchNorm`` uses the biased variance for both);
``momentum`` is the Flax convention (0.9 == torch's 0.1).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from regnet_zoo.contract import check_image_batch, loss_kind

# How a grouped 3x3 conv is expressed (see grouped_conv.py for the measurements behind the default choice).
CONV_IMPLS = ("xla", "split", "loop")

_DN = ("NHWC", "HWIO", "NHWC")


def acc_dtype(dtype):
    """The dtype statistics and reductions run in: float32, or float64 for a float64 compute dtype."""
    return jnp.promote_types(dtype, jnp.float32)


def _pad(kernel_size: int, dilation: int = 1) -> tuple[tuple[int, int], tuple[int, int]]:
    p = dilation * (kernel_size // 2)
    return (p, p), (p, p)


def _dense_conv(x: jax.Array, kernel: jax.Array, stride: int, dilation: int = 1) -> jax.Array:
    return lax.conv_general_dilated(x, kernel, (stride, stride), _pad(kernel.shape[0], dilation),
                                    rhs_dilation=(dilation, dilation), dimension_numbers=_DN)


def _loop_conv(x: jax.Array, kernel: jax.Array, stride: int, groups: int, dilation: int = 1) -> jax.Array:
    """Grouped conv as a ``fori_loop`` over groups: one dense conv on dynamic channel slices per iteration.

    Runs as fast as the unrolled per-group convs, but compiles one conv instead of ``groups`` of them.
    """
    n, h, w, _ = x.shape
    cin, cout = x.shape[-1] // groups, kernel.shape[-1] // groups
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1  # 3x3, padding = dilation

    def body(g, y):
        xg = lax.dynamic_slice_in_dim(x, g * cin, cin, axis=3)
        kg = lax.dynamic_slice_in_dim(kernel, g * cout, cout, axis=3)
        return lax.dynamic_update_slice_in_dim(y, _dense_conv(xg, kg, stride, dilation), g * cout, axis=3)

    return lax.fori_loop(0, groups, body, jnp.zeros((n, ho, wo, kernel.shape[-1]), x.dtype))


def conv2d(x: jax.Array, kernel: jax.Array, *, stride: int = 1, groups: int = 1, impl: str = "xla",
           bias: jax.Array | None = None, dilation: int = 1) -> jax.Array:
    """NHWC conv with an HWIO kernel of shape (k, k, in / groups, out), PyTorch padding (dilation * (k // 2) each
    side; ``dilation`` > 1 only for k > 1, as ``output_stride`` plans give it).

    ``impl`` only matters for grouped convs: ``"xla"`` = one ``feature_group_count`` conv; ``"split"`` = one dense
    conv per group over channel slices, concatenated (unrolled); ``"loop"`` = the same in a ``fori_loop`` (one
    compiled conv). All three read the same single kernel, so the parameter tree does not depend on the choice.
    """
    kernel = kernel.astype(x.dtype)
    if kernel.shape[0] == 1 and groups == 1:
        if stride > 1:
            x = x[:, ::stride, ::stride, :]
        # as one 2-D matmul: XLA:CPU runs it 1.1-1.4x faster than the same dot on the 4-D map (measured)
        y = jnp.dot(x.reshape(-1, x.shape[-1]), kernel[0, 0]).reshape(*x.shape[:-1], kernel.shape[-1])
    elif groups == 1 or impl == "xla":
        y = lax.conv_general_dilated(x, kernel, (stride, stride), _pad(kernel.shape[0], dilation),
                                     rhs_dilation=(dilation, dilation), dimension_numbers=_DN,
                                     feature_group_count=groups)
    elif impl == "split":
        cin, cout = x.shape[-1] // groups, kernel.shape[-1] // groups
        y = jnp.concatenate([_dense_conv(x[..., g * cin:(g + 1) * cin], kernel[..., g * cout:(g + 1) * cout], stride,
                                         dilation) for g in range(groups)], axis=-1)
    elif impl == "loop":
        if kernel.shape[0] != 3:
            raise ValueError("impl='loop' is written for RegNet's 3x3 grouped convs")
        y = _loop_conv(x, kernel, stride, groups, dilation)
    else:
        raise ValueError(f"unknown conv impl {impl!r}; expected one of {CONV_IMPLS}")
    if bias is not None:
        y = y + bias.astype(y.dtype)
    return y


def batch_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, mean: jax.Array, var: jax.Array, *,
               use_running_average: bool, momentum: float = 0.9, epsilon: float = 1e-5,
               axis_name: str | None = None, where: str = "BatchNorm"):
    """PyTorch-semantics batch norm over (N, H, W) of an NHWC ``x``.

    Returns ``(y, None)`` with running statistics, or ``(y, (new_mean, new_var))`` with batch statistics; then the
    running variance moves towards the *unbiased* batch variance, as ``torch.nn.BatchNorm2d`` does. With
    ``axis_name`` the statistics are averaged over that mapped axis (``pmap`` / ``shard_map``), exactly as if the
    whole global batch were on one device. Statistics are computed in float32 (float64 for float64 compute)
    whatever the compute dtype.
    """
    acc = acc_dtype(x.dtype)
    scale, bias, mean, var = (v.astype(acc) for v in (scale, bias, mean, var))
    if use_running_average:
        a = scale * lax.rsqrt(var + epsilon)
        return (x - mean.astype(x.dtype)) * a.astype(x.dtype) + bias.astype(x.dtype), None
    count = x.shape[0] * x.shape[1] * x.shape[2]
    if axis_name is not None:
        count *= lax.axis_size(axis_name)
    if count < 2:
        raise ValueError(f"{where}: training-mode batch norm needs more than one value per channel, got input "
                         f"{tuple(x.shape)} (batch x height x width = {count}); use a larger batch or image, or "
                         f"put the model in inference mode (model.eval() / train=False)")
    xf = x.astype(acc)
    batch_mean = jnp.mean(xf, axis=(0, 1, 2))
    if axis_name is not None:
        batch_mean = lax.pmean(batch_mean, axis_name)
    batch_var = jnp.mean(jnp.square(xf - batch_mean), axis=(0, 1, 2))  # two-pass: no cancellation
    if axis_name is not None:
        batch_var = lax.pmean(batch_var, axis_name)
    a = scale * lax.rsqrt(batch_var + epsilon)
    y = (x - batch_mean.astype(x.dtype)) * a.astype(x.dtype) + bias.astype(x.dtype)
    batch_mean, unbiased = lax.stop_gradient(batch_mean), lax.stop_gradient(batch_var * (count / (count - 1)))
    new_mean = momentum * mean + (1.0 - momentum) * batch_mean
    new_var = momentum * var + (1.0 - momentum) * unbiased
    return y, (new_mean, new_var)


# The plan's activations (regnet_zoo.variant.ACTIVATIONS) as the functions timm builds for those names, with torch's
# constants: "gelu" is the exact erf form, "gelu_tanh" its tanh approximation, "quick_gelu" x * sigmoid(1.702 x),
# "leaky_relu" slope 0.01. This plugin's one name -> function table (NNX and linen both go through ``activation``).
ACTIVATIONS = {
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "mish": jax.nn.mish,
    "relu6": jax.nn.relu6,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, negative_slope=0.01),
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda x: x,
}


def activation(x: jax.Array, act: str | None) -> jax.Array:
    """``x`` through the plan's activation ``act`` (``ACTIVATIONS``; ``None``: none); ``ValueError`` for any name
    the table does not hold."""
    if act is None:
        return x
    fn = ACTIVATIONS.get(act)
    if fn is None:
        raise ValueError(f"unknown activation {act!r}; expected one of {', '.join(ACTIVATIONS)}")
    return fn(x)


def group_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, num_groups: int, epsilon: float = 1e-5) -> jax.Array:
    """``torch.nn.GroupNorm`` on NHWC ``x``: per sample, over (H, W, the channels of each group), biased variance;
    statistics in float32 (float64 for float64 compute)."""
    n, h, w, c = x.shape
    acc = acc_dtype(x.dtype)
    xg = x.astype(acc).reshape(n, h, w, num_groups, c // num_groups)
    mean = jnp.mean(xg, axis=(1, 2, 4), keepdims=True)
    var = jnp.mean(jnp.square(xg - mean), axis=(1, 2, 4), keepdims=True)  # two-pass: no cancellation
    y = ((xg - mean) * lax.rsqrt(var + epsilon)).reshape(n, h, w, c)
    return (y * scale.astype(acc) + bias.astype(acc)).astype(x.dtype)


def _ceil_counts(size: int, stride: int) -> tuple[int, np.ndarray]:
    """Output length and per-window element counts of a size-2 window, ``ceil_mode=True``, no padding (torch)."""
    out = -(-(size - 2) // stride) + 1
    if (out - 1) * stride >= size:  # torch: the last window must start inside the input
        out -= 1
    starts = np.arange(out) * stride
    return out, (np.minimum(starts + 2, size) - starts).astype(np.float64)


def avg_downsample(x: jax.Array, stride: int, dilation: int = 1) -> jax.Array:
    """The pool of timm's ``downsample_avg`` (NHWC): with ``stride`` > 1 ``AvgPool2d(2, stride, ceil_mode=True,
    count_include_pad=False)`` (a partial last window is divided by its real element count); in a dilated block
    (stride 1, dilation > 1) ``AvgPool2dSame(2, 1)``: zero padding of one row / column at the bottom / right,
    every window divided by 4; otherwise the identity."""
    if stride == 1 and dilation == 1:
        return x
    acc = acc_dtype(x.dtype)
    xf = x.astype(acc)
    if dilation > 1:  # timm: avg_stride 1, explicit "same" zero padding counted in the mean
        s = lax.reduce_window(xf, 0.0, lax.add, (1, 2, 2, 1), (1, 1, 1, 1), ((0, 0), (0, 1), (0, 1), (0, 0)))
        return (s / 4.0).astype(x.dtype)
    (ho, ch), (wo, cw) = _ceil_counts(x.shape[1], stride), _ceil_counts(x.shape[2], stride)
    pad = ((0, 0), (0, (ho - 1) * stride + 2 - x.shape[1]), (0, (wo - 1) * stride + 2 - x.shape[2]), (0, 0))
    s = lax.reduce_window(xf, 0.0, lax.add, (1, 2, 2, 1), (1, stride, stride, 1), pad)
    return (s / jnp.asarray(np.outer(ch, cw)[None, :, :, None], acc)).astype(x.dtype)


def global_pool(x: jax.Array, kind: str = "avg") -> jax.Array:
    """(N, H, W, C) -> (N, C): timm's ``"avg"`` (in float32, or float64), ``"max"`` or ``"avgmax"`` (their mean)."""
    avg = jnp.mean(x.astype(acc_dtype(x.dtype)), axis=(1, 2))
    if kind == "avg":
        return avg.astype(x.dtype)
    peak = jnp.max(x, axis=(1, 2))
    return peak if kind == "max" else (0.5 * (avg + peak.astype(avg.dtype))).astype(x.dtype)


def loss_from_labels(logits: jax.Array, labels) -> jax.Array:
    """HF's loss by the host's rule (``regnet_zoo.contract.loss_kind``): MSE for one output, cross-entropy for
    integer class indices, BCE-with-logits for float multi-hot labels."""
    logits = logits.astype(acc_dtype(logits.dtype))
    labels = jnp.asarray(labels)
    kind = loss_kind(logits.shape, labels.shape, labels.dtype)
    if kind == "mse":
        return jnp.mean(jnp.square(logits.reshape(-1) - labels.reshape(-1).astype(logits.dtype)))
    if kind == "cross_entropy":
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1))
    y = labels.astype(logits.dtype)  # BCE with logits, stable form: max(x, 0) - x * y + log(1 + exp(-|x|))
    return jnp.mean(jnp.maximum(logits, 0) - logits * y + jnp.log1p(jnp.exp(-jnp.abs(logits))))


def check_input(x, in_chans: int, channels_first: bool) -> None:
    """The host's input contract (``regnet_zoo.contract``) on shapes and dtype only, so it raises before (or
    while) tracing, never inside compiled code."""
    check_image_batch(tuple(getattr(x, "shape", ())), getattr(x, "dtype", "float32"), in_chans=in_chans,
                      channels_first=channels_first)
