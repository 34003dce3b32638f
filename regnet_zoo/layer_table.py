"""The structural plan: every layer of an ``ArchPlan`` as data, in timm's module order.

One description that the canonical key space (``keys``) and the analytic complexity (``complexity``) both read,
so a new layer kind is added here once. Each ``Layer`` carries timm's module path, its kind and its shape:

* ``conv``: a convolution ``in_width -> out_width`` (``kernel``, ``stride``, ``groups``, ``dilation``, ``bias``);
  timm's ``ConvNormAct`` is a ``<path>.conv`` + a ``<path>.bn`` layer, a bare (pre-activation) conv is ``<path>``;
* ``norm``: BatchNorm or GroupNorm (the plan's ``norm``) over ``out_width`` channels;
* ``act``: an activation (``act`` names it); ``pool``: the 2x2 average pool of an ``avg`` shortcut;
* ``gate``: the sigmoid that scales a block by its squeeze-excitation; ``linear``: the classifier.

``branch`` places a block's layer in the block's dataflow (``layer_flow.run_block`` walks it): ``input`` on the block
input before it splits (a pre-activation block's ``norm1`` + act; the shortcut starts from its output), ``main`` on the
residual branch, ``se`` on the squeeze-excitation branch (from the pooled main map to the ``gate``, which scales the
main map), ``shortcut`` on the shortcut, ``out`` after the residual sum. Layers outside blocks are ``main``.

``reduction`` is the output map's reduction against the input image (spatial size = the input side halved,
rounding up, log2(reduction) times); 0 marks a layer on the globally pooled 1x1 map (squeeze-excitation, head).
"""

from __future__ import annotations

import math
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
    branch: str = "main"  # input | main | se | shortcut | out (module docstring)
    zero_init: bool = False  # a norm timm initialises with a zero scale (``ArchPlan.zero_init_last``'s conv3 norm)


def _conv_norm_act(plan: "ArchPlan", path: str, c_in: int, c_out: int, reduction: int, *, kernel: int = 1,
                   stride: int = 1, groups: int = 1, dilation: int = 1, act: bool = True,
                   branch: str = "main", zero_init: bool = False) -> list[Layer]:
    """timm's ``ConvNormAct`` (``<path>.conv`` + ``<path>.bn``, the activation inside the norm), or in a
    pre-activation network the bare conv ``<path>``."""
    conv = dict(kernel=kernel, stride=stride, groups=groups, dilation=dilation, branch=branch)
    if plan.preact:
        return [Layer(path, "conv", c_in, c_out, reduction, **conv)]
    return [Layer(f"{path}.conv", "conv", c_in, c_out, reduction, **conv),
            Layer(f"{path}.bn", "norm", c_out, c_out, reduction, branch=branch, zero_init=zero_init),
            *([Layer(f"{path}.bn.act", "act", c_out, c_out, reduction, act=plan.act, branch=branch)] if act else [])]


def _pre_norm(plan: "ArchPlan", path: str, width: int, reduction: int, branch: str = "main") -> list[Layer]:
    """A pre-activation block's norm + activation before a conv (nothing in a post-activation network)."""
    if not plan.preact:
        return []
    return [Layer(path, "norm", width, width, reduction, branch=branch),
            Layer(f"{path}.act", "act", width, width, reduction, act=plan.act, branch=branch)]


