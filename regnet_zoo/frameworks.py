"""Framework backends as records: what a plugin registers, and what the host hands its builder."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .errors import PluginError
from .feature_info import FeatureInfoList
from .options import SharedOptions
from .plan import ArchPlan
from .variant import Variant, WeightTag


@dataclass(frozen=True)
class Framework:
    """A framework backend.

    ``builder``, ``runner`` and ``exporter`` are ``"module:function"`` strings, imported on first use so that
    registering (and listing) never imports the framework:

    * ``builder(request: BuildRequest)`` returns the model;
    * ``runner(model, x)`` runs it in inference mode on ``x``, a float32 numpy batch in NCHW, and returns numpy:
      logits / pooled features (N, K) for a classifier, or the list of NCHW maps of a ``features_only`` model;
      ``runner(model, x, labels=y)`` returns the loss (a float) by the host's rule (``regnet_zoo.contract``); the
      batch's dtype is passed through, so the model applies the input contract to it;
    * ``loader(model, state, strict=True)`` loads canonical (timm-named) numpy weights into a built model; strict
      loading lists every missing, unexpected and mis-shaped key in one ``WeightsError``;
    * ``exporter(model)`` returns its weights as a canonical dict of numpy arrays (bit-exact round trip);
    * ``formats``: the deployment formats it writes (``ExportFormat``; see ``regnet_zoo.deploy``).

    ``layout`` is the layout its models take and return when built with default options (``NCHW`` or ``NHWC``);
    the runner speaks NCHW whatever it is, and ``regnet-zoo features`` shows shapes in this one.

    Options (``regnet_zoo.options``): the host validates the shared ones; ``options`` is the dataclass of the
    framework's own extras (pure Python, importable without the framework); ``unsupported`` maps a shared option
    the framework cannot honour to the reason, ``limits`` a shared option to the values it accepts.
    """

    name: str
    builder: str
    requires: tuple[str, ...] = ()  # top-level modules that must be importable
    layout: str = "NCHW"  # of its models' input and maps with default options: NCHW | NHWC
    aliases: tuple[str, ...] = ()
    install_hint: str = ""
    runner: str | None = None
    loader: str | None = None
    exporter: str | None = None
    blocks: tuple[str, ...] = ("x", "y")  # block types it can build
    design_features: tuple[str, ...] = ()  # plan features beyond the X / Y corner it builds (plan.DESIGN_FEATURES)
    formats: tuple["ExportFormat", ...] = ()
    options: type | None = None  # dataclass of the framework's own options
    unsupported: Mapping[str, str] = field(default_factory=dict)  # shared option -> why it cannot be honoured
    limits: Mapping[str, tuple] = field(default_factory=dict)  # shared option -> the values it accepts
    description: str = ""
    plugin: str = ""  # filled in by the host

    @property
    def installed(self) -> bool:
        """True when every required module can be found (checked without importing it)."""
        return all(importlib.util.find_spec(m) is not None for m in self.requires)

    @property
    def missing(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]


@dataclass(frozen=True)
class ExportFormat:
    """A deployment format a framework plugin writes from its own models.

    ``writer`` is a ``"module:function"`` string, imported on first use: ``writer(model, path, request)`` writes the
    artefact at ``path`` (``regnet_zoo.deploy.ExportRequest``) and returns a ``regnet_zoo.deploy.Artefact`` that runs
    the written file in its runtime. ``suffix`` is the file ending (``""``: the artefact is a directory);
    ``requires`` the runtime modules beyond the framework, installed with ``install_hint``; ``max_bytes`` the largest
    weights the format holds, and ``instead`` what to use above it.
    """

    name: str
    writer: str
    suffix: str = ""
    precisions: tuple[str, ...] = ("fp32",)
    requires: tuple[str, ...] = ()
    install_hint: str = ""
    max_bytes: int | None = None
    instead: str = ""
    description: str = ""


@dataclass(frozen=True)
class FrameworkInfo:
    """What ``list_frameworks()`` reports."""

    name: str
    aliases: tuple[str, ...]
    plugin: str
    installed: bool
    install_hint: str
    description: str = ""


@dataclass(frozen=True)
class WeightSource:
    """Weights ready to load: canonical (timm) names -> numpy arrays (possibly memory-mapped).

    ``origin`` says where they came from (hub id, path) for messages; ``num_classes`` is the classifier size
    stored in them (0 = none).
    """

    state: Mapping[str, Any]
    origin: str
    num_classes: int


@dataclass(frozen=True)
class BuildRequest:
    """Everything a framework builder needs, validated by the host.

    For ``features_only``, ``plan`` is already truncated after the deepest requested stage (and the weights
    pruned to it); ``shared`` are the validated shared options, ``options`` the framework's extras (defaults
    filled in).
    """

    variant: Variant
    plan: ArchPlan
    num_classes: int
    features_only: bool
    out_indices: tuple[int, ...]
    in_chans: int
    weight: WeightTag | None = None
    weights: WeightSource | None = None
    options: dict[str, Any] = field(default_factory=dict)
    shared: SharedOptions = field(default_factory=SharedOptions)

    @property
    def feature_info(self) -> FeatureInfoList:
        """What the model's ``feature_info`` is: the returned maps (features_only) or all five (stem, s1..s4)."""
        return self.plan.feature_info(self.out_indices) if self.features_only else self.plan.all_feature_info()


def import_object(spec: str, what: str) -> Callable:
    """Import ``"module:attr"``; errors name the plugin contract that was broken."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise PluginError(f"{what}: {spec!r} is not a 'module:function' string")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PluginError(f"{what}: module {module_name!r} has no attribute {attr!r}") from None
