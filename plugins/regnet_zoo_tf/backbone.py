"""``RegNetBackbone``: a RegNet trunk as a keras-hub ``FeaturePyramidBackbone`` (functional, NHWC inside): X / Y and
timm's wider design space (pre-activation RegNetV, GroupNorm, the plan's activations (``activations``), avg-pool or
absent shortcuts, bottleneck ratio, linear_out and a final 1x1 conv as in RegNetZ), built unit by unit off the plan's
layer table (``regnet_zoo.layer_flow``), as the fast path (``fast``) is.

Every layer is named after its canonical (timm) module path: ``stem.conv``, ``stem.bn``, ``s2.b1.conv2.conv``,
``s2.b1.se.fc1``, ``s2.b1.downsample.bn`` ..., so ``backbone.get_layer("s3.b2.conv1.bn")`` holds exactly the
tensors of ``s3.b2.conv1.bn.{weight,bias,running_mean,running_var}`` and weights move in and out by name (a
pre-activation network's bare convs and norms are ``s3.b2.conv1``, ``s3.b2.norm1``; after s4: ``final_conv.*``).

Two forms, one class:

* ``out_indices=None`` (keras-hub form): the output is the head's input (the last stage map, or what the plan's
  final conv / activation makes of it), ``pyramid_outputs`` holds the stage maps P2..P5, and
  ``keras_hub.models.ImageClassifier(backbone=...)`` takes it as it is;
* ``out_indices=(1, 2, 3, 4)`` (timm's ``features_only``): the output is the list of those maps (0 = stem), and
  ``pyramid_outputs`` holds their levels (P1..P5), so ``keras_hub.models.RetinaNetBackbone(image_encoder=...)``
  takes it as it is.
"""

from __future__ import annotations

from typing import Iterable

from keras_hub.models import FeaturePyramidBackbone

from regnet_zoo import layer_flow, layer_table
from regnet_zoo.feature_info import normalize_out_indices
from regnet_zoo.plan import MIN_INPUT_SIZE, ArchPlan, BlockPlan

from ._tf import keras
from .activations import NO_FUSED_BN, activation
from .layers import GROUPED_CONV_IMPLS, PACKAGE, BatchNorm, DropPath, GroupedConv2D, InputGuard

DATA_FORMATS = ("channels_last", "channels_first")


def conv_init(groups: int = 1):
    """timm's RegNet init: He normal over fan-out, fan-out counted per group (``kh * kw * out / groups``)."""
    return keras.initializers.VarianceScaling(2.0 * groups, mode="fan_out", distribution="untruncated_normal")


