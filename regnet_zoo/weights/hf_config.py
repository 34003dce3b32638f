"""transformers ``RegNetConfig`` (``config.json``, ``model_type: regnet``) <-> registry variants.

A config describes a network by ``embedding_size`` (stem width), ``hidden_sizes`` / ``depths`` per stage, one
``groups_width`` and ``layer_type`` (``x`` | ``y``; Y adds squeeze-excitation of a quarter of the block input
width). transformers builds every grouped conv with ``groups = max(1, width // groups_width)``; a width that is not
a multiple of its group count cannot be built (``facebook/regnet-y-2560-seer``: 5088 channels in 7 groups).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import WeightsError

HF_SE_RATIO = 0.25
HF_FIELDS = ("embedding_size", "hidden_sizes", "depths", "groups_width", "layer_type")


def hf_groups(widths, groups_width: int) -> list[int]:
    return [max(1, w // groups_width) for w in widths]


def describe(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={config.get(k)!r}" for k in HF_FIELDS)


def variant_from_config(config: dict[str, Any], origin: str = "config.json") -> str:
    """The registry variant a transformers RegNet config describes (``WeightsError`` when there is none)."""
    from ..api import list_variants, plan

    if config.get("model_type") != "regnet":
        raise WeightsError(f"{origin}: model_type is {config.get('model_type')!r}, not 'regnet'")
    try:
        stem = int(config.get("embedding_size", 32))
        widths = [int(w) for w in config["hidden_sizes"]]
        depths = [int(d) for d in config["depths"]]
        gw = int(config.get("groups_width", 64))
        block = str(config.get("layer_type", "y")).lower()
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(f"{origin}: not a usable RegNet config ({type(e).__name__}: {e}); it needs "
                           f"{', '.join(HF_FIELDS)}") from None
    if block not in ("x", "y"):
        raise WeightsError(f"{origin}: layer_type {block!r} is not a RegNet X or Y block")
    if len(widths) != len(depths) or not widths:
        raise WeightsError(f"{origin}: hidden_sizes and depths must have one entry per stage ({describe(config)})")
    if int(config.get("num_channels", 3)) != 3 or config.get("hidden_act", "relu") != "relu" or \
            not config.get("downsample_in_first_stage", True):
        raise WeightsError(f"{origin}: only RGB, ReLU RegNets downsampling in their first stage are supported "
                           f"(num_channels={config.get('num_channels')}, hidden_act={config.get('hidden_act')}, "
                           f"downsample_in_first_stage={config.get('downsample_in_first_stage')})")
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
                (block == "x" or p.se_ratio == HF_SE_RATIO))

    names = list_variants()
    preferred = config.get("regnet_zoo_variant")  # written by save_pretrained; the fields stay authoritative
    for name in ([preferred] if preferred in names else []) + names:
        if matches(name):
            return name
    raise WeightsError(f"{origin}: describes a RegNet that is not in the registry ({describe(config)}); add it as a "
                       f"variant (see registry.yaml) to build it")


def config_for(variant: str, num_classes: int, labels: list[str] | None = None) -> dict[str, Any]:
    """A transformers ``RegNetConfig.to_dict()``-style config for ``variant`` with a ``num_classes`` head."""
    from ..api import get_variant, plan

    v, p = get_variant(variant), plan(variant)
    gws = {s.group_width for s in p.stages if s.groups > 1} or {p.stages[-1].group_width}
    gw = max(gws)
    problems = []
    if len(gws) > 1:
        problems.append(f"group widths differ per stage ({sorted(gws)}); transformers has one groups_width")
    widths = [s.out_width for s in p.stages]
    if hf_groups(widths, gw) != [s.groups for s in p.stages]:
        problems.append(f"transformers would build groups {hf_groups(widths, gw)}, the variant has "
                        f"{[s.groups for s in p.stages]}")
    if p.block == "y" and p.se_ratio != HF_SE_RATIO:
        problems.append(f"SE ratio {p.se_ratio}; transformers fixes it at {HF_SE_RATIO}")
    if problems:
        raise WeightsError(f"{v.name} cannot be expressed as a transformers RegNetConfig: " + "; ".join(problems))
    config: dict[str, Any] = {
        "architectures": ["RegNetForImageClassification" if num_classes else "RegNetModel"],
        "model_type": "regnet",
        "num_channels": 3,
        "embedding_size": p.stem_width,
        "hidden_sizes": widths,
        "depths": [s.depth for s in p.stages],
        "groups_width": gw,
        "layer_type": p.block,
        "hidden_act": "relu",
        "downsample_in_first_stage": True,
    }
    if num_classes:
        names = labels if labels is not None and len(labels) == num_classes else \
            [f"LABEL_{i}" for i in range(num_classes)]
        config["id2label"] = {str(i): n for i, n in enumerate(names)}
        config["label2id"] = {n: i for i, n in enumerate(names)} if len(set(names)) == len(names) else \
            {f"LABEL_{i}": i for i in range(num_classes)}
    config["regnet_zoo_variant"] = v.name
    return config


def dumps(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2, sort_keys=True) + "\n"
