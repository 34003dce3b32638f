"""transformers' RegNet API (``RegNetConfig``, the PyTorch, TensorFlow and Flax model classes, the image
processor) built on regnet-zoo's framework plugins; change the import line and keep your code.

Importing this package imports neither transformers nor any framework: each class is loaded on first use
(``RegNetConfig`` and the image processor need no framework at all). The model classes come from the framework
backends (``Framework.transformers_classes``: the torch, tf and flax plugins provide transformers' names, and a
third-party framework plugin can add its own). It works the same with transformers 4, 5, or none installed.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "RegNetConfig": "configuration",
    "RegNetImageProcessor": "image_processing", "ConvNextImageProcessor": "image_processing",
    "AutoImageProcessor": "image_processing", "BatchFeature": "image_processing",
}


def _providers() -> dict:
    from ..plugins import get_host

    return {name: fw for fw in get_host().frameworks.values() for name in fw.transformers_classes}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    provider = _providers().get(name) if not name.startswith("_") else None
    if provider is not None:
        return provider.transformers_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_providers()})
