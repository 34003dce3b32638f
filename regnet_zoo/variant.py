"""Validated registry records: a RegNet variant and its weight tags, with where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NAMED_STATS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD)}


@dataclass(frozen=True)
class Location:
    """A place in a registry file (1-based line and column)."""

    file: str
    line: int
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class WeightTag:
    """One set of published weights for a variant (timm's ``pretrained_cfg``, as data)."""

    tag: str
    hub: str
    keys: str  # key space of the checkpoint: timm | hf | torchvision | pycls | vissl
    num_classes: int
    input_size: int
    crop_pct: float
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    license: str
    test_input_size: int | None = None
    test_crop_pct: float | None = None
    filename: str | None = None
    revision: str | None = None
    location: Location | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Generator:
    """Parameters of the quantised linear rule that produced a variant's stage lists."""

    w0: float
    wa: float
    wm: float
    depth: int
    rounding: str = "pycls"

    def as_dict(self) -> dict[str, Any]:
        return {"w0": self.w0, "wa": self.wa, "wm": self.wm, "depth": self.depth, "rounding": self.rounding}


# timm's ``get_act_layer`` names: "gelu" is the exact erf form, "gelu_tanh" its tanh approximation, "quick_gelu"
# x * sigmoid(1.702 x), "leaky_relu" has negative slope 0.01 (torch's and transformers' default)
ACTIVATIONS = ("relu", "silu", "gelu", "gelu_tanh", "quick_gelu", "mish", "relu6", "leaky_relu", "tanh", "sigmoid",
               "identity")
NORMS = ("batchnorm", "groupnorm")
SHORTCUTS = ("conv1x1", "avg", "none")  # of a shape-changing block (timm's ``downsample``); others add the identity


@dataclass(frozen=True)
class Variant:
    """A RegNet architecture as data (the design space of timm's ``RegNetCfg``), plus its aliases, weight tags and
    origin. Defaults are the X / Y corner: ReLU, BatchNorm, bottleneck ratio 1, 1x1-conv shortcuts, stride 2."""

    name: str
    block: str  # "x" | "y" (y: squeeze-excitation of se_ratio)
    stem_width: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    group_widths: tuple[int, ...]  # as written, one per stage (before clipping to the bottleneck width)
    se_ratio: float
    act: str = "relu"
    se_act: str = ""  # activation inside squeeze-excitation ("" = act, as timm; transformers keeps relu there)
    norm: str = "batchnorm"
    norm_group_size: int = 0  # channels per GroupNorm group (groupnorm; or norm_groups)
    norm_groups: int = 0  # a fixed number of GroupNorm groups (groupnorm; or norm_group_size)
    bottle_ratio: float = 1.0  # bottleneck width / stage width
    downsample: str = "conv1x1"  # shortcut of shape-changing blocks (SHORTCUTS)
    preact: bool = False  # pre-activation blocks (RegNetV)
    linear_out: bool = False  # no activation after the residual add (RegNetZ)
    num_features: int = 0  # width of a final 1x1 conv after the last stage (0: none)
    strides: tuple[int, ...] = (2, 2, 2, 2)  # of each stage's first block
    description: str = ""
    generator: Generator | None = None
    aliases: tuple[str, ...] = ()
    weights: dict[str, WeightTag] = field(default_factory=dict, compare=False)
    location: Location | None = field(default=None, compare=False)
    plugin: str = ""

    @property
    def default_tag(self) -> str | None:
        """The first weight tag listed, used by ``pretrained=True`` (timm's convention)."""
        return next(iter(self.weights), None)

    @property
    def source(self) -> str:
        """``file:line`` (and plugin) this variant was defined at."""
        where = f"{self.location.file}:{self.location.line}" if self.location else "?"
        return f"{where} ({self.plugin})" if self.plugin else where
