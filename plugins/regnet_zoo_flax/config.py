"""The builder's options: validated once, frozen, shared by the NNX and linen forms."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from regnet_zoo.freezing import refuse_frozen_random_bn
from regnet_zoo.feature_info import FeatureInfo
from regnet_zoo.plan import ArchPlan

from .grouped_conv import choose_impls
from .ops import CONV_IMPLS

APIS = ("nnx", "linen")
DATA_FORMATS = ("channels_last", "channels_first")
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16,
                  "float64": jnp.float64}  # float64: for numerical checks; needs jax_enable_x64

# name -> (default, one-line description); the order is the order error messages list them in.
OPTIONS: dict[str, tuple[Any, str]] = {
    "api": ("nnx", "'nnx' (flax.nnx.Module) or 'linen' ((flax.linen.Module, variables) pair)"),
    "data_format": ("channels_last", "'channels_last' (NHWC) or 'channels_first' (NCHW in and out, HF's layout)"),
    "dtype": (None, "compute dtype: None / 'float32', 'bfloat16', 'float16' (parameters stay float32), or "
                    "'float64' (numerical checks, needs jax_enable_x64)"),
    "axis_name": (None, "mapped axis name to average BN statistics over (pmap / shard_map), or None"),
    "frozen_stages": (-1, "-1 none, 0 stem, k stem + s1..sk: no gradient, BN in inference mode"),
    "norm_eval": (False, "every BN in inference mode, also in training"),
    "force": (False, "allow frozen_stages / norm_eval without pretrained weights (a frozen random BN is a bug)"),
    "conv_impl": ("auto", f"grouped 3x3 conv: 'auto' (measured per shape and mode), one of {CONV_IMPLS}, or "
                          f"{{block name: impl}} (e.g. from regnet_zoo_flax.grouped_conv.tune)"),
    "seed": (0, "int seed of the random initialisation"),
    "abstract": (False, "True: variables are jax.ShapeDtypeStruct (no memory, no compute); load weights later"),
    "zero_init_last": (True, "zero the last BN scale of each block at random init, as timm does"),
}


@dataclass(frozen=True)
class NetConfig:
    """Everything that shapes the network and its forward pass (hashable: it is static under jit)."""

    plan: ArchPlan
    num_classes: int = 1000
    features_only: bool = False
    out_indices: tuple[int, ...] = (1, 2, 3, 4)
    in_chans: int = 3
    data_format: str = "channels_last"
    dtype: str = "float32"
    axis_name: str | None = None
    frozen_stages: int = -1
    norm_eval: bool = False
    conv_impls: tuple[tuple[str, str], ...] = ()  # (block name, impl) for each grouped conv, inference mode
    train_conv_impls: tuple[tuple[str, str], ...] = ()  # the same in training mode (BN on batch statistics)
    zero_init_last: bool = True

    @property
    def channels_first(self) -> bool:
        return self.data_format == "channels_first"

    @property
    def compute_dtype(self):
        return COMPUTE_DTYPES[self.dtype]

    @property
    def has_head(self) -> bool:
        return not self.features_only and self.num_classes > 0

    @property
    def feature_info(self) -> list[FeatureInfo]:
        return self.plan.feature_info(self.out_indices)

    def conv_impl(self, block_name: str, training: bool = False) -> str:
        return dict(self.train_conv_impls if training else self.conv_impls).get(block_name, "xla")

    def bn_frozen(self, feature_index: int) -> bool:
        """True when the BN layers of feature index 0 (stem) .. 4 (s4) always use their running statistics."""
        return self.norm_eval or feature_index <= self.frozen_stages


def make_config(plan: ArchPlan, *, num_classes: int, features_only: bool, out_indices: tuple[int, ...],
                in_chans: int, options: Mapping[str, Any], pretrained: bool) -> tuple[NetConfig, dict[str, Any]]:
    """Validate the framework options of ``create`` and return (config, all options with defaults filled in)."""
    unknown = sorted(set(options) - OPTIONS.keys())
    if unknown:
        accepted = "\n".join(f"  {k}={v[0]!r}: {v[1]}" for k, v in OPTIONS.items())
        raise TypeError(f"the flax framework got unknown keyword argument{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(map(repr, unknown))}; it accepts:\n{accepted}")
    opts = {k: options.get(k, v[0]) for k, v in OPTIONS.items()}

    def choice(key: str, allowed) -> Any:
        if opts[key] not in allowed:
            raise ValueError(f"{key}={opts[key]!r}; expected one of {', '.join(map(repr, allowed))}")
        return opts[key]

    def flag(key: str) -> bool:
        if not isinstance(opts[key], bool):
            raise TypeError(f"{key} must be True or False, got {opts[key]!r}")
        return opts[key]

    choice("api", APIS)
    choice("data_format", DATA_FORMATS)
    dtype = opts["dtype"]
    dtype_name = "float32" if dtype is None else jnp.dtype(dtype).name if _is_dtype(dtype) else None
    if dtype_name not in COMPUTE_DTYPES:
        raise ValueError(f"dtype={dtype!r}; expected None or one of {', '.join(COMPUTE_DTYPES)} "
                         f"(the compute dtype; parameters stay float32)")
    if dtype_name == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype='float64' needs 64-bit JAX: jax.config.update('jax_enable_x64', True) before "
                         "creating the model (otherwise JAX silently computes in float32)")
    if opts["axis_name"] is not None and not isinstance(opts["axis_name"], str):
        raise TypeError(f"axis_name must be a str (the pmap / shard_map axis) or None, got {opts['axis_name']!r}")
    fs = opts["frozen_stages"]
    if isinstance(fs, bool) or not isinstance(fs, int) or not -1 <= fs <= len(plan.stages):
        raise ValueError(f"frozen_stages={fs!r}; expected an int in -1..{len(plan.stages)} "
                         f"(-1 none, 0 stem, k = stem + s1..sk)")
    for key in ("norm_eval", "force", "abstract", "zero_init_last"):
        flag(key)
    refuse_frozen_random_bn(pretrained=pretrained, force=opts["force"], frozen_stages=fs,
                            norm_eval=opts["norm_eval"])
    seed = opts["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    impls = choose_impls(plan, opts["conv_impl"])
    train_impls = choose_impls(plan, opts["conv_impl"], training=True)
    config = NetConfig(plan=plan, num_classes=0 if features_only else num_classes, features_only=features_only,
                       out_indices=tuple(out_indices), in_chans=in_chans, data_format=opts["data_format"],
                       dtype=dtype_name, axis_name=opts["axis_name"], frozen_stages=fs, norm_eval=opts["norm_eval"],
                       conv_impls=impls, train_conv_impls=train_impls, zero_init_last=opts["zero_init_last"])
    return config, opts


def _is_dtype(value: Any) -> bool:
    try:
        jnp.dtype(value)
    except TypeError:
        return False
    return True


def replace(config: NetConfig, **changes: Any) -> NetConfig:
    return dataclasses.replace(config, **changes)