class _Builder:
    """``layer_flow.NetworkOps`` that creates the named Keras layers of one backbone, unit by unit off the plan's
    layer table, and wires them on NHWC KerasTensors.

    Fresh weights follow timm's init (He fan-out convs, norms 1 / 0, the last norm of each post-activation block
    zeroed), so an untrained model behaves like timm's and trains from scratch the same way.
    """

    def __init__(self, plan: ArchPlan, dtype, norm_eval: bool, sync_bn: bool, grouped_conv: str,
                 drop_path_rates=None):
        self.plan, self.dtype, self.norm_eval, self.sync_bn = plan, dtype, norm_eval, sync_bn
        self.grouped_conv = grouped_conv
        self.drop_path_rates = drop_path_rates or {}

    # --- layer_flow.NetworkOps ---------------------------------------------------------------------------------
    def unit(self, u: layer_flow.Unit, x):
        layer, act = u.layer, u.act is not None
        if u.pooled:  # squeeze-excitation 1x1 on the pooled map
            return keras.layers.Conv2D(layer.out_width, 1, activation=activation(u.activation) if act else None,
                                       kernel_initializer=conv_init(), dtype=self.dtype, name=layer.name)(x)
        if layer.kind == "conv":
            x = self.conv(x, layer)
            return self.norm(x, u.norm.name, act, u.norm.zero_init) if u.norm is not None else x
        if layer.kind == "norm":
            return self.norm(x, layer.name, act)
        if layer.kind == "act":
            return self.act(x, layer.name)
        if layer.kind == "pool":
            return self.pool(x, layer)
        raise NotImplementedError(f"the Keras backbone has no {layer.kind!r} layer ({layer.name})")

    def squeeze(self, x, unit):
        return keras.layers.GlobalAveragePooling2D(keepdims=True, dtype=self.dtype,
                                                   name=f"{unit.name.rsplit('.', 1)[0]}.pool")(x)

    def gate(self, x, s, unit):
        s = keras.layers.Activation("sigmoid", dtype=self.dtype, name=f"{unit.name}.sigmoid")(s)
        return keras.layers.Multiply(dtype=self.dtype, name=unit.name)([x, s])

    def add(self, y, shortcut, block: BlockPlan):
        p = block.name
        if self.drop_path_rates.get(p):
            y = DropPath(self.drop_path_rates[p], dtype=self.dtype, name=f"{p}.drop_path")(y)
        return keras.layers.Add(dtype=self.dtype, name=f"{p}.add")([y, shortcut])

    # --- layers ----------------------------------------------------------------------------------------------
    def act(self, x, name):
        return keras.layers.Activation(activation(self.plan.act), dtype=self.dtype, name=name)(x)

    def norm(self, x, name, act=True, zero_init=False):
        """The plan's norm (``name``: BN or GroupNorm, eps 1e-5), then its activation (``name.act``) if ``act``."""
        gamma = "zeros" if zero_init else "ones"
        if self.plan.norm == "groupnorm":
            x = keras.layers.GroupNormalization(self.plan.norm_groups(x.shape[-1]), epsilon=1e-5,
                                                gamma_initializer=gamma, dtype=self.dtype, name=name)(x)
        else:
            x = BatchNorm(norm_eval=self.norm_eval, synchronized=self.sync_bn, dtype=self.dtype, name=name,
                          gamma_initializer=gamma, fused_inference=not (act and self.plan.act in NO_FUSED_BN))(x)
        return self.act(x, f"{name}.act") if act else x

    def conv(self, x, layer):
        """The bias-free conv ``layer`` with PyTorch's symmetric padding (``dilation * (k // 2)`` each side), its
        padding named after the unit (``s1.b1.conv2.pad``)."""
        if layer.kernel > 1:
            x = keras.layers.ZeroPadding2D(layer.dilation * (layer.kernel // 2), dtype=self.dtype,
                                           name=f"{layer.name.removesuffix('.conv')}.pad")(x)
        common = dict(strides=layer.stride, padding="valid", use_bias=False, dtype=self.dtype, name=layer.name,
                      kernel_initializer=conv_init(layer.groups), dilation_rate=layer.dilation)
        if layer.groups > 1:
            return GroupedConv2D(layer.out_width, layer.kernel, groups=layer.groups, impl=self.grouped_conv,
                                 **common)(x)
        return keras.layers.Conv2D(layer.out_width, layer.kernel, **common)(x)

    def pool(self, x, layer):
        """timm's shortcut pool: ``AvgPool2dSame(2, 1)`` when dilated (zero-pad right / bottom, zeros counted),
        ``AvgPool2d(2, stride, ceil_mode, count_include_pad=False)`` (TF's "same" average) when strided."""
        if layer.dilation > 1:
            x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), dtype=self.dtype, name=f"{layer.name}.pad")(x)
            return keras.layers.AveragePooling2D(2, 1, "valid", dtype=self.dtype, name=layer.name)(x)
        if layer.stride > 1:
            return keras.layers.AveragePooling2D(2, layer.stride, "same", dtype=self.dtype, name=layer.name)(x)
        return x

    # --- network ---------------------------------------------------------------------------------------------
    def trunk(self, x) -> list:
        """NHWC maps [stem, s1, s2, s3, s4]."""
        return layer_flow.run_trunk(self.plan, x, self)

    def head_input(self, x):
        """What follows s4 (timm's ``final_conv``): 1x1 ConvNormAct, an activation alone, or nothing."""
        for u in layer_flow.units(layer_table.final_layers(self.plan)):
            x = self.unit(u, x)
        return x


