"""RegNet X/Y as ``torch.nn.Module``s assembled from timm's own blocks, following a regnet-zoo ``ArchPlan``.

The plan's explicit per-block widths, groups and SE widths are passed to timm's ``Bottleneck`` (nothing is
regenerated from w0/wa/wm), and modules are named as in ``timm.models.regnet.RegNet`` (``stem``, ``s1.b1.conv2``,
``s3.b2.se.fc1``, ``head.fc``), so timm's ``state_dict`` loads as is and the forward pass is op for op timm's.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
from timm.layers import ClassifierHead, ConvNormAct, SEModule, calculate_drop_path_rates
from timm.models.regnet import Bottleneck, RegStage

from regnet_zoo.contract import check_image_batch
from regnet_zoo.feature_info import FeatureInfo
from regnet_zoo.plan import ArchPlan

from .outputs import RegNetOutput, classification_loss


def build_block(plan_block, drop_path_rate: float = 0.0, norm_layer=nn.BatchNorm2d, device=None, dtype=None):
    """timm's ``Bottleneck`` with exactly the widths, groups and SE width of ``plan_block`` (a ``BlockPlan``)."""
    b = plan_block
    if b.bottleneck_width % b.groups:
        raise ValueError(f"{b.name}: {b.groups} groups do not divide bottleneck width {b.bottleneck_width}")
    block = Bottleneck(
        b.in_width, b.out_width, stride=b.stride, dilation=(1, 1),
        bottle_ratio=b.bottleneck_width / b.out_width, group_size=b.bottleneck_width // b.groups,
        se_ratio=b.se_width / b.in_width if b.se_width else 0.0, downsample="conv1x1",
        act_layer=nn.ReLU, norm_layer=norm_layer, drop_path_rate=drop_path_rate, device=device, dtype=dtype,
    )
    if b.se_width and block.se.fc1.out_channels != b.se_width:  # a third-party plan with its own SE rounding
        block.se = SEModule(b.bottleneck_width, rd_channels=b.se_width, act_layer=nn.ReLU, device=device, dtype=dtype)
    got = (block.conv2.conv.groups, block.conv2.conv.out_channels, not isinstance(block.downsample, nn.Identity))
    want = (b.groups, b.bottleneck_width, b.shortcut_conv)
    if got != want:  # pragma: no cover - guards timm changing its block rules under us
        raise RuntimeError(f"{b.name}: timm built (groups, width, shortcut conv) {got}, the plan says {want}")
    return block


def init_weights(module: nn.Module) -> None:
    """timm's RegNet initialisation: fan-out normal convs, N(0, 0.01) linear, last BN of each block zeroed."""
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
        elif isinstance(m, Bottleneck):
            m.zero_init_last()


def check_input(x, in_chans: int, min_size: int) -> None:
    """Refuse a batch the network cannot take, saying what was expected (runs in eager, compile and export)."""
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
        self.stem = ConvNormAct(in_chans, plan.stem_width, 3, stride=2, act_layer=nn.ReLU,
                                norm_layer=nn.BatchNorm2d, **dd)
        rates = calculate_drop_path_rates(drop_path_rate, [s.depth for s in plan.stages], stagewise=True)
        self.stage_names = tuple(s.name for s in plan.stages[:num_stages])
        for stage, dpr in zip(plan.stages[:num_stages], rates):
            # timm's RegStage (grad checkpointing via checkpoint_seq), filled with the plan's blocks
            module = RegStage(0, stage.in_width, stage.out_width, stage.stride, 1)
            for b, rate in zip(stage.blocks, dpr):
                module.add_module(b.name.split(".")[1], build_block(b, rate, **dd))
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
        """Apply the host's input contract; returns ``x`` in the model's dtype (e.g. a float64 batch as float32)."""
        check_input(x, self.in_chans, self.min_input_size)
        dtype = self.stem.conv.weight.dtype
        return x if x.dtype == dtype else x.to(dtype)

    def optimize_for_inference(self, precision: str = "fp32", *, compile: bool = True, channels_last: bool = True):
        """An inference-only copy: BN folded into convs, channels-last, ``torch.compile``; ``"bf16"`` for AMX / GPU."""
        from .fast import optimize_for_inference

        return optimize_for_inference(self, precision, compile=compile, channels_last=channels_last)


class RegNet(RegNetTrunk):
    """A RegNet classifier (``num_classes > 0``) or pooled-feature model (``num_classes == 0``).

    ``model(x)`` returns logits (or pooled features); with ``output_hidden_states=True``, ``return_dict=True`` or
    ``labels`` it returns a ``RegNetOutput`` (HF field names; ``hidden_states`` = stem, s1..s4).
    """

    def __init__(self, plan: ArchPlan, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, device=None, dtype=None):
        super().__init__(plan, in_chans, 4, drop_path_rate, device=device, dtype=dtype)
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = plan.num_features
        self.drop_rate = drop_rate
        self.feature_info = plan.all_feature_info()
        self.final_conv = nn.Identity()  # timm's attribute (identity for X/Y), kept for name parity
        self.head = ClassifierHead(plan.num_features, num_classes, pool_type="avg", drop_rate=drop_rate,
                                   device=device, dtype=dtype)
        init_weights(self)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a freshly initialised one with ``num_classes`` outputs (0 = none)."""
        p = self.stem.conv.weight
        self.num_classes = num_classes
        self.head.reset(num_classes, device=p.device, dtype=p.dtype)
        if isinstance(self.head.fc, nn.Linear):
            nn.init.normal_(self.head.fc.weight, 0.0, 0.01)
            nn.init.zeros_(self.head.fc.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for s in self.stages():
            x = s(x)
        return self.final_conv(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits) if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None, output_hidden_states: bool = False,
                return_dict: bool = False):
        x = self.check_input(x)
        if labels is None and not output_hidden_states and not return_dict:
            return self.forward_head(self.forward_features(x))
        hidden = []
        x = self.stem(x)
        hidden.append(x)
        for s in self.stages():
            x = s(x)
            hidden.append(x)
        x = self.final_conv(x)
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
    list of regnet-zoo ``FeatureInfo`` (index, name, level, channels, reduction) of the returned maps.
    """

    def __init__(self, plan: ArchPlan, out_indices=(1, 2, 3, 4), in_chans: int = 3, drop_path_rate: float = 0.0,
                 device=None, dtype=None):
        out_indices = tuple(out_indices)
        super().__init__(plan, in_chans, max(out_indices), drop_path_rate, device=device, dtype=dtype)
        self.out_indices = out_indices
        self.feature_info: list[FeatureInfo] = plan.feature_info(out_indices)
        init_weights(self)

    @property
    def out_channels(self) -> list[int]:
        """Channels of each returned map (``in_channels_list`` of a torchvision FPN)."""
        return [f.channels for f in self.feature_info]

    @property
    def reductions(self) -> list[int]:
        return [f.reduction for f in self.feature_info]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.check_input(x)
        out = []
        x = self.stem(x)
        if 0 in self.out_indices:
            out.append(x)
        for i, s in enumerate(self.stages(), start=1):
            x = s(x)
            if i in self.out_indices:
                out.append(x)
        return out


__all__ = ["RegNet", "RegNetFeatures", "RegNetTrunk", "build_block", "check_input", "init_weights"]
