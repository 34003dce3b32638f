"""Detection knobs (frozen stages, BN in inference mode, frozen / synchronised BN) and an FPN wrapper for torchvision.

Inference-mode BN is enforced on the BN modules themselves (their class is switched to a subclass whose ``train()``
keeps them in eval mode), so it holds whatever wraps the backbone: our FPN wrapper, torchvision's
``IntermediateLayerGetter``, DDP. Names, parameters and buffers are unchanged, so weights still load and export.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
from timm.layers import BatchNormAct2d, SyncBatchNormAct, convert_sync_batchnorm, freeze_batch_norm_2d

NORMS = ("bn", "frozen_bn", "sync_bn")


class _EvalModeMixin:
    """BatchNorm that stays in inference mode (running statistics used and never updated) under ``.train()``."""

    def train(self, mode: bool = True):
        return super().train(False)


class EvalBatchNormAct2d(_EvalModeMixin, BatchNormAct2d):
    pass


class EvalSyncBatchNormAct(_EvalModeMixin, SyncBatchNormAct):
    pass


class EvalBatchNorm2d(_EvalModeMixin, nn.BatchNorm2d):
    pass


class EvalSyncBatchNorm(_EvalModeMixin, nn.SyncBatchNorm):
    pass


_EVAL_CLASSES = {SyncBatchNormAct: EvalSyncBatchNormAct, BatchNormAct2d: EvalBatchNormAct2d,
                 nn.SyncBatchNorm: EvalSyncBatchNorm, nn.BatchNorm2d: EvalBatchNorm2d}


def lock_norm_eval(module: nn.Module) -> int:
    """Keep every BatchNorm in ``module`` in inference mode from now on; returns how many were locked."""
    count = 0
    for m in module.modules():
        if isinstance(m, _EvalModeMixin):
            count += 1
        elif type(m) in _EVAL_CLASSES:
            m.__class__ = _EVAL_CLASSES[type(m)]
            m.train(False)
            count += 1
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            raise TypeError(f"cannot keep {type(m).__name__} in inference mode: only BatchNorm2d, SyncBatchNorm and "
                            f"timm's BatchNormAct2d / SyncBatchNormAct are supported")
    return count


def convert_norm(model: nn.Module, norm: str) -> nn.Module:
    """``"bn"``: unchanged; ``"frozen_bn"``: timm FrozenBatchNorm(Act)2d (constant affine + statistics, buffers);
    ``"sync_bn"``: timm SyncBatchNormAct (``torch.nn.SyncBatchNorm`` subclass, statistics reduced across processes;
    PyTorch runs it on accelerators only). Module names and the canonical weights are unchanged."""
    if norm == "bn":
        return model
    if norm == "frozen_bn":
        return freeze_batch_norm_2d(model)
    if norm == "sync_bn":
        return convert_sync_batchnorm(model)
    raise ValueError(f"norm must be one of {', '.join(repr(n) for n in NORMS)}, got {norm!r}")


def freeze_stages(model: nn.Module, frozen_stages: int) -> None:
    """Freeze the stem (``frozen_stages >= 0``) and stages s1..s{frozen_stages}: no gradients, BN in inference mode."""
    names = ("stem",) + tuple(getattr(model, "stage_names", ()))  # the range is checked by the host (options.py)
    for name in names[:frozen_stages + 1]:
        part = getattr(model, name)
        part.requires_grad_(False)
        lock_norm_eval(part)


class FPNBackbone(nn.Module):
    """A regnet-zoo ``features_only`` body + torchvision's ``FeaturePyramidNetwork``, shaped like torchvision's
    ``BackboneWithFPN``: ``forward`` returns an ``OrderedDict`` of ``out_channels``-channel maps ("0", "1", ...,
    plus "pool" with the default ``LastLevelMaxPool``), ready for ``FasterRCNN`` / ``MaskRCNN`` / ``RetinaNet``.
    """

    def __init__(self, body: nn.Module, out_channels: int = 256, extra_blocks=None, norm_layer=None):
        super().__init__()
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        if not hasattr(body, "feature_info") or not isinstance(body.feature_info, list):
            raise TypeError("FPNBackbone needs a regnet-zoo backbone: rz.create(name, features_only=True, "
                            "out_indices=...)")
        self.body = body
        self.fpn = FeaturePyramidNetwork([f.channels for f in body.feature_info], out_channels,
                                         extra_blocks=LastLevelMaxPool() if extra_blocks is None else extra_blocks,
                                         norm_layer=norm_layer)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        maps = self.body(x)
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))


__all__ = ["FPNBackbone", "NORMS", "convert_norm", "freeze_stages", "lock_norm_eval"]
