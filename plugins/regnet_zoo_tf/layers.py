"""The Keras layers RegNet needs beyond keras.layers: PyTorch-exact BN, a fast grouped conv, timm's DropPath and
classifier pooling, an input guard.

All are registered serializable under the ``regnet_zoo`` package, so saved models reload without custom_objects.
"""

from __future__ import annotations

from regnet_zoo.contract import check_image_batch
from regnet_zoo.plan import MIN_INPUT_SIZE

from ._tf import keras, tf

PACKAGE = "regnet_zoo"
GROUPED_CONV_IMPLS = ("auto", "grouped", "split")


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchNorm(keras.layers.BatchNormalization):
    """``BatchNormalization`` with PyTorch's semantics (timm's ``nn.BatchNorm2d``, momentum 0.1, eps 1e-5).

    Differences from Keras' layer, all deliberate:

    * the moving variance is updated with the *unbiased* batch variance (``n / (n - 1)``), as torch does, while the
      output is normalised with the biased one (both libraries agree there);
    * ``norm_eval=True`` keeps the layer in inference mode even when called with ``training=True`` (mmdet's
      ``norm_eval``: statistics frozen, affine parameters still trainable);
    * ``synchronized=True`` all-reduces sums and counts over the replicas of a ``tf.distribute`` strategy, so every
      replica normalises with, and stores, the global batch statistics.

    As in Keras, a layer with ``trainable=False`` always runs in inference mode, as one ``FusedBatchNormV3`` op
    unless ``fused_inference=False`` (Keras' decomposed form: for an activation TF cannot fuse with it, see
    ``activations.NO_FUSED_BN``).
    """

    def __init__(self, momentum=0.9, epsilon=1e-5, norm_eval=False, fused_inference=True, **kwargs):
        super().__init__(momentum=momentum, epsilon=epsilon, **kwargs)
        self.norm_eval = bool(norm_eval)
        self.fused_inference = bool(fused_inference)

    def call(self, inputs, training=None, mask=None):
        if mask is not None:
            raise ValueError(f"{self.name}: masks are not supported")
        if not (training and self.trainable and not self.norm_eval):
            return self._inference(inputs)
        dtype = keras.backend.result_type(inputs.dtype, "float32")
        x = tf.cast(inputs, dtype)
        gamma, beta = tf.cast(self.gamma, dtype), tf.cast(self.beta, dtype)
        if self._fusable(x) and not self._replicated():
            # TF's fused op normalises with the biased batch variance and returns the unbiased one: torch's pair.
            out, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=self.epsilon,
                                                                   data_format="NHWC", is_training=True)
        else:
            mean, variance, count = self._batch_moments(x)
            unbiased = variance * (count / tf.maximum(count - 1.0, 1.0))
            out = tf.nn.batch_normalization(x, mean, variance, offset=beta, scale=gamma,
                                            variance_epsilon=self.epsilon)
        m = self.momentum
        self.moving_mean.assign(tf.cast(self.moving_mean, dtype) * m + mean * (1.0 - m))
        self.moving_variance.assign(tf.cast(self.moving_variance, dtype) * m + unbiased * (1.0 - m))
        return tf.cast(out, self.compute_dtype)

    def _fusable(self, x) -> bool:
        return len(x.shape) == 4 and self.axis in (-1, 3)

    def _replicated(self) -> bool:
        if not self.synchronized:
            return False
        ctx = tf.distribute.get_replica_context()
        return ctx is not None and ctx.num_replicas_in_sync > 1

    def _inference(self, inputs):
        # One FusedBatchNormV3 op, not Keras' decomposed rsqrt/mul/add: grappler fuses it with the preceding conv
        # (and ReLU) on CPU, which is most of the speed difference to an unfused graph.
        if not (self.fused_inference and self._fusable(inputs)):
            return super().call(inputs, training=False)
        dtype = "float32" if inputs.dtype in (tf.float16, tf.bfloat16) else inputs.dtype
        out, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.cast(self.gamma, dtype), tf.cast(self.beta, dtype), mean=tf.cast(self.moving_mean, dtype),
            variance=tf.cast(self.moving_variance, dtype), epsilon=self.epsilon, data_format="NHWC",
            is_training=False)
        return tf.cast(out, self.compute_dtype)

    def _batch_moments(self, x):
        """(mean, biased variance, element count per channel), global over replicas when synchronized."""
        axes = self._reduction_axes
        if not self._replicated():
            mean, variance = tf.nn.moments(x, axes)
            shape = tf.shape(x)
            count = tf.cast(tf.reduce_prod(tf.gather(shape, axes)), x.dtype)
            return mean, variance, count
        local_sum = tf.reduce_sum(x, axis=axes)
        local_sq = tf.reduce_sum(tf.square(x), axis=axes)
        shape = tf.shape(x)
        local_count = tf.cast(tf.reduce_prod(tf.gather(shape, axes)), x.dtype)
        ctx = tf.distribute.get_replica_context()
        total, total_sq, count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [local_sum, local_sq, local_count])
        mean = total / tf.maximum(count, 1.0)
        variance = tf.maximum(total_sq / tf.maximum(count, 1.0) - tf.square(mean), 0.0)
        return mean, variance, count

    def get_config(self):
        return {**super().get_config(), "norm_eval": self.norm_eval, "fused_inference": self.fused_inference}


