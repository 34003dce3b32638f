"""The framework-neutral architecture plan every framework plugin builds from.

Conventions (timm's ``RegNet``; HF's ``RegNetModel`` agrees on the X / Y corner):

* stem: 3x3 conv stride 2 (``stem_width`` channels) + norm + act; a plain conv when ``preact``;
* stages s1..s4; block 0 of every stage has the stage's stride (2, or 1 in a ``strides`` entry) on its grouped 3x3
  conv; a block whose shape changes gets the variant's shortcut (``BlockPlan.shortcut``), others add the identity;
  bottleneck width = ``round(stage width * bottle_ratio)``;
* group width is clipped to the bottleneck width; groups = bottleneck width // group width;
* Y blocks carry squeeze-excitation of width ``round(se_ratio * block input width)`` (Python/banker's round), with
  the network's activation inside (timm's ``SEModule(act_layer=...)``) and a sigmoid gate;
* one activation (``act``) and one norm (``norm``: BatchNorm, or GroupNorm of ``norm_group_size`` channels per
  group) everywhere; ``preact`` blocks are timm's ``PreBottleneck`` (norm + act before each conv, no norm on the
  shortcut conv, no activation after the add); ``linear_out`` drops the activation after the add;
* after s4: a 1x1 conv + norm + act of ``final_width`` channels when set (timm's ``num_features``), else an
  activation alone when ``preact`` or ``linear_out``, else nothing. Feature maps are taken before it;
* feature indices: 0 = stem (stride 2), 1..4 = s1..s4 (strides 4..32); level names P1..P5;
* ``output_stride`` 16 / 8 (``ArchPlan.with_output_stride``, timm's rule): once the network has reduced by
  ``output_stride``, later stages get stride 1 and their 3x3 convs a growing dilation instead; the first block of a
  dilated stage keeps the previous dilation (timm's ``first_dilation``: 1 when the stage's dilation is 1 or 2, else
  2). Padding stays ``dilation * (k // 2)`` on each side, so stride-1 maps keep their size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Iterable

from . import complexity, layer_table
from .errors import describe
from .feature_info import NUM_FEATURE_INDICES, FeatureInfo, FeatureInfoList, normalize_out_indices
from .registry_file import bottleneck_width
from .variant import ACTIVATIONS, Variant

MIN_INPUT_SIZE = 2**NUM_FEATURE_INDICES
OUTPUT_STRIDES = (8, 16, 32)
DESIGN_FEATURES = (*(f"act:{a}" for a in ACTIVATIONS if a != "relu"), "se_act", "groupnorm", "preact", "linear_out",
                   "final_conv", "shortcut:avg", "shortcut:none", "bottle_ratio", "stage_stride_1")


def check_output_stride(value) -> int:
    """``value`` if it is an allowed ``output_stride``, else a ``ValueError`` naming the option, value and choices."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {', '.join(map(str, OUTPUT_STRIDES))} (the reduction after "
                         f"which later stages are dilated instead of strided), got {describe(value)}")
    return value


@dataclass(frozen=True)
class BlockPlan:
    """One residual bottleneck block."""

    name: str  # timm module path, e.g. "s2.b1"
    in_width: int
    out_width: int
    bottleneck_width: int
    stride: int
    groups: int
    se_width: int  # 0 when the block has no squeeze-excitation
    shortcut: str  # "identity" | "conv1x1" (1x1 conv [+ norm]) | "avg" (2x2 avg pool, then 1x1 conv [+ norm]) | "none"
    dilation: int = 1  # of the grouped 3x3 conv (timm's ``dilation[0]``); padding = dilation each side

    @property
    def shortcut_conv(self) -> bool:
        """The shortcut has a 1x1 projection conv (``conv1x1`` or ``avg``)."""
        return self.shortcut in ("conv1x1", "avg")


@dataclass(frozen=True)
class StagePlan:
    """One stage: ``depth`` blocks of the same width; the first has ``stride`` (2, or 1 when dilated)."""

    name: str  # "s1" .. "s4"
    index: int  # 1 .. 4
    in_width: int
    out_width: int
    depth: int
    stride: int
    group_width: int  # after clipping to the stage width
    groups: int
    bottleneck_width: int
    blocks: tuple[BlockPlan, ...]
    dilation: int = 1  # timm's ``RegStage`` dilation: that of every block but the first (see ``BlockPlan``)

    @property
    def se_widths(self) -> tuple[int, ...]:
        return tuple(b.se_width for b in self.blocks)


