"""transformers ``RegNetConfig`` (``config.json``, ``model_type: regnet``) <-> registry variants.

A config that describes no registry variant becomes an unnamed variant (``hf_custom``, see ``unnamed_variant``).
A config describes a network by ``embedding_size`` (stem width), ``hidden_sizes`` / ``depths`` per stage, one
``groups_width`` and ``layer_type`` (``x`` | ``y``; Y adds squeeze-excitation of a quarter of the block input
width). transformers builds every grouped conv with ``groups = max(1, width // groups_width)``; a width that is not
a multiple of its group count cannot be built (``facebook/regnet-y-2560-seer``: 5088 channels in 7 groups).
``downsample_in_first_stage: false`` is a stride-1 first stage (``strides: [1, 2, 2, 2]``); a ``hidden_act`` of
``HF_ACTS`` is the variant's ``act`` (transformers keeps ReLU inside the squeeze-excitation of Y blocks:
``se_act: relu``); the others (``prelu``'s learnable slope, ``relu2``, ``laplace``, ``gelu_10``, ``xielu`` ...) are
refused. ``num_channels`` is not part of the variant: it is the model's ``in_chans``
(``input_channels``), which ``create`` takes from the checkpoint's stem.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import UnknownVariantError, WeightsError
from ..variant import Variant

HF_SE_RATIO = 0.25
HF_FIELDS = ("embedding_size", "hidden_sizes", "depths", "groups_width", "layer_type")
UNNAMED = "hf_custom"  # name of the variant of a config that describes no registry variant
# hidden_act -> the plan's act, for the transformers 4.57 ACT2FN entries that compute one of ours: "gelu" and
# "gelu_python" are the exact erf form, "swish" is SiLU, "linear" the identity; gelu_new / gelu_fast /
# gelu_pytorch_tanh are the tanh approximation (gelu_pytorch_tanh is torch's, the other two agree within 1e-6 of it);
# leaky_relu is torch's LeakyReLU (slope 0.01). transformers keeps ReLU inside its SE blocks whatever hidden_act says:
# a Y config with another act has se_act relu.
HF_ACTS = {"relu": "relu", "gelu": "gelu", "gelu_python": "gelu", "silu": "silu", "swish": "silu",
           "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
           "gelu_accurate": "gelu_tanh", "gelu_python_tanh": "gelu_tanh",
           "quick_gelu": "quick_gelu", "mish": "mish", "relu6": "relu6", "leaky_relu": "leaky_relu", "tanh": "tanh",
           "sigmoid": "sigmoid", "linear": "identity"}
TO_HF_ACT = {"gelu_tanh": "gelu_pytorch_tanh", "identity": "linear"}  # the plan's act -> hidden_act, where they differ
HF_SE_ACT = "relu"
# of the plan's design features, what a RegNetConfig can say (a stride-1 first stage; another act, ReLU inside SE)
HF_DESIGN = frozenset({"stage_stride_1", "se_act", *(f"act:{a}" for a in set(HF_ACTS.values()) - {"relu"})})


def hf_groups(widths, groups_width: int) -> list[int]:
    return [max(1, w // groups_width) for w in widths]


def describe(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={config.get(k)!r}" for k in HF_FIELDS)


def variant_from_config(config: dict[str, Any], origin: str = "config.json") -> "str | Variant":
    """The registry variant a transformers RegNet config describes (its name), else an unnamed variant (``hf_custom``)
    built from the config through the registry loader; ``WeightsError`` when it cannot be built."""
    from ..api import list_variants, plan

    if config.get("model_type") != "regnet":
        raise WeightsError(f"{origin}: model_type is {config.get('model_type')!r}, not 'regnet'")
    try:
        stem = int(config.get("embedding_size", 32))
        widths = [int(w) for w in config["hidden_sizes"]]
        depths = [int(d) for d in config["depths"]]
        gw = int(config.get("groups_width", 64))
        block = str(config.get("layer_type", "y")).lower()
        strides = [2 if config.get("downsample_in_first_stage", True) else 1] + [2] * (len(widths) - 1)
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(f"{origin}: not a usable RegNet config ({type(e).__name__}: {e}); it needs "
                           f"{', '.join(HF_FIELDS)}") from None
    if block not in ("x", "y"):
        raise WeightsError(f"{origin}: layer_type {block!r} is not a RegNet X or Y block")
    if len(widths) != len(depths) or not widths:
        raise WeightsError(f"{origin}: hidden_sizes and depths must have one entry per stage ({describe(config)})")
    if gw < 1:
        raise WeightsError(f"{origin}: groups_width must be >= 1, got {gw}")
    channels = config.get("num_channels", 3)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise WeightsError(f"{origin}: num_channels must be an int >= 1 (input channels), got {channels!r}")
    hidden_act = config.get("hidden_act", "relu")
    act = HF_ACTS.get(hidden_act)
    if act is None:
        raise WeightsError(f"{origin}: hidden_act={hidden_act!r} is not supported; regnet-zoo builds hidden_act "
                           + ", ".join(map(repr, HF_ACTS)))
    groups = hf_groups(widths, gw)
    bad = [f"stage {i + 1}: {w} channels in {g} groups (groups_width {gw})" for i, (w, g) in
           enumerate(zip(widths, groups)) if w % g]
    if bad:
        raise WeightsError(f"{origin}: this RegNet config cannot be built (transformers cannot build it either): "
                           + "; ".join(bad) + ". The group count must divide the stage width.")
    def matches(name: str) -> bool:
        p = plan(name)
        return (p.block == block and p.stem_width == stem and [s.out_width for s in p.stages] == widths and
                [s.depth for s in p.stages] == depths and [s.groups for s in p.stages] == groups and
                [s.stride for s in p.stages] == strides and p.design_features() <= HF_DESIGN and p.act == act and
                (block == "x" or (p.se_ratio == HF_SE_RATIO and p.se_activation == HF_SE_ACT)))

    names = list_variants()
    preferred = config.get("regnet_zoo_variant")  # written by save_pretrained; the fields stay authoritative
    for name in ([preferred] if preferred in names else []) + names:
        if matches(name):
            return name
    return unnamed_variant(stem, widths, depths, groups, block, origin, strides, act)


def unnamed_variant(stem: int, widths: list[int], depths: list[int], groups: list[int], block: str,
                    origin: str, strides: list[int] | None = None, act: str = "relu") -> "Variant":
    """The variant transformers builds for these fields: per-stage group width ``width // groups`` (so the plan has
    transformers' group counts) and, for Y, ``se_ratio`` 0.25 of the block input width (transformers'
    ``int(round(in_channels / 4))`` equals the plan's ``int(round(0.25 * in_width))``)."""
    from ..adhoc import from_dict
    from ..errors import RegistryError

    fields: dict[str, Any] = {
        "name": UNNAMED, "description": f"transformers RegNetConfig from {origin}", "block": block,
        "stem_width": stem, "widths": widths, "depths": depths,
        "group_width": [w // g for w, g in zip(widths, groups)],
    }
    if block == "y":
        fields["se_ratio"] = HF_SE_RATIO
    if strides and strides[0] == 1:
        fields["strides"] = strides
    if act != "relu":
        fields["act"] = act
        if block == "y":
            fields["se_act"] = HF_SE_ACT
    try:
        return from_dict(fields, file=origin)
    except RegistryError as e:
        raise WeightsError(f"{origin}: this RegNet config cannot be built as a regnet-zoo variant:\n  "
                           + "\n  ".join(e.problems)) from None


def config_for(variant: "str | Variant", num_classes: int, labels: list[str] | None = None,
               in_chans: int = 3) -> dict[str, Any]:
    """A transformers ``RegNetConfig.to_dict()``-style config for ``variant`` (a registry name or an ad-hoc
    ``Variant``) with a ``num_classes`` head and ``in_chans`` input channels."""
    from ..api import get_variant, plan

    v, p = get_variant(variant), plan(variant)
    gws = {s.group_width for s in p.stages if s.groups > 1} or {p.stages[-1].group_width}
    gw = max(gws)
    widths, groups = [s.out_width for s in p.stages], [s.groups for s in p.stages]
    # a groups_width whose max(1, width // groups_width) rule gives every stage's groups (e.g. an hf_custom variant)
    gw = next((c for c in [gw, *sorted(s.group_width for s in p.stages)] if hf_groups(widths, c) == groups), gw)
    problems = []
    if len(gws) > 1 and hf_groups(widths, gw) != groups:
        problems.append(f"group widths differ per stage ({sorted(gws)}); transformers has one groups_width")
    if hf_groups(widths, gw) != groups:
        problems.append(f"transformers would build groups {hf_groups(widths, gw)}, the variant has "
                        f"{[s.groups for s in p.stages]}")
    if p.block == "y" and p.se_ratio != HF_SE_RATIO:
        problems.append(f"SE ratio {p.se_ratio}; transformers fixes it at {HF_SE_RATIO}")
    if p.block == "y" and p.se_activation != HF_SE_ACT:
        problems.append(f"{p.se_activation} inside squeeze-excitation; transformers keeps {HF_SE_ACT} there "
                        f"(se_act: {HF_SE_ACT})")
    beyond = sorted(p.design_features() - HF_DESIGN)
    if beyond:
        problems.append(f"it needs {', '.join(beyond)}; transformers' RegNet has BatchNorm and post-activation "
                        f"bottlenecks of ratio 1 with 1x1-conv shortcuts only")
    if [s.stride for s in p.stages[1:]] != [2] * (len(p.stages) - 1):
        problems.append(f"stage strides {[s.stride for s in p.stages]}; transformers can only make the first stage "
                        f"stride 1 (downsample_in_first_stage)")
    if problems:
        raise WeightsError(f"{v.name} cannot be expressed as a transformers RegNetConfig: " + "; ".join(problems))
    config: dict[str, Any] = {
        "architectures": ["RegNetForImageClassification" if num_classes else "RegNetModel"],
        "model_type": "regnet",
        "num_channels": in_chans,
        "embedding_size": p.stem_width,
        "hidden_sizes": widths,
        "depths": [s.depth for s in p.stages],
        "groups_width": gw,
        "layer_type": p.block,
        "hidden_act": TO_HF_ACT.get(p.act, p.act),
        "downsample_in_first_stage": p.stages[0].stride == 2,
    }
    if num_classes:
        names = labels if labels is not None and len(labels) == num_classes else \
            [f"LABEL_{i}" for i in range(num_classes)]
        config["id2label"] = {str(i): n for i, n in enumerate(names)}
        config["label2id"] = {n: i for i, n in enumerate(names)} if len(set(names)) == len(names) else \
            {f"LABEL_{i}": i for i in range(num_classes)}
    if _registered(v):
        config["regnet_zoo_variant"] = v.name
    return config


def _registered(v: Variant) -> bool:
    from ..api import get_variant

    try:
        return get_variant(v.name) == v
    except UnknownVariantError:
        return False


def dumps(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2, sort_keys=True) + "\n"