@keras.saving.register_keras_serializable(package=PACKAGE)
class RegNetBackbone(FeaturePyramidBackbone):
    """RegNet feature extractor, built from an ``ArchPlan`` (``regnet_zoo.plan(name)``), the plan every framework
    builds from; its config stores the plan itself (``ArchPlan.to_config``), so ``from_config`` rebuilds the same one.

    Args:
        plan: the ``ArchPlan`` (with its ``output_stride`` applied), or the dict ``ArchPlan.to_config`` makes of it.
        out_indices: ``None`` for the keras-hub form (output = last map), else the feature indices to output
            (0 = stem, 1..4 = s1..s4), timm's ``features_only``; that form builds nothing after the deepest stage.
        image_shape: input shape without batch, in ``data_format`` order; spatial sizes may be ``None``.
        data_format: ``"channels_last"`` (NHWC, native) or ``"channels_first"`` (takes and returns NCHW, HF layout).
        frozen_stages: -1 none, 0 stem, k stem + s1..sk: those layers are not trainable and their BN stays in
            inference mode.
        norm_eval: every BN in inference mode, even when training (its affine parameters still train).
        sync_bn: BN statistics all-reduced across the replicas of a ``tf.distribute`` strategy.
        grouped_conv: how grouped 3x3 convs run: ``"auto"``, ``"grouped"`` or ``"split"`` (same weights).
        drop_path_rate: stochastic depth on each block's residual branch, linear from 0 to this rate (timm).
    """

    def __init__(self, plan, out_indices=None, image_shape=(None, None, 3), data_format="channels_last",
                 frozen_stages=-1, norm_eval=False, sync_bn=False, grouped_conv="auto", dtype=None,
                 drop_path_rate=0.0, **kwargs):
        plan = plan if isinstance(plan, ArchPlan) else ArchPlan.from_config(plan)
        if data_format not in DATA_FORMATS:
            raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {data_format!r}")
        if grouped_conv not in GROUPED_CONV_IMPLS:
            raise ValueError(f"grouped_conv must be one of {GROUPED_CONV_IMPLS}, got {grouped_conv!r}")
        _check_frozen(frozen_stages, len(plan.stages))
        image_shape = tuple(image_shape)
        if len(image_shape) != 3:
            raise ValueError(f"image_shape is (height, width, channels) or, for channels_first, (channels, height, "
                             f"width); got {image_shape!r}")
        channels = image_shape[0] if data_format == "channels_first" else image_shape[-1]
        if channels is None:
            raise ValueError(f"image_shape {image_shape!r} must give the number of channels")
        indices = None if out_indices is None else normalize_out_indices(out_indices)
        if indices is not None:  # timm's features_only: nothing after the last stage (no final conv / act)
            plan = plan.truncated(len(plan.stages))

        # === Layers and graph ===
        images = keras.Input(shape=image_shape, name="images")
        guard = InputGuard(channels, data_format, MIN_INPUT_SIZE, plan.name, dtype=dtype, name="input_guard")
        guard.check_shape((None, *image_shape))
        builder = _Builder(plan, dtype, bool(norm_eval), bool(sync_bn), grouped_conv,
                           plan.drop_path_rates(drop_path_rate))
        nhwc = builder.trunk(guard(images))
        infos = plan.all_feature_info()
        head_input = builder.head_input(nhwc[-1])  # s4 itself unless the plan has a final conv / act
        if data_format == "channels_first":
            maps = [keras.layers.Permute((3, 1, 2), dtype=dtype, name=f"{info.name}.nchw")(m)
                    for info, m in zip(infos, nhwc)]
            last = maps[-1] if head_input is nhwc[-1] else \
                keras.layers.Permute((3, 1, 2), dtype=dtype, name="final_conv.nchw")(head_input)
        else:
            maps, last = nhwc, head_input
        outputs = last if indices is None else [maps[i] for i in indices]
        super().__init__(inputs=images, outputs=outputs, dtype=dtype, **kwargs)

        # === Config and metadata ===
        self.plan = plan
        self.out_indices = None if indices is None else list(indices)
        self.image_shape = image_shape
        self.data_format = data_format
        self.frozen_stages = int(frozen_stages)
        self.norm_eval = bool(norm_eval)
        self.sync_bn = bool(sync_bn)
        self.grouped_conv = grouped_conv
        self.drop_path_rate = float(drop_path_rate)
        # Untracked: Keras would turn the entries into TrackedDicts.
        object.__setattr__(self, "feature_info", plan.all_feature_info() if indices is None else
                           plan.feature_info(indices))
        levels = range(len(infos)) if indices is None else indices
        self.pyramid_outputs = {infos[i].level: maps[i] for i in levels if indices is not None or i > 0}
        # All five maps (stem, s1..s4) and the head input (last_hidden_state: s4, or after the final conv / act) in
        # the user's layout, sharing this model's layers; deliberately not tracked as a sub-model, so weights are
        # saved once, under this backbone.
        object.__setattr__(self, "_hidden_states_model",
                           keras.Model(images, [*maps, last], name=f"{self.name}_hidden_states"))
        object.__setattr__(self, "_input_guard", guard)
        self._freeze(self.frozen_stages)

    def __call__(self, inputs, *args, **kwargs):
        self.check_input(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def check_input(self, inputs) -> None:
        """Raise a ``ValueError`` saying what to change when ``inputs`` cannot be an image batch for this model.

        Runs before Keras' own input-spec check, whose message names shapes but not the fix.
        """
        shape = getattr(inputs, "shape", None)
        if shape is not None and not isinstance(inputs, (dict, list, tuple)):
            self._input_guard.check_shape(tuple(shape), getattr(inputs, "dtype", "float32"))

    @classmethod
    def from_plan(cls, plan: ArchPlan, **kwargs) -> "RegNetBackbone":
        """Build from an ``ArchPlan`` (``regnet_zoo.plan(name)``); ``kwargs`` are the other constructor args."""
        in_chans = kwargs.pop("in_chans", 3)
        data_format = kwargs.get("data_format", "channels_last")
        kwargs.setdefault("image_shape", (in_chans, None, None) if data_format == "channels_first" else
                          (None, None, in_chans))
        kwargs.setdefault("name", plan.name)
        return cls(plan, **kwargs)

    @property
    def hidden_states_model(self) -> keras.Model:
        """A model returning the five maps (stem, s1..s4) and then the head input (``last_hidden_state``: the s4 map,
        or the final conv's / activation's output) in this backbone's layout, sharing its weights."""
        return self._hidden_states_model

    @property
    def in_chans(self) -> int:
        return self.image_shape[0] if self.data_format == "channels_first" else self.image_shape[-1]

    def stage_layers(self, index: int) -> list:
        """The layers of feature index ``index`` (0 = stem, 1..4 = s1..s4)."""
        prefix = self.plan.all_feature_info()[index].name + "."
        return [layer for layer in self.layers if layer.name.startswith(prefix)]

    def optimize_for_inference(self, precision: str = "fp32"):
        """A ``FrozenRegNet``: BN folded, weights as graph constants, fused oneDNN convs; ``"bf16"`` for AMX / GPU."""
        from .fast import _optimize_for_inference

        return _optimize_for_inference(self, precision)

    def _freeze(self, frozen_stages: int) -> None:
        for index in range(frozen_stages + 1):
            for layer in self.stage_layers(index):
                layer.trainable = False

    def get_config(self):
        config = super().get_config()
        config.update({
            "plan": self.plan.to_config(),
            "out_indices": self.out_indices,
            "image_shape": list(self.image_shape),
            "data_format": self.data_format,
            "frozen_stages": self.frozen_stages,
            "norm_eval": self.norm_eval,
            "sync_bn": self.sync_bn,
            "grouped_conv": self.grouped_conv,
            "drop_path_rate": self.drop_path_rate,
        })
        return config


def _check_frozen(frozen_stages, num_stages: int) -> None:
    if isinstance(frozen_stages, bool) or not isinstance(frozen_stages, int) or \
            not -1 <= frozen_stages <= num_stages:
        raise ValueError(f"frozen_stages must be an int in -1..{num_stages} (-1 none, 0 stem, k = stem + s1..sk), "
                         f"got {frozen_stages!r}")


def all_batch_norms(model: keras.Model) -> Iterable[BatchNorm]:
    return (layer for layer in model.layers if isinstance(layer, BatchNorm))