@dataclass(frozen=True)
class ArchPlan:
    """Per-stage layout of a variant, with complexity and feature metadata. Pure Python."""

    name: str
    block: str
    stem_width: int
    se_ratio: float
    stages: tuple[StagePlan, ...]
    output_stride: int = 32  # total reduction of the last map (stages past it are dilated)
    act: str = "relu"  # one of variant.ACTIVATIONS (timm's get_act_layer names; "gelu" is the exact erf form)
    se_act: str = ""  # inside squeeze-excitation ("" = act, timm's rule; transformers' Y blocks keep "relu")
    norm: str = "batchnorm"  # "batchnorm" | "groupnorm"
    norm_group_size: int = 0  # channels per GroupNorm group
    norm_num_groups: int = 0  # or a fixed number of groups (timm's GroupNorm(num_groups=...))
    preact: bool = False
    linear_out: bool = False
    final_width: int = 0  # channels of the 1x1 conv after s4 (0: none)
    downsample: str = "conv1x1"  # the shortcut a shape-changing block gets (also when dilation changes)
    trunk_only: bool = False  # stem and stages only, nothing after them (``truncated``: features_only models)

    @property
    def num_features(self) -> int:
        """Channels of the classifier's input: the final conv's, else the last stage's."""
        return self.final_conv_width or self.stages[-1].out_width

    @property
    def final_conv_width(self) -> int:
        """Channels of the 1x1 conv + norm + act built after s4 (0: none, also in a truncated plan)."""
        return 0 if self.trunk_only else self.final_width

    @property
    def final_act(self) -> bool:
        """An activation alone follows s4 (timm: no final conv, and ``preact`` or ``linear_out``)."""
        return not self.trunk_only and not self.final_width and (self.preact or self.linear_out)

    @property
    def se_activation(self) -> str:
        """The activation between the squeeze-excitation's two 1x1 convs."""
        return self.se_act or self.act

    def design_features(self) -> frozenset[str]:
        """What this plan needs beyond the RegNet X / Y corner (ReLU, BatchNorm, post-activation, 1x1-conv
        shortcuts, bottleneck ratio 1, stride-2 stages), by the names frameworks declare in
        ``Framework.design_features`` (see ``DESIGN_FEATURES``)."""
        blocks = [b for s in self.stages for b in s.blocks]
        found = {f"act:{self.act}"} if self.act != "relu" else set()
        if any(b.se_width for b in blocks) and self.se_activation != self.act:
            found |= {"se_act"} | ({f"act:{self.se_activation}"} if self.se_activation != "relu" else set())
        found |= {"groupnorm"} if self.norm == "groupnorm" else set()
        found |= {"preact"} if self.preact else set()
        found |= {"linear_out"} if self.linear_out else set()
        found |= {"final_conv"} if self.final_width else set()
        found |= {f"shortcut:{b.shortcut}" for b in blocks if b.shortcut in ("avg", "none")}
        found |= {"bottle_ratio"} if any(b.bottleneck_width != b.out_width for b in blocks) else set()
        found |= {"stage_stride_1"} if any(s.stride == 1 and s.dilation == 1 for s in self.stages) else set()
        return frozenset(found)

    @property
    def zero_init_last(self) -> bool:
        """Whether random init zeroes each block's last norm scale (timm: post-activation blocks, but not RegNetZ,
        which timm builds with ``zero_init_last=False``; pre-activation blocks have no last norm)."""
        return not (self.preact or self.linear_out)

    def norm_groups(self, channels: int) -> int:
        """Groups of the GroupNorm over ``channels`` (``norm == "groupnorm"`` only)."""
        return self.norm_num_groups or channels // self.norm_group_size

    @property
    def depth(self) -> int:
        return sum(s.depth for s in self.stages)

    def all_feature_info(self) -> FeatureInfoList:
        """All five maps (stem, s1..s4): what a classifier or headless model reports."""
        infos = FeatureInfoList([FeatureInfo(0, "stem", "P1", self.stem_width, 2)])
        reduction = 2
        for s in self.stages:
            reduction *= s.stride
            infos.append(FeatureInfo(s.index, s.name, f"P{s.index + 1}", s.out_width, reduction))
        return infos

    def feature_info(self, out_indices: Iterable[int] = (1, 2, 3, 4)) -> FeatureInfoList:
        """Feature metadata for ``out_indices`` (validated, returned in ascending order)."""
        infos = self.all_feature_info()
        return FeatureInfoList(infos[i] for i in normalize_out_indices(out_indices, len(infos)))

    def layers(self, num_classes: int = 1000, in_chans: int = 3) -> "tuple[layer_table.Layer, ...]":
        """Every layer (conv / norm / act / pool / gate / linear, with widths, groups, strides and timm's module
        path) in timm's module order: the structural plan ``keys`` and ``complexity`` read."""
        return layer_table.layers(self, num_classes, in_chans)

    def params(self, num_classes: int = 1000, in_chans: int = 3) -> int:
        """Exact parameter count (conv weights, BN affine, SE biases, classifier weight + bias)."""
        return complexity.count(self, resolution=32, num_classes=num_classes, in_chans=in_chans).params

    def flops(self, resolution: int = 224, num_classes: int = 1000, in_chans: int = 3) -> int:
        """Multiply-accumulates at ``resolution`` by pycls's counting rules."""
        return complexity.count(self, resolution, num_classes, in_chans).flops

    def activations(self, resolution: int = 224, num_classes: int = 1000, in_chans: int = 3) -> int:
        """Output elements of every conv / linear layer at ``resolution`` (pycls's ``acts``)."""
        return complexity.count(self, resolution, num_classes, in_chans).acts

    def complexity(self, resolution: int = 224, num_classes: int = 1000, in_chans: int = 3) -> "complexity.Complexity":
        return complexity.count(self, resolution, num_classes, in_chans)

    def drop_path_rates(self, rate: float) -> dict[str, float]:
        """timm's stochastic-depth schedule: block name -> rate, linear from 0 to ``rate`` over all blocks."""
        names = [b.name for s in self.stages for b in s.blocks]
        last = max(len(names) - 1, 1)
        return {name: rate * i / last for i, name in enumerate(names)}

    def truncated(self, num_stages: int) -> "ArchPlan":
        """The trunk up to stage ``num_stages`` (what a ``features_only`` model whose deepest index it is builds:
        nothing after that stage, so no final conv or activation either)."""
        return replace(self, stages=self.stages[:max(num_stages, 0)], trunk_only=True)

    def with_output_stride(self, output_stride: int) -> "ArchPlan":
        """This (undilated) plan with timm's ``output_stride`` rule applied (module docstring): strides and dilations
        change, widths, groups, keys and parameters do not."""
        check_output_stride(output_stride)
        if output_stride == self.output_stride:
            return self
        if self.output_stride != 32:
            raise ValueError(f"{self.name}: output_stride is already {self.output_stride}; apply it to the plain plan")
        net_stride, dilation, stages = 2, 1, []
        for s in self.stages:
            stride = s.stride
            if net_stride >= output_stride:
                dilation, stride = dilation * s.stride, 1
            else:
                net_stride *= stride
            first = 1 if dilation in (1, 2) else 2
            blocks = tuple(replace(b, stride=stride if j == 0 else 1, dilation=first if j == 0 else dilation,
                                   shortcut=b.shortcut if b.shortcut != "identity" or j or first == dilation
                                   else self.downsample)
                           for j, b in enumerate(s.blocks))
            stages.append(replace(s, stride=stride, dilation=dilation, blocks=blocks))
        return replace(self, stages=tuple(stages), output_stride=output_stride)

    def to_config(self) -> dict:
        """This plan as plain JSON types (dicts, lists, numbers, strings), for a framework's serialised config
        (Keras ``get_config``); ``ArchPlan.from_config`` rebuilds an equal plan from it."""
        config = asdict(self)
        config["stages"] = [{**s, "blocks": list(s["blocks"])} for s in config["stages"]]
        return config

    @classmethod
    def from_config(cls, config: dict) -> "ArchPlan":
        """The plan ``to_config`` described; a ``ValueError`` naming the problem for anything else."""
        try:
            stages = tuple(StagePlan(**{**s, "blocks": tuple(BlockPlan(**b) for b in s["blocks"])})
                           for s in config["stages"])
            return cls(**{**config, "stages": stages})
        except (KeyError, TypeError) as e:
            raise ValueError(f"not an ArchPlan config ({type(e).__name__}: {e}); expected the dict "
                             f"ArchPlan.to_config() returns (regnet_zoo.plan(name).to_config())") from None

    @property
    def min_input_size(self) -> int:
        """Smallest input side a plugin accepts: 2**5 = 32, so each of the five stride-2 layers halves real pixels."""
        return MIN_INPUT_SIZE


