"""Analytic complexity of an ``ArchPlan`` by pycls's counting rules (``pycls.models.blocks`` ``*_cx``).

flops counts multiply-accumulates of convs and linears (+ their biases); BN and activations are free;
params counts every learnable tensor (BN: 2 per channel); acts counts output elements of convs and linears.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .layer_table import POOLED, layers

if TYPE_CHECKING:
    from .plan import ArchPlan


@dataclass(frozen=True)
class Complexity:
    flops: int
    params: int
    acts: int


def _side(resolution: int, reduction: int) -> int:
    """The map side after ``log2(reduction)`` stride-2 layers (each ``(h - 1) // 2 + 1``; pooled maps: 1)."""
    side = resolution
    while reduction > 1:
        side, reduction = (side - 1) // 2 + 1, reduction // 2
    return 1 if reduction == POOLED else side


def count(plan: "ArchPlan", resolution: int = 224, num_classes: int = 1000, in_chans: int = 3) -> Complexity:
    """Complexity of ``plan`` on a ``resolution`` x ``resolution`` input with a ``num_classes`` head (0 = none)."""
    if resolution < 1 or num_classes < 0 or in_chans < 1:
        raise ValueError(f"need resolution >= 1, num_classes >= 0, in_chans >= 1; got {resolution}, "
                         f"{num_classes}, {in_chans}")
    flops = params = acts = 0
    for layer in layers(plan, num_classes, in_chans):
        w_in, w_out, bias = layer.in_width, layer.out_width, layer.out_width if layer.bias else 0
        if layer.kind == "conv":
            hw = _side(resolution, layer.reduction) ** 2
            weights = layer.kernel ** 2 * w_in * w_out // layer.groups
            flops, params, acts = flops + (weights + bias) * hw, params + weights + bias, acts + w_out * hw
        elif layer.kind == "linear":
            flops, params, acts = flops + w_in * w_out + bias, params + w_in * w_out + bias, acts + w_out
        elif layer.kind == "norm":
            params += 2 * w_out  # scale and shift; statistics are not parameters
    return Complexity(flops, params, acts)
