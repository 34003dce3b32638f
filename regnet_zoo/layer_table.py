"""The structural plan: every layer of an ``ArchPlan`` as data, in timm's module order.

One description that the canonical key space (``keys``) and the analytic complexity (``complexity``) both read,
so a new layer kind is added here once. Each ``Layer`` carries timm's module path, its kind and its shape:

* ``conv``: a convolution ``in_width -> out_width`` (``kernel``, ``stride``, ``groups``, ``dilation``, ``bias``);
  timm's ``ConvNormAct`` is a ``<path>.conv`` + a ``<path>.bn`` layer, a bare (pre-activation) conv is ``<path>``;
* ``norm``: BatchNorm or GroupNorm (the plan's ``norm``) over ``out_width`` channels;
* ``act``: an activation (``act`` names it); ``pool``: the 2x2 average pool of an ``avg`` shortcut;
* ``gate``: the sigmoid that scales a block by its squeeze-excitation; ``linear``: the classifier.

``reduction`` is the output map's reduction against the input image (spatial size = the input side halved,
rounding up, log2(reduction) times); 0 marks a layer on the globally pooled 1x1 map (squeeze-excitation, head).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .plan import ArchPlan, BlockPlan

POOLED = 0  # ``Layer.reduction`` of layers on the globally pooled map


@dataclass(frozen=True)
class Layer:
    name: str  # timm module path, e.g. "s2.b1.conv2.conv", "s2.b1.norm1", "head.fc"
    kind: str  # conv | norm | act | pool | gate | linear
    in_width: int
    out_width: int
    reduction: int
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    dilation: int = 1
    bias: bool = False
    act: str = ""  # the activation of an ``act`` layer


def _conv_norm_act(plan: "ArchPlan", path: str, c_in: int, c_out: int, reduction: int, *, kernel: int = 1,
                   stride: int = 1, groups: int = 1, dilation: int = 1, act: bool = True) -> list[Layer]:
    """timm's ``ConvNormAct`` (``<path>.conv`` + ``<path>.bn``, the activation inside the norm), or in a
    pre-activation network the bare conv ``<path>``."""
    conv = dict(kernel=kernel, stride=stride, groups=groups, dilation=dilation)
    if plan.preact:
        return [Layer(path, "conv", c_in, c_out, reduction, **conv)]
    return [Layer(f"{path}.conv", "conv", c_in, c_out, reduction, **conv),
            Layer(f"{path}.bn", "norm", c_out, c_out, reduction),
            *([Layer(f"{path}.bn.act", "act", c_out, c_out, reduction, act=plan.act)] if act else [])]


def _pre_norm(plan: "ArchPlan", path: str, width: int, reduction: int) -> list[Layer]:
    """A pre-activation block's norm + activation before a conv (nothing in a post-activation network)."""
    if not plan.preact:
        return []
    return [Layer(path, "norm", width, width, reduction), Layer(f"{path}.act", "act", width, width, reduction,
                                                                act=plan.act)]


def block_layers(plan: "ArchPlan", b: "BlockPlan", reduction_in: int) -> list[Layer]:
    """timm's ``Bottleneck`` / ``PreBottleneck`` ``b``: 1x1 conv, grouped 3x3 conv, squeeze-excitation, 1x1 conv,
    shortcut, activation after the add."""
    p, wb, r = b.name, b.bottleneck_width, reduction_in * b.stride
    layers = [*_pre_norm(plan, f"{p}.norm1", b.in_width, reduction_in),
              *_conv_norm_act(plan, f"{p}.conv1", b.in_width, wb, reduction_in),
              *_pre_norm(plan, f"{p}.norm2", wb, reduction_in),
              *_conv_norm_act(plan, f"{p}.conv2", wb, wb, r, kernel=3, stride=b.stride, groups=b.groups,
                              dilation=b.dilation)]
    if b.se_width:
        layers += [Layer(f"{p}.se.fc1", "conv", wb, b.se_width, POOLED, bias=True),
                   Layer(f"{p}.se.act", "act", b.se_width, b.se_width, POOLED, act=plan.se_activation),
                   Layer(f"{p}.se.fc2", "conv", b.se_width, wb, POOLED, bias=True),
                   Layer(f"{p}.se.gate", "gate", wb, wb, r)]
    layers += [*_pre_norm(plan, f"{p}.norm3", wb, r),
               *_conv_norm_act(plan, f"{p}.conv3", wb, b.out_width, r, act=False)]
    if b.shortcut == "avg":  # Sequential(AvgPool2d(2, stride, ceil_mode), 1x1 conv [+ norm])
        layers += [Layer(f"{p}.downsample.0", "pool", b.in_width, b.in_width, r, kernel=2, stride=b.stride),
                   *_conv_norm_act(plan, f"{p}.downsample.1", b.in_width, b.out_width, r, act=False)]
    elif b.shortcut == "conv1x1":
        layers += _conv_norm_act(plan, f"{p}.downsample", b.in_width, b.out_width, r, stride=b.stride, act=False)
    if not (plan.preact or plan.linear_out):
        layers.append(Layer(f"{p}.act3", "act", b.out_width, b.out_width, r, act=plan.act))
    return layers


def layers(plan: "ArchPlan", num_classes: int = 1000, in_chans: int = 3) -> tuple[Layer, ...]:
    """Every layer of ``plan`` with a ``num_classes`` head (0: none), in timm's module (and ``state_dict``) order."""
    table = _conv_norm_act(plan, "stem", in_chans, plan.stem_width, 2, kernel=3, stride=2)
    reduction = 2
    for stage in plan.stages:
        for b in stage.blocks:
            table += block_layers(plan, b, reduction)
            reduction *= b.stride
    last = plan.stages[-1].out_width if plan.stages else plan.stem_width
    if plan.final_conv_width:  # always a ConvNormAct, pre-activation networks included
        w = plan.final_conv_width
        table += [Layer("final_conv.conv", "conv", last, w, reduction), Layer("final_conv.bn", "norm", w, w, reduction),
                  Layer("final_conv.bn.act", "act", w, w, reduction, act=plan.act)]
    elif plan.final_act:
        table.append(Layer("final_conv", "act", last, last, reduction, act=plan.act))
    if num_classes:
        table.append(Layer("head.fc", "linear", plan.num_features, num_classes, POOLED, bias=True))
    return tuple(table)