def build_plan(variant: Variant) -> ArchPlan:
    """Derive the per-block plan of ``variant`` (assumed validated by the registry loader)."""
    stages = []
    prev = variant.stem_width
    for i, (width, depth, gw, stage_stride) in enumerate(
            zip(variant.widths, variant.depths, variant.group_widths, variant.strides), start=1):
        bottleneck = bottleneck_width(width, variant.bottle_ratio)
        group_width = min(gw, bottleneck)
        blocks = []
        for j in range(depth):
            in_w = prev if j == 0 else width
            stride = stage_stride if j == 0 else 1
            se = int(round(variant.se_ratio * in_w)) if variant.block == "y" else 0
            shortcut = variant.downsample if in_w != width or stride != 1 else "identity"
            blocks.append(BlockPlan(f"s{i}.b{j + 1}", in_w, width, bottleneck, stride, bottleneck // group_width, se,
                                    shortcut))
        stages.append(StagePlan(f"s{i}", i, prev, width, depth, stage_stride, group_width, bottleneck // group_width,
                                bottleneck, tuple(blocks)))
        prev = width
    return ArchPlan(variant.name, variant.block, variant.stem_width, variant.se_ratio, tuple(stages),
                    act=variant.act, se_act=variant.se_act if variant.se_act != variant.act else "",
                    norm=variant.norm, norm_group_size=variant.norm_group_size,
                    norm_num_groups=variant.norm_groups,
                    preact=variant.preact, linear_out=variant.linear_out, final_width=variant.num_features,
                    downsample=variant.downsample)
