"""RegNets as ``torch.nn.Module``s assembled from timm's own blocks, following a regnet-zoo ``ArchPlan``.

The plan's explicit per-block widths, groups, SE widths and shortcuts are passed to timm's ``Bottleneck`` /
``PreBottleneck`` with the plan's activation and norm (nothing is regenerated from w0/wa/wm), and modules are named
as in ``timm.models.regnet.RegNet`` (``stem``, ``s1.b1.conv2``, ``s3.b2.se.fc1``, ``final_conv``, ``head.fc``), so
timm's ``state_dict`` loads as is and the forward pass is op for op timm's.
"""

import math  # no "from __future__ import annotations": FX copies forward's annotations into generated code
from functools import partial
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
from timm.layers import (ClassifierHead, ConvNormAct, GroupNormAct, SEModule, calculate_drop_path_rates,
                         create_conv2d, get_act_layer)
from timm.models._features import feature_take_indices
from timm.models.regnet import Bottleneck, PreBottleneck, RegStage
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

from regnet_zoo.contract import check_image_batch
from regnet_zoo.feature_info import FeatureInfoList
from regnet_zoo.plan import ArchPlan
from regnet_zoo.variant import ACTIVATIONS

from .outputs import RegNetOutput, classification_loss


def act_layer(name: str):
    """timm's activation layer class for one of the plan's activation names (``variant.ACTIVATIONS``, which are
    timm's ``get_act_layer`` names); any other name is a ``ValueError``, never one of timm's further activations."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}")
    return get_act_layer(name)


def norm_layer_of(plan: ArchPlan):
    """timm's norm layer for the plan: ``nn.BatchNorm2d``, or ``GroupNormAct`` of ``plan.norm_group_size`` channels
    per group or ``plan.norm_num_groups`` groups."""
    if plan.norm == "batchnorm":
        return nn.BatchNorm2d
    return partial(GroupNormAct, num_groups=plan.norm_num_groups or 32, group_size=plan.norm_group_size or None)


def build_block(plan: ArchPlan, plan_block, drop_path_rate: float = 0.0, device=None, dtype=None,
                stage_dilation: int = 1):
    """timm's ``Bottleneck`` (``PreBottleneck`` when ``plan.preact``) with exactly the widths, groups, SE width,
    shortcut and dilation of ``plan_block`` (a ``BlockPlan``) and the plan's activation and norm;
    ``stage_dilation`` is its stage's (timm's ``dilation[1]``, which decides timm's shortcut)."""
    b = plan_block
    if b.bottleneck_width % b.groups:
        raise ValueError(f"{b.name}: {b.groups} groups do not divide bottleneck width {b.bottleneck_width}")
    act = act_layer(plan.act)
    block = (PreBottleneck if plan.preact else Bottleneck)(
        b.in_width, b.out_width, stride=b.stride, dilation=(b.dilation, stage_dilation),
        bottle_ratio=b.bottleneck_width / b.out_width, group_size=b.bottleneck_width // b.groups,
        se_ratio=b.se_width / b.in_width if b.se_width else 0.0,
        downsample=None if b.shortcut == "none" else "avg" if b.shortcut == "avg" else "conv1x1",
        linear_out=plan.linear_out, act_layer=act, norm_layer=norm_layer_of(plan), drop_path_rate=drop_path_rate,
        device=device, dtype=dtype,
    )
    if b.se_width and (block.se.fc1.out_channels != b.se_width or plan.se_activation != plan.act):
        # a third-party plan with its own SE rounding, or another activation inside SE (transformers' Y blocks)
        block.se = SEModule(b.bottleneck_width, rd_channels=b.se_width, act_layer=act_layer(plan.se_activation),
                            device=device, dtype=dtype)
    conv2 = block.conv2 if plan.preact else block.conv2.conv
    shortcut = ("none" if block.downsample is None else "identity" if isinstance(block.downsample, nn.Identity)
                else "avg" if isinstance(block.downsample, nn.Sequential) else "conv1x1")
    got = (conv2.groups, conv2.out_channels, shortcut, conv2.dilation[0])
    want = (b.groups, b.bottleneck_width, b.shortcut, b.dilation)
    if got != want:  # pragma: no cover - guards timm changing its block rules under us
        raise RuntimeError(f"{b.name}: timm built (groups, width, shortcut, dilation) {got}, the plan says {want}")
    return block


