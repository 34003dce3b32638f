"""transformers' RegNet API (``RegNetConfig``, the PyTorch, TensorFlow and Flax model classes, the image
processor) built on regnet-zoo's framework plugins; change the import line and keep your code.

Importing this package imports neither transformers nor any framework: each class is loaded on first use
(``RegNetConfig`` and the image processor need no framework at all). It works the same with transformers 4, 5, or
none installed.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "RegNetConfig": "configuration",
    "RegNetModel": "modeling_torch", "RegNetForImageClassification": "modeling_torch",
    "RegNetPreTrainedModel": "modeling_torch",
    "TFRegNetModel": "modeling_tf", "TFRegNetForImageClassification": "modeling_tf",
    "TFRegNetPreTrainedModel": "modeling_tf",
    "FlaxRegNetModel": "modeling_flax", "FlaxRegNetForImageClassification": "modeling_flax",
    "FlaxRegNetPreTrainedModel": "modeling_flax",
    "RegNetImageProcessor": "image_processing", "ConvNextImageProcessor": "image_processing",
    "AutoImageProcessor": "image_processing", "BatchFeature": "image_processing",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