def block_layers(plan: "ArchPlan", b: "BlockPlan", reduction_in: int) -> list[Layer]:
    """timm's ``Bottleneck`` / ``PreBottleneck`` ``b``: 1x1 conv, grouped 3x3 conv, squeeze-excitation, 1x1 conv,
    shortcut, activation after the add."""
    p, wb, r = b.name, b.bottleneck_width, reduction_in * b.stride
    layers = [*_pre_norm(plan, f"{p}.norm1", b.in_width, reduction_in, branch="input"),
              *_conv_norm_act(plan, f"{p}.conv1", b.in_width, wb, reduction_in),
              *_pre_norm(plan, f"{p}.norm2", wb, reduction_in),
              *_conv_norm_act(plan, f"{p}.conv2", wb, wb, r, kernel=3, stride=b.stride, groups=b.groups,
                              dilation=b.dilation)]
    if b.se_width:
        se = dict(branch="se")
        layers += [Layer(f"{p}.se.fc1", "conv", wb, b.se_width, POOLED, bias=True, **se),
                   Layer(f"{p}.se.act", "act", b.se_width, b.se_width, POOLED, act=plan.se_activation, **se),
                   Layer(f"{p}.se.fc2", "conv", b.se_width, wb, POOLED, bias=True, **se),
                   Layer(f"{p}.se.gate", "gate", wb, wb, r, **se)]
    layers += [*_pre_norm(plan, f"{p}.norm3", wb, r),
               *_conv_norm_act(plan, f"{p}.conv3", wb, b.out_width, r, act=False, zero_init=plan.zero_init_last)]
    shortcut = dict(act=False, branch="shortcut")
    if b.shortcut == "avg":  # Sequential(AvgPool2d(2, stride, ceil_mode) or, dilated, AvgPool2dSame(2, 1), 1x1 conv)
        layers += [Layer(f"{p}.downsample.0", "pool", b.in_width, b.in_width, r, kernel=2, stride=b.stride,
                         dilation=b.dilation, branch="shortcut"),
                   *_conv_norm_act(plan, f"{p}.downsample.1", b.in_width, b.out_width, r, **shortcut)]
    elif b.shortcut == "conv1x1":
        layers += _conv_norm_act(plan, f"{p}.downsample", b.in_width, b.out_width, r, stride=b.stride, **shortcut)
    if not (plan.preact or plan.linear_out):
        layers.append(Layer(f"{p}.act3", "act", b.out_width, b.out_width, r, act=plan.act, branch="out"))
    return layers


def stem_layers(plan: "ArchPlan", in_chans: int = 3) -> list[Layer]:
    """The stride-2 3x3 stem (a ``ConvNormAct``, or a bare conv in a pre-activation network)."""
    return _conv_norm_act(plan, "stem", in_chans, plan.stem_width, 2, kernel=3, stride=2)


def final_layers(plan: "ArchPlan") -> list[Layer]:
    """What follows the last stage (timm's ``final_conv``): a 1x1 ``ConvNormAct`` (pre-activation networks
    included), an activation alone, or nothing."""
    reduction = math.prod((b.stride for stage in plan.stages for b in stage.blocks), start=2)
    last = plan.stages[-1].out_width if plan.stages else plan.stem_width
    if plan.final_conv_width:
        w = plan.final_conv_width
        return [Layer("final_conv.conv", "conv", last, w, reduction), Layer("final_conv.bn", "norm", w, w, reduction),
                Layer("final_conv.bn.act", "act", w, w, reduction, act=plan.act)]
    if plan.final_act:
        return [Layer("final_conv", "act", last, last, reduction, act=plan.act)]
    return []


def head_layers(plan: "ArchPlan", num_classes: int) -> list[Layer]:
    """The classifier on the pooled features (nothing when ``num_classes`` is 0)."""
    return [Layer("head.fc", "linear", plan.num_features, num_classes, POOLED, bias=True)] if num_classes else []


def layers(plan: "ArchPlan", num_classes: int = 1000, in_chans: int = 3) -> tuple[Layer, ...]:
    """Every layer of ``plan`` with a ``num_classes`` head (0: none), in timm's module (and ``state_dict``) order."""
    table = stem_layers(plan, in_chans)
    reduction = 2
    for stage in plan.stages:
        for b in stage.blocks:
            table += block_layers(plan, b, reduction)
            reduction *= b.stride
    return tuple(table + final_layers(plan) + head_layers(plan, num_classes))
