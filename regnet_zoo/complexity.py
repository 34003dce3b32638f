"""Analytic complexity of an ``ArchPlan`` by pycls's counting rules (``pycls.models.blocks`` ``*_cx``).

flops counts multiply-accumulates of convs and linears (+ their biases); BN and activations are free;
params counts every learnable tensor (BN: 2 per channel); acts counts output elements of convs and linears.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .plan import ArchPlan


@dataclass(frozen=True)
class Complexity:
    flops: int
    params: int
    acts: int


class _Counter:
    def __init__(self, resolution: int):
        self.h = self.w = resolution
        self.flops = self.params = self.acts = 0

    def conv(self, w_in: int, w_out: int, k: int, stride: int = 1, groups: int = 1, bias: bool = False) -> None:
        self.h, self.w = (self.h - 1) // stride + 1, (self.w - 1) // stride + 1
        hw = self.h * self.w
        self.flops += k * k * w_in * w_out * hw // groups + (w_out * hw if bias else 0)
        self.params += k * k * w_in * w_out // groups + (w_out if bias else 0)
        self.acts += w_out * hw

    def norm(self, w: int) -> None:
        self.params += 2 * w

    def linear(self, w_in: int, w_out: int) -> None:
        self.flops += w_in * w_out + w_out
        self.params += w_in * w_out + w_out
        self.acts += w_out


def count(plan: "ArchPlan", resolution: int = 224, num_classes: int = 1000, in_chans: int = 3) -> Complexity:
    """Complexity of ``plan`` on a ``resolution`` x ``resolution`` input with a ``num_classes`` head (0 = none)."""
    if resolution < 1 or num_classes < 0 or in_chans < 1:
        raise ValueError(f"need resolution >= 1, num_classes >= 0, in_chans >= 1; got {resolution}, "
                         f"{num_classes}, {in_chans}")
    c = _Counter(resolution)
    post = not plan.preact  # norms after convs (pre-activation: before them, none on the stem / shortcut)
    c.conv(in_chans, plan.stem_width, 3, stride=2)
    if post:
        c.norm(plan.stem_width)
    for stage in plan.stages:
        for b in stage.blocks:
            if b.shortcut_conv:
                h, w = c.h, c.w
                if b.shortcut == "avg":  # pooling first (free), then a stride-1 conv on the pooled map
                    c.h, c.w = -(-c.h // b.stride), -(-c.w // b.stride)
                c.conv(b.in_width, b.out_width, 1, stride=1 if b.shortcut == "avg" else b.stride)
                if post:
                    c.norm(b.out_width)
                c.h, c.w = h, w
            if not post:
                c.norm(b.in_width)
            c.conv(b.in_width, b.bottleneck_width, 1)
            c.norm(b.bottleneck_width)
            c.conv(b.bottleneck_width, b.bottleneck_width, 3, stride=b.stride, groups=b.groups)
            if post:
                c.norm(b.bottleneck_width)
            if b.se_width:
                h, w = c.h, c.w
                c.h = c.w = 1
                c.conv(b.bottleneck_width, b.se_width, 1, bias=True)
                c.conv(b.se_width, b.bottleneck_width, 1, bias=True)
                c.h, c.w = h, w
            if not post:
                c.norm(b.bottleneck_width)
            c.conv(b.bottleneck_width, b.out_width, 1)
            if post:
                c.norm(b.out_width)
    if plan.final_conv_width:
        c.conv(plan.stages[-1].out_width, plan.final_conv_width, 1)
        c.norm(plan.final_conv_width)
    if num_classes:
        c.linear(plan.num_features, num_classes)
    return Complexity(c.flops, c.params, c.acts)