@keras.saving.register_keras_serializable(package=PACKAGE)
class GroupedConv2D(keras.layers.Conv2D):
    """A grouped ``Conv2D`` with ONE kernel of shape (kh, kw, in // groups, out), exactly like Keras' ``groups=``.

    Keras 3 runs a grouped conv on CPU through a per-op XLA cluster (``_conv_xla``), which is several times slower
    than TensorFlow's own grouped ``Conv2D`` (oneDNN). This layer calls ``tf.nn.conv2d`` directly. ``impl`` picks
    how it runs, never what it computes or which weights it has:

    * ``"grouped"``: one ``tf.nn.conv2d`` with the grouped kernel (oneDNN's grouped conv on CPU);
    * ``"split"``: input and kernel sliced per group, one dense conv per group, concatenated;
    * ``"auto"``: "grouped". Per shape, "split" won some isolated convs with a few wide groups (regnety_040 s1/s2),
      but whole networks measured the same or slower with it (regnety_040 / regnety_160, batch 1 and 8, 224x224,
      TF 2.21, 2 CPU cores), while narrow or many groups run 1.5-5x faster grouped.
    """

    def __init__(self, filters, kernel_size, groups=1, impl="auto", **kwargs):
        if impl not in GROUPED_CONV_IMPLS:
            raise ValueError(f"impl must be one of {GROUPED_CONV_IMPLS}, got {impl!r}")
        super().__init__(filters, kernel_size, groups=groups, **kwargs)
        self.impl = impl

    def resolved_impl(self) -> str:
        if self.groups == 1:
            return "grouped"
        return "grouped" if self.impl == "auto" else self.impl

    def convolution_op(self, inputs, kernel):
        padding = self.padding.upper()
        if self.resolved_impl() == "grouped":
            return tf.nn.conv2d(inputs, kernel, self.strides, padding, dilations=self.dilation_rate)
        g = self.groups
        ys = [tf.nn.conv2d(x, k, self.strides, padding, dilations=self.dilation_rate)
              for x, k in zip(tf.split(inputs, g, axis=-1), tf.split(kernel, g, axis=-1))]
        return tf.concat(ys, axis=-1)

    def get_config(self):
        return {**super().get_config(), "impl": self.impl}


@keras.saving.register_keras_serializable(package=PACKAGE)
class DropPath(keras.layers.Layer):
    """timm's ``DropPath`` (stochastic depth): in training, zero a sample's residual branch with probability
    ``rate`` and scale the kept ones by ``1 / (1 - rate)``; the identity in inference."""

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = tf.concat([tf.shape(x)[:1], tf.ones([len(x.shape) - 1], tf.int32)], axis=0)
        mask = tf.floor(keep + keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype))
        return x * mask / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def global_pool(x, kind: str = "avg", axes=(1, 2)):
    """timm's classifier pooling over ``axes``: ``"avg"``, ``"max"`` or ``"avgmax"`` (their mean)."""
    if kind == "avg":
        return tf.reduce_mean(x, axis=axes)
    if kind == "max":
        return tf.reduce_max(x, axis=axes)
    return 0.5 * (tf.reduce_mean(x, axis=axes) + tf.reduce_max(x, axis=axes))


@keras.saving.register_keras_serializable(package=PACKAGE)
class GlobalPool(keras.layers.Layer):
    """``global_pool`` as a layer: (N, H, W, C) -> (N, C), or (N, C, H, W) -> (N, C) for ``channels_first``."""

    def __init__(self, kind="avg", data_format="channels_last", **kwargs):
        super().__init__(**kwargs)
        self.kind, self.data_format = kind, data_format

    def call(self, x):
        return global_pool(x, self.kind, (2, 3) if self.data_format == "channels_first" else (1, 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] if self.data_format == "channels_first" else input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "data_format": self.data_format}


@keras.saving.register_keras_serializable(package=PACKAGE)
class InputGuard(keras.layers.Layer):
    """Checks an image batch against what the model expects and turns NCHW into NHWC for ``channels_first``.

    Static shapes are checked while tracing, with errors that say what to change; spatial sizes unknown at trace
    time (a serving signature with ``None`` height / width) are asserted at run time.
    """

    def __init__(self, channels, data_format="channels_last", min_size=MIN_INPUT_SIZE, model_name="RegNet", **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.data_format = data_format
        self.min_size = int(min_size)
        self.model_name = model_name

    def check_shape(self, shape, dtype="float32") -> None:
        """The host's input contract (``regnet_zoo.contract``) on a (possibly partly unknown) shape and dtype."""
        check_image_batch(tuple(shape), dtype, in_chans=self.channels,
                          channels_first=self.data_format == "channels_first", min_size=self.min_size)

    def call(self, inputs):
        self.check_shape(inputs.shape)
        x = inputs
        if self.data_format == "channels_first":
            x = tf.transpose(x, (0, 2, 3, 1))
        hw = x.shape[1:3]
        if hw[0] is None or hw[1] is None:
            size = tf.shape(x)[1:3]
            with tf.control_dependencies([tf.debugging.assert_greater_equal(
                    size, self.min_size, message=f"{self.model_name}: height and width must be at least "
                                                 f"{self.min_size} pixels")]):
                x = tf.identity(x)
        return x

    def compute_output_shape(self, input_shape):
        self.check_shape(input_shape)
        if self.data_format == "channels_first":
            n, c, h, w = input_shape
            return (n, h, w, c)
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "data_format": self.data_format,
                "min_size": self.min_size, "model_name": self.model_name}
