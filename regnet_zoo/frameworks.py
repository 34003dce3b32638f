"""Framework backends as objects: what a plugin registers (a ``Framework`` subclass), and what the host hands it."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import PluginError
from .feature_info import FeatureInfoList
from .options import SharedOptions
from .plan import ArchPlan
from .variant import Variant, WeightTag


def model_packages(model: Any) -> set[str]:
    """The top-level packages of the classes ``model`` is an instance of (its own and every base)."""
    return {c.__module__.split(".")[0] for c in type(model).__mro__}


@dataclass(frozen=True)
class Framework:
    """A framework backend: what it is (the fields) and what it does (the methods).

    A plugin registers an instance of its own subclass, which overrides the methods below; they import the
    framework inside their bodies, so registering (and listing) never imports it. The host calls only these:

    * ``build(request)`` returns the model for a validated ``BuildRequest``;
    * ``run(model, x, labels=None)`` runs it in inference mode on ``x``, a numpy batch in NCHW (its dtype passed
      through, so the model applies the input contract), and returns numpy: logits / pooled features (N, K) for a
      classifier, or the list of NCHW maps of a ``features_only`` model; with ``labels`` it returns the loss (a
      float) by the host's rule (``regnet_zoo.contract``);
    * ``load_weights(model, state, strict=True)`` loads canonical (timm-named) numpy weights into a built model;
      strict loading lists every missing, unexpected and mis-shaped key in one ``WeightsError``;
    * ``export_weights(model)`` returns its weights as a canonical dict of numpy arrays (bit-exact round trip);
    * ``native_weights(model)`` its own variables under the framework's names (``native_names`` says which), and
      ``save_native(model, path, metadata)`` writes them (default: safetensors; ``convert --to <framework>``);
    * ``write_artefact(format, model, path, request)`` writes one of its ``formats`` (see ``regnet_zoo.deploy``)
      and returns the ``Artefact`` that runs the written file in its runtime;
    * ``as_tensor(array)``: a numpy batch as the framework's array type (``tensor_type``; image processors);
    * ``transformers_class(name)``: one of its ``transformers_classes`` (``regnet_zoo.transformers``' API);
    * ``owns(model)``: whether ``model`` is one of its models (default: the model's classes come from the plugin's
      package or a ``requires`` module).

    ``layout`` is the layout its models take and return when built with default options (``NCHW`` or ``NHWC``);
    ``run`` speaks NCHW whatever it is, and ``regnet-zoo features`` shows shapes in this one.

    Options (``regnet_zoo.options``): the host validates the shared ones; ``options`` is the dataclass of the
    framework's own extras (pure Python, importable without the framework); ``unsupported`` maps a shared option
    the framework cannot honour to the reason, ``limits`` a shared option to the values it accepts.
    """

    name: str
    requires: tuple[str, ...] = ()  # top-level modules that must be importable
    layout: str = "NCHW"  # of its models' input and maps with default options: NCHW | NHWC
    aliases: tuple[str, ...] = ()
    install_hint: str = ""
    native_names: str = ""  # what ``native_weights`` names its variables after, e.g. "Keras variable paths"
    native_is_canonical: bool = False  # its native names are timm's (a native file reads as a timm checkpoint)
    native_suffixes: tuple[str, ...] = ()  # file endings ``save_native`` writes in the framework's own format
    tensor_type: str = ""  # transformers' ``return_tensors`` name of its arrays ("pt", "tf", "jax"); see as_tensor
    transformers_classes: tuple[str, ...] = ()  # transformers class names it provides (see transformers_class)
    blocks: tuple[str, ...] = ("x", "y")  # block types it can build
    design_features: tuple[str, ...] = ()  # plan features beyond the X / Y corner it builds (plan.DESIGN_FEATURES)
    formats: tuple["ExportFormat", ...] = ()
    options: type | None = None  # dataclass of the framework's own options
    unsupported: Mapping[str, str] = field(default_factory=dict)  # shared option -> why it cannot be honoured
    limits: Mapping[str, tuple] = field(default_factory=dict)  # shared option -> the values it accepts
    description: str = ""
    plugin: str = ""  # filled in by the host

    def _lacks(self, method: str, what: str):
        return PluginError(f"framework {self.name!r} (plugin {self.plugin!r}) does not implement {method}(), so it "
                           f"cannot {what}")

    def build(self, request: "BuildRequest") -> Any:
        raise self._lacks("build", "build models")

    def run(self, model: Any, x: Any, labels: Any = None) -> Any:
        raise self._lacks("run", "run models")

    def load_weights(self, model: Any, state: Mapping[str, Any], strict: bool = True) -> None:
        raise self._lacks("load_weights", "load canonical weights")

    def export_weights(self, model: Any) -> Mapping[str, Any]:
        raise self._lacks("export_weights", "export canonical weights")

    def native_weights(self, model: Any) -> Mapping[str, Any]:
        raise self._lacks("native_weights", "write framework-native weights; write canonical weights (--to timm)")

    def save_native(self, model: Any, path: Path, metadata: Mapping[str, str]) -> Path:
        """Write ``native_weights(model)`` to ``path`` as safetensors (atomically), with ``metadata``."""
        from .weights import safetensors_io

        return safetensors_io.save(dict(self.native_weights(model)), path, metadata=dict(metadata))

    def write_artefact(self, format: str, model: Any, path: Path, request: Any) -> Any:
        raise self._lacks("write_artefact", f"write {format!r} files")

    def as_tensor(self, array: Any) -> Any:
        raise self._lacks("as_tensor", "convert arrays to its tensors")

    def transformers_class(self, name: str) -> type:
        raise self._lacks("transformers_class", f"provide {name}")

    def owns(self, model: Any) -> bool:
        packages = model_packages(model)
        return self.plugin.split(".")[0] in packages or bool(packages & set(self.requires))

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

    Its framework's ``write_artefact(name, model, path, request)`` writes it. ``suffix`` is the file ending (``""``:
    the artefact is a directory); ``requires`` the runtime modules beyond the framework, installed with ``install_hint``; ``max_bytes`` the largest
    weights the format holds, and ``instead`` what to use above it.
    """

    name: str
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