def init_weights(module: nn.Module, zero_init_last: bool = True) -> None:
    """timm's RegNet initialisation: fan-out normal convs, N(0, 0.01) linear, last BN of each block zeroed
    (unless ``zero_init_last`` is False: ``ArchPlan.zero_init_last``)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (Bottleneck, PreBottleneck)) and zero_init_last:
            m.zero_init_last()


def final_layer(plan: ArchPlan, device=None, dtype=None) -> nn.Module:
    """timm's ``final_conv``: a 1x1 ConvNormAct to ``plan.final_width``, an activation alone, or an identity."""
    if plan.final_conv_width:
        return ConvNormAct(plan.stages[-1].out_width, plan.final_conv_width, kernel_size=1,
                           act_layer=act_layer(plan.act), norm_layer=norm_layer_of(plan), device=device,
                           dtype=dtype)
    return act_layer(plan.act)() if plan.final_act else nn.Identity()


def tracing() -> bool:
    """True while a graph is being captured (FX, ``torch.jit.trace``, ``torch.compile`` / ``torch.export``): input
    checks stay out of those graphs. (TorchScript never compiles them: models call them under
    ``if not torch.jit.is_scripting()``, a branch the script compiler drops.)"""
    return is_fx_symbolic_tracing() or torch.jit.is_tracing() or torch.compiler.is_compiling()


