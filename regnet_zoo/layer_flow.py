"""Running the structural plan: the dataflow a backend follows to build a network from the layer table.

A backend that builds from the table supplies ``NetworkOps`` (how to apply one ``Unit``, pool a map for the
squeeze-excitation branch, gate, and add the shortcut); ``run_trunk`` walks the stem and every block, by the layers'
``branch`` (``layer_table``), and returns the stage maps. A new block kind is then a new ``block_layers`` rule (and,
for a new layer kind, a new case in each backend's ``unit``), not a new forward per backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Protocol

from .layer_table import POOLED, Layer, block_layers, stem_layers

if TYPE_CHECKING:
    from .plan import ArchPlan, BlockPlan


@dataclass(frozen=True)
class Unit:
    """A layer with the norm and the activation that directly follow it on the same branch: what a backend runs as
    one op (a BatchNorm folded into the conv before it, the activation as the conv's post-op). ``norm`` only follows
    a ``conv``; a lone norm, act, pool or gate is a unit of its own."""

    layer: Layer
    norm: Layer | None = None
    act: Layer | None = None

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def kind(self) -> str:
        return self.layer.kind

    @property
    def branch(self) -> str:
        return self.layer.branch

    @property
    def pooled(self) -> bool:
        """A conv on the globally pooled map (a squeeze-excitation 1x1), which a backend may run as a matmul."""
        return self.layer.kind == "conv" and self.layer.reduction == POOLED

    @property
    def activation(self) -> str | None:
        """The activation this unit applies: its own (an ``act`` unit) or the one fused after it; None for none."""
        act = self.layer if self.layer.kind == "act" else self.act
        return act.act if act is not None else None

    @property
    def conv_norm_act(self) -> str | None:
        """The path of the timm ``ConvNormAct`` this unit is (``s1.b1.conv1`` for ``s1.b1.conv1.conv`` +
        ``s1.b1.conv1.bn``), or None (a bare conv, or a unit that is no conv)."""
        path = self.layer.name.removesuffix(".conv")
        return path if self.norm is not None and self.norm.name == f"{path}.bn" else None


def units(layers: Iterable[Layer]) -> list[Unit]:
    """``layers`` grouped into ``Unit``s, in order."""
    out: list[Unit] = []
    for layer in layers:
        last = out[-1] if out else None
        if last is not None and last.branch == layer.branch and last.act is None:
            if layer.kind == "norm" and last.kind == "conv" and last.norm is None:
                out[-1] = Unit(last.layer, layer)
                continue
            if layer.kind == "act" and last.kind in ("conv", "norm", "linear"):
                out[-1] = Unit(last.layer, last.norm, layer)
                continue
        out.append(Unit(layer))
    return out


class NetworkOps(Protocol):
    """What a backend supplies to ``run_trunk`` (``x``, ``s``: its own tensors)."""

    def unit(self, unit: Unit, x: Any) -> Any:
        """``unit`` (a conv, norm, act, pool or linear with its fused norm and act) applied to ``x``."""

    def squeeze(self, x: Any, unit: Unit) -> Any:
        """``x`` globally average-pooled: the input of the squeeze-excitation branch whose first unit is ``unit``."""

    def gate(self, x: Any, s: Any, unit: Unit) -> Any:
        """``x`` scaled per channel by ``sigmoid(s)`` (``unit``: the branch's ``gate``)."""

    def add(self, y: Any, shortcut: Any, block: "BlockPlan") -> Any:
        """The residual sum of ``block``'s main branch ``y`` and its shortcut."""


def run_block(plan: "ArchPlan", block: "BlockPlan", reduction_in: int, x: Any, ops: NetworkOps) -> Any:
    """``block`` on ``x``: the ``input`` units, then the ``main`` branch with its ``se`` side branch and the
    ``shortcut`` branch from the same input, their sum (unless the block has no shortcut), then the ``out`` units."""
    flow = units(block_layers(plan, block, reduction_in))
    for u in flow:
        if u.branch == "input":
            x = ops.unit(u, x)
    y, s, shortcut = x, None, x
    for u in flow:
        if u.branch == "main":
            y = ops.unit(u, y)
        elif u.branch == "se" and u.kind == "gate":
            y, s = ops.gate(y, s, u), None
        elif u.branch == "se":
            s = ops.unit(u, ops.squeeze(y, u) if s is None else s)
        elif u.branch == "shortcut":
            shortcut = ops.unit(u, shortcut)
    if block.shortcut != "none":
        y = ops.add(y, shortcut, block)
    for u in flow:
        if u.branch == "out":
            y = ops.unit(u, y)
    return y


def run_trunk(plan: "ArchPlan", x: Any, ops: NetworkOps, *, in_chans: int = 3, stages: int | None = None) -> list:
    """``[stem map, stage 1 map, ...]`` of ``plan`` on ``x``, through the first ``stages`` stages (all by default)."""
    for u in units(stem_layers(plan, in_chans)):
        x = ops.unit(u, x)
    maps, reduction = [x], 2
    for stage in plan.stages[:stages]:
        for b in stage.blocks:
            x = run_block(plan, b, reduction, x, ops)
            reduction *= b.stride
        maps.append(x)
    return maps
