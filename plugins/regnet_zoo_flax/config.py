"""The builder's options: validated once, frozen, shared by the NNX and linen forms."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from regnet_zoo.feature_info import FeatureInfoList
from regnet_zoo.plan import ArchPlan

from .grouped_conv import choose_impls

APIS = ("nnx", "linen")
DATA_FORMATS = ("channels_last", "channels_first")
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16,
                  "float64": jnp.float64}  # float64: for numerical checks; needs jax_enable_x64

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
    frozen_bn: bool = False  # norm="frozen_bn": every BN on running statistics, scale and bias constant
    conv_impls: tuple[tuple[str, str], ...] = ()  # (block name, impl) for each grouped conv, inference mode
    train_conv_impls: tuple[tuple[str, str], ...] = ()  # the same in training mode (BN on batch statistics)
    zero_init_last: bool = True
    drop_rate: float = 0.0  # dropout before head.fc in training mode (timm's ``drop_rate``)
    drop_path_rate: float = 0.0  # stochastic depth of the residual branches, linear over the blocks (timm)
    global_pool: str = "avg"  # "avg" | "max" | "avgmax" (timm's names)

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
    def feature_info(self) -> FeatureInfoList:
        """The returned maps (features_only) or all five (stem, s1..s4), as every framework reports them."""
        return self.plan.feature_info(self.out_indices) if self.features_only else self.plan.all_feature_info()

    def conv_impl(self, block_name: str, training: bool = False) -> str:
        return dict(self.train_conv_impls if training else self.conv_impls).get(block_name, "xla")

    def norm_groups(self, channels: int) -> int:
        """GroupNorm groups of a norm over ``channels``; 0 for the plan's BatchNorm."""
        return self.plan.norm_groups(channels) if self.plan.norm == "groupnorm" else 0

    def bn_frozen(self, feature_index: int) -> bool:
        """True when the BN layers of feature index 0 (stem) .. 4 (s4) always use their running statistics."""
        return self.norm_eval or self.frozen_bn or feature_index <= self.frozen_stages


def make_config(request) -> tuple[NetConfig, dict[str, Any]]:
    """The ``NetConfig`` of a host ``BuildRequest`` (shared options validated by the host) and the flax options."""
    plan, opts, shared = request.plan, dict(request.options), request.shared
    if opts["api"] not in APIS:
        raise ValueError(f"api={opts['api']!r}; expected one of {', '.join(map(repr, APIS))}")
    dtype = shared.dtype
    dtype_name = "float32" if dtype is None else jnp.dtype(dtype).name if _is_dtype(dtype) else None
    if dtype_name not in COMPUTE_DTYPES:
        raise ValueError(f"dtype={dtype!r}; expected None or one of {', '.join(COMPUTE_DTYPES)} "
                         f"(the compute dtype; parameters stay float32)")
    if dtype_name == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype='float64' needs 64-bit JAX: jax.config.update('jax_enable_x64', True) before "
                         "creating the model (otherwise JAX silently computes in float32)")
    if opts["axis_name"] is not None and not isinstance(opts["axis_name"], str):
        raise TypeError(f"axis_name must be a str (the pmap / shard_map axis) or None, got {opts['axis_name']!r}")
    if shared.norm == "sync_bn" and opts["axis_name"] is None:
        raise ValueError("norm='sync_bn' in flax averages BN statistics over a named device axis: also pass "
                         "axis_name=<the axis name of your jax.pmap / shard_map> (e.g. axis_name='batch')")
    if not isinstance(opts["zero_init_last"], bool):
        raise TypeError(f"zero_init_last must be True or False, got {opts['zero_init_last']!r}")
    seed = opts["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    impls = choose_impls(plan, opts["conv_impl"])
    train_impls = choose_impls(plan, opts["conv_impl"], training=True)
    config = NetConfig(plan=plan, num_classes=0 if request.features_only else request.num_classes,
                       features_only=request.features_only, out_indices=tuple(request.out_indices),
                       in_chans=request.in_chans, data_format=shared.data_format or "channels_last",
                       dtype=dtype_name, axis_name=opts["axis_name"], frozen_stages=shared.frozen_stages,
                       norm_eval=shared.norm_eval, frozen_bn=shared.norm == "frozen_bn", conv_impls=impls,
                       train_conv_impls=train_impls,
                       zero_init_last=opts["zero_init_last"] and plan.zero_init_last,  # timm: not RegNetZ
                       drop_rate=shared.drop_rate, drop_path_rate=shared.drop_path_rate,
                       global_pool=shared.global_pool)
    return config, {**opts, "abstract": shared.abstract}


def _is_dtype(value: Any) -> bool:
    try:
        jnp.dtype(value)
    except TypeError:
        return False
    return True


def replace(config: NetConfig, **changes: Any) -> NetConfig:
    return dataclasses.replace(config, **changes)