def check_input(x, in_chans: int, min_size: int) -> None:
    """Refuse a batch the network cannot take, saying what was expected (eager mode; see ``tracing``)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor batch of shape (N, {in_chans}, H, W), got {type(x).__name__}")
    check_image_batch(tuple(x.shape), x.dtype, in_chans=in_chans, channels_first=True, min_size=min_size)


class RegNetTrunk(nn.Module):
    """Stem and stages ``s1..s{num_stages}`` of a plan, as direct children (so names are timm's)."""

    def __init__(self, plan: ArchPlan, in_chans: int = 3, num_stages: int = 4, drop_path_rate: float = 0.0,
                 device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.plan = plan
        self.in_chans = in_chans
        self.min_input_size = plan.min_input_size
        if plan.preact:  # timm: a bare conv, the first block's norm1 follows
            self.stem = create_conv2d(in_chans, plan.stem_width, 3, stride=2, **dd)
        else:
            self.stem = ConvNormAct(in_chans, plan.stem_width, 3, stride=2, act_layer=act_layer(plan.act),
                                    norm_layer=norm_layer_of(plan), **dd)
        rates = calculate_drop_path_rates(drop_path_rate, [s.depth for s in plan.stages], stagewise=True)
        self.stage_names = tuple(s.name for s in plan.stages[:num_stages])
        for stage, dpr in zip(plan.stages[:num_stages], rates):
            # timm's RegStage (grad checkpointing via checkpoint_seq), filled with the plan's blocks
            module = RegStage(0, stage.in_width, stage.out_width, stage.stride, stage.dilation)
            for b, rate in zip(stage.blocks, dpr):
                module.add_module(b.name.split(".")[1],
                                  build_block(plan, b, rate, stage_dilation=stage.dilation, **dd))
            self.add_module(stage.name, module)

    def stages(self):
        return [getattr(self, n) for n in self.stage_names]

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's blocks in the backward pass instead of storing activations (timm's API)."""
        for s in self.stages():
            s.grad_checkpointing = enable

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^stem", blocks=r"^s(\d+)" if coarse else r"^s(\d+)\.b(\d+)")

    def check_input(self, x) -> torch.Tensor:
        """Apply the host's input contract in eager mode and return ``x`` in the model's dtype (a float64 batch as
        float32); a no-op while a graph is captured (``tracing``)."""
        if tracing():
            return x
        check_input(x, self.in_chans, self.min_input_size)
        dtype = self.first_weight().dtype
        return x if x.dtype == dtype else x.to(dtype)

    @torch.jit.ignore
    def first_weight(self) -> torch.Tensor:
        """The stem conv's weight (its device and dtype are the model's)."""
        return self.stem.weight if isinstance(self.stem, nn.Conv2d) else self.stem.conv.weight

    def optimize_for_inference(self, precision: str = "fp32", *, compile: bool = True, channels_last: bool = True):
        """An inference-only copy: BN folded into convs, channels-last, AOTInductor; ``"bf16"`` for AMX / GPU."""
        from .fast import optimize_for_inference

        return optimize_for_inference(self, precision, compile=compile, channels_last=channels_last)


class RegNet(RegNetTrunk):
    """A RegNet classifier (``num_classes > 0``) or pooled-feature model (``num_classes == 0``), with timm's model API.

    ``model(x)`` returns logits (or pooled features; the unpooled last map with ``global_pool=""``); with
    ``output_hidden_states=True``, ``return_dict=True`` or ``labels`` it returns a ``RegNetOutput`` (HF field names;
    ``hidden_states`` = stem, s1..s4; ``pooler_output`` = the head's global pool). ``forward_features``,
    ``forward_head(pre_logits=)``, ``forward_intermediates``, ``prune_intermediate_layers``, ``reset_classifier``
    and ``feature_info`` (all five maps) behave as timm's ``RegNet``; ``torch.jit.script`` and FX tracing work.
    """

    def __init__(self, plan: ArchPlan, num_classes: int = 1000, in_chans: int = 3, global_pool: str = "avg",
                 drop_rate: float = 0.0, drop_path_rate: float = 0.0, device=None, dtype=None):
        super().__init__(plan, in_chans, 4, drop_path_rate, device=device, dtype=dtype)
        self.num_classes = num_classes
        self.num_features = plan.num_features
        self.drop_rate = drop_rate
        self.feature_info = plan.all_feature_info()
        self.final_conv = final_layer(plan, **{"device": device, "dtype": dtype})  # timm's (identity for X / Y)
        self.head = ClassifierHead(plan.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate,
                                   device=device, dtype=dtype)
        self.head_hidden_size = self.head.num_features
        init_weights(self, plan.zero_init_last)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A freshly initialised classifier with ``num_classes`` outputs (0 = none); ``global_pool`` ("avg", "max",
        "avgmax", "catavgmax", "" = no pooling) replaces the pooling, ``None`` keeps it. Device, dtype and train
        mode follow the model."""
        p = self.first_weight()
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool, in_features=self.num_features, device=p.device,
                        dtype=p.dtype)
        self.head_hidden_size = self.head.num_features
        if isinstance(self.head.fc, nn.Linear):
            nn.init.normal_(self.head.fc.weight, 0.0, 0.01)
            nn.init.zeros_(self.head.fc.bias)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """timm's: the maps at ``indices`` (None = all five, an int n = the last n, a list = those; 0 = stem,
        1..4 = s1..s4), and unless ``intermediates_only`` the ``forward_features`` output. ``stop_early`` runs
        only up to the deepest index; ``norm`` is accepted for timm's signature (RegNet has no final norm)."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW' (the maps are NCHW), got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        stages = self.stages()[:max_index] if stop_early else self.stages()
        intermediates = []
        x = self.stem(x)
        if 0 in take_indices:
            intermediates.append(x)
        for i, stage in enumerate(stages, start=1):
            x = stage(x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        if len(stages) == len(self.stage_names):
            x = self.final_conv(x)
        return x, intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """timm's: replace the stages after the deepest of ``indices`` by identities (the features then end there,
        ``num_features`` shrinks and the head goes too); ``prune_head`` drops the classifier and its pooling. A final
        1x1 conv (RegNetZ) never feeds the features: it goes with the head or the norm (so no parameter is left
        unused). Returns the kept (absolute) indices."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        for name in self.stage_names[max_index:]:
            setattr(self, name, nn.Identity())
        prune_end = max_index < len(self.stage_names) or (
            (prune_norm or prune_head) and isinstance(self.final_conv, ConvNormAct))
        if prune_end:
            self.final_conv = nn.Identity()
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last (unpooled) map."""
        x = self.stem(x)
        x = self.s1(x)
        x = self.s2(x)
        x = self.s3(x)
        x = self.s4(x)
        return self.final_conv(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None, output_hidden_states: bool = False,
                return_dict: bool = False):
        # TorchScript drops this branch and FX skips it (it makes every argument a Proxy): a scripted or FX-traced
        # model is timm's plain forward, x -> logits (or pooled features), and ignores the other arguments
        if not torch.jit.is_scripting():
            if not is_fx_symbolic_tracing():
                x = self.check_input(x)
                if labels is not None or output_hidden_states or return_dict:
                    return self.forward_output(x, labels, output_hidden_states)
        return self.forward_head(self.forward_features(x))

    def forward_output(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None,
                       output_hidden_states: bool = False) -> RegNetOutput:
        """The ``RegNetOutput`` form of ``forward`` (eager, compile and export; not TorchScript)."""
        x, hidden = self.forward_intermediates(x)
        head = self.head
        pooled = head.global_pool(x)
        logits = head.flatten(head.fc(head.drop(pooled))) if self.num_classes else None
        loss = None
        if labels is not None:
            if logits is None:
                raise ValueError("labels= needs a classifier head; this model was built with num_classes=0")
            loss = classification_loss(logits, labels)
        return RegNetOutput(logits=logits, pooler_output=pooled, last_hidden_state=x,
                            hidden_states=tuple(hidden) if output_hidden_states else None, loss=loss)


class RegNetFeatures(RegNetTrunk):
    """A backbone returning the feature maps at ``out_indices`` (0 = stem, 1..4 = s1..s4) as a list, NCHW.

    Stages after the deepest requested index are not built (as timm's ``features_only``). ``feature_info`` is the
    ``FeatureInfoList`` (index, name, level, channels, reduction; timm's ``channels()`` / ``reduction()``) of the
    returned maps. It is timm's "getter" feature model (``forward_intermediates(indices=out_indices,
    intermediates_only=True)`` of the pruned network) with canonical ``state_dict`` names; TorchScript and FX work.
    """

    __jit_unused_properties__ = ["out_channels", "reductions"]  # metadata, not compiled by torch.jit.script

    def __init__(self, plan: ArchPlan, out_indices=(1, 2, 3, 4), in_chans: int = 3, drop_path_rate: float = 0.0,
                 device=None, dtype=None):
        out_indices = tuple(out_indices)
        super().__init__(plan, in_chans, max(out_indices), drop_path_rate, device=device, dtype=dtype)
        self.out_indices = out_indices
        self.feature_info: FeatureInfoList = plan.feature_info(out_indices)
        init_weights(self, plan.zero_init_last)

    @property
    def out_channels(self) -> list[int]:
        """Channels of each returned map (``in_channels_list`` of a torchvision FPN)."""
        return [f.channels for f in self.feature_info]

    @property
    def reductions(self) -> list[int]:
        return [f.reduction for f in self.feature_info]

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        if not torch.jit.is_scripting():
            x = self.check_input(x)
        out: List[torch.Tensor] = []
        for i, (_, module) in enumerate(self.named_children()):  # stem, s1..sk, in order (TorchScript unrolls it)
            x = module(x)
            if i in self.out_indices:
                out.append(x)
        return out


__all__ = ["RegNet", "RegNetFeatures", "RegNetTrunk", "build_block", "check_input", "init_weights", "tracing"]
