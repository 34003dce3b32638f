"""timm's ``pretrained_cfg`` of a model, built from the registry's ``WeightTag`` (pure Python, every framework).

Every built model carries it as ``model.pretrained_cfg`` (torch also as ``model.default_cfg``, timm's alias), set
from the name's weight tag whether or not weights were loaded, as timm does: ``regnety_040`` gets its default tag's
data config, ``regnety_040.pycls_in1k`` that tag's. A variant without tags gets timm's defaults (224 px, crop 0.875,
bicubic, ImageNet mean / std). Sizes are timm's ``(channels, height, width)`` tuples; ``pool_size`` is the last map's
size at ``input_size``. A ``features_only`` model's cfg drops the classifier fields, as timm's does.
"""

from __future__ import annotations

from typing import Any

from .feature_info import NUM_FEATURE_INDICES
from .variant import IMAGENET_MEAN, IMAGENET_STD, Variant, WeightTag

FIRST_CONV = "stem.conv"  # canonical (timm) module names; a pre-activation stem is a bare conv named "stem"
CLASSIFIER = "head.fc"
_FEATURES_DROP = ("num_classes", "classifier")
NET_STRIDE = 2**NUM_FEATURE_INDICES  # stem + four stages, each stride 2


def pretrained_cfg(variant: Variant, weight: WeightTag | None = None, *, features_only: bool = False) -> dict[str, Any]:
    """The data / head config of ``variant`` for ``weight`` (``None``: the variant's default tag, if any)."""
    if weight is None and variant.default_tag is not None:
        weight = variant.weights[variant.default_tag]
    size = weight.input_size if weight else 224
    cfg: dict[str, Any] = {
        "architecture": variant.name,
        "tag": weight.tag if weight else None,
        "hf_hub_id": weight.hub if weight else None,
        "input_size": (3, size, size),
        "fixed_input_size": False,
        "interpolation": weight.interpolation if weight else "bicubic",
        "crop_pct": weight.crop_pct if weight else 0.875,
        "crop_mode": "center",
        "mean": tuple(weight.mean) if weight else IMAGENET_MEAN,
        "std": tuple(weight.std) if weight else IMAGENET_STD,
        "num_classes": weight.num_classes if weight else 1000,
        "pool_size": (size // NET_STRIDE, size // NET_STRIDE),
        "first_conv": "stem" if variant.preact else FIRST_CONV,
        "classifier": CLASSIFIER,
        "license": weight.license if weight else None,
    }
    if weight and weight.test_input_size:
        cfg["test_input_size"] = (3, weight.test_input_size, weight.test_input_size)
    if weight and weight.test_crop_pct:
        cfg["test_crop_pct"] = weight.test_crop_pct
    cfg = {k: v for k, v in cfg.items() if v is not None}
    if features_only:
        for key in _FEATURES_DROP:
            cfg.pop(key)
    return cfg


__all__ = ["CLASSIFIER", "FIRST_CONV", "pretrained_cfg"]
