"""regnet-zoo: RegNet X/Y as data, built on demand in PyTorch, TensorFlow (Keras 3) or Flax.

Importing this package imports no framework; ``create`` imports the one it needs.
"""

from . import import_guard

import_guard.install()  # before anything can pull in triton: see import_guard.py (the TensorFlow segfault)

from .api import build_request, create, feature_info, get_variant, list_frameworks, list_variants, plan, resolve
from .errors import (
    ExportError,
    FrameworkNotInstalledError,
    PluginError,
    RegistryError,
    RegNetZooError,
    UnknownFrameworkError,
    UnknownVariantError,
    WeightsError,
)
from .deploy import ExportReport, Tolerance, export
from .frameworks import BuildRequest, ExportFormat, Framework, FrameworkInfo, WeightSource
from .hookspecs import hookimpl
from .outputs import RegNetOutput
from .feature_info import FeatureInfo, FeatureInfoList
from .plan import ArchPlan, BlockPlan, StagePlan
from .variant import Variant, WeightTag

__version__ = "0.1.0"

# Imported on first use (PEP 562): preprocessing needs numpy, and importing regnet_zoo must not import it.
_LAZY = {
    "data_config": "regnet_zoo.preprocessing", "preprocess": "regnet_zoo.preprocessing",
    "read_checkpoint": "regnet_zoo.weights", "save_pretrained": "regnet_zoo.weights",
    "from_pretrained": "regnet_zoo.weights", "convert_checkpoint": "regnet_zoo.weights",
    "imagenet_classes": "regnet_zoo.weights", "Checkpoint": "regnet_zoo.weights",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'regnet_zoo' has no attribute {name!r}")


__all__ = [
    "ArchPlan", "BlockPlan", "BuildRequest", "ExportError", "ExportFormat", "ExportReport", "FeatureInfo", "FeatureInfoList", "Framework", "FrameworkInfo",
    "FrameworkNotInstalledError", "PluginError", "RegNetOutput", "RegNetZooError", "RegistryError", "StagePlan",
    "UnknownFrameworkError", "UnknownVariantError", "Variant", "WeightSource", "WeightTag", "WeightsError",
    "Tolerance", "build_request", "create", "export", "feature_info", "get_variant", "hookimpl", "list_frameworks", "list_variants", "plan", "resolve",
    *_LAZY,
]
