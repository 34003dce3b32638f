"""The network's forward pass: layout, stages, frozen prefix, outputs, loss.

The NNX module owns the parameters and hands this function its stem / stage callables (the linen form is that
module through ``nnx.bridge``, so it runs the very same computation).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from regnet_zoo.outputs import RegNetOutput

from . import ops
from .config import NetConfig


@dataclasses.dataclass
class FlaxRegNetOutput(RegNetOutput):
    """``RegNetOutput`` registered as a JAX pytree, so it can leave ``jax.jit`` / ``nnx.jit``."""


jax.tree_util.register_dataclass(
    FlaxRegNetOutput,
    data_fields=["logits", "pooler_output", "last_hidden_state", "hidden_states", "loss"],
    meta_fields=[],
)


def _to_layout(x: jax.Array, config: NetConfig) -> jax.Array:
    return jnp.transpose(x, (0, 3, 1, 2)) if config.channels_first else x


def final_layer(config: NetConfig, final_conv: Callable | None) -> Callable | None:
    """What follows s4 (timm's ``final_conv``): the 1x1 ConvNormAct (``plan.final_conv_width``), else the plain act
    (``plan.final_act``: preact or linear_out), else nothing; nothing in a ``features_only`` (truncated) plan. The s4
    map in ``hidden_states`` is taken before it; pooling and ``last_hidden_state`` after."""
    plan = config.plan
    if plan.final_conv_width:
        return final_conv
    if plan.final_act:
        return lambda h: ops.activation(h, plan.act)
    return None


def forward(config: NetConfig, x, stem: Callable, stages: Sequence[Callable], head: Callable | None, *,
            final_conv: Callable | None = None, output_hidden_states: bool = False, labels=None):
    """Run the network. ``stem`` / ``stages[i]`` map NHWC -> NHWC; ``final_conv`` (when the plan has one) follows
    s4; ``head`` maps pooled (N, C) -> logits.

    Returns, like the torch and Keras forms: the list of maps at ``out_indices`` for a ``features_only`` model;
    otherwise logits (pooled features when headless). ``output_hidden_states`` or ``labels`` give a
    ``RegNetOutput`` instead (``logits`` is None without a head; all 5 maps are in ``hidden_states``). Maps come back in the model's layout (NCHW for ``data_format='channels_first'``).
    """
    ops.check_input(x, config.in_chans, config.channels_first)
    if labels is not None and config.features_only:
        raise ValueError("labels= needs a classifier; a features_only model returns feature maps, put your own "
                         "loss on them")
    if labels is not None and not config.has_head:
        raise ValueError("labels= needs a classifier head; this model was built with num_classes=0")
    x = jnp.asarray(x)
    if config.channels_first:
        x = jnp.transpose(x, (0, 2, 3, 1))
    x = x.astype(config.compute_dtype)

    last = max(config.out_indices) if config.features_only and not output_hidden_states else len(stages)
    maps = []
    for index, layer in enumerate([stem, *stages]):
        if index > last:
            break
        x = layer(x)
        if index == config.frozen_stages:
            x = lax.stop_gradient(x)  # no gradient reaches the frozen stem / stages
        maps.append(x)

    if config.features_only and not output_hidden_states:
        return [_to_layout(maps[i], config) for i in config.out_indices]
    final = final_layer(config, final_conv)
    if final is not None:
        x = final(x)
    pooled = ops.global_pool(x, config.global_pool)
    logits = head(pooled) if head is not None else None  # None when headless or features_only
    if not output_hidden_states and labels is None:
        return logits if logits is not None else pooled
    return FlaxRegNetOutput(
        logits=logits,
        pooler_output=pooled,
        last_hidden_state=_to_layout(x, config),
        hidden_states=tuple(_to_layout(m, config) for m in maps) if output_hidden_states else None,
        loss=ops.loss_from_labels(logits, labels) if labels is not None else None,
    )


def frozen_index(path: Sequence) -> int:
    """Feature index (0 stem, 1..4 stages, 5 head) of a variable path such as ('s2', 'b1', 'conv1', 'kernel')."""
    head = str(path[0])
    if head == "stem":
        return 0
    if head.startswith("s") and head[1:].isdigit():
        return int(head[1:])
    return 5
