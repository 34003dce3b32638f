"""Ad-hoc variants: a variant given as a dict or a user's YAML file instead of a registry name.

Both go through the registry loader (``registry_file.load_text`` / ``load_file``), so they get the same checks
and the same ``file:line:col`` / did-you-mean errors as ``registry.yaml``. A dict holds the fields of one
``registry.yaml`` entry (``name`` optional, default ``"custom"``); its errors start with ``<dict>:`` and name the
field (``custom.widths[3] must be an int``), as the dict has no lines. A file holding several variants needs
``path::name``. An ad-hoc variant may not reuse a registry name or alias (``data_config`` and
``save_pretrained`` would find the registry's variant by that name).
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from .errors import RegistryError, UnknownVariantError, describe
from .registry_file import SCHEMA_VERSION, load_file, load_text
from .variant import Location, Variant

OVERRIDES = ("act", "norm_layer", "norm_group_size", "norm_groups", "se_ratio", "bottle_ratio", "downsample", "preact",
             "linear_out", "num_features")
# timm's create_model keyword -> the registry field. The registry's ``norm`` is overridden as ``norm_layer`` (timm's
# name): ``norm=`` is the shared option choosing BatchNorm's mode (bn | frozen_bn | sync_bn).
TIMM_OVERRIDE_NAMES = {"act_layer": "act"}
GROUPNORM_DEFAULT_GROUPS = 32  # timm's GroupNorm(num_groups=32) when norm_layer="groupnorm" says no more
_GROUP_SIZING = ("norm_group_size", "norm_groups")  # GroupNorm's channels per group, or its group count
_NORM_FIELDS = ("norm", *_GROUP_SIZING)
_NORM_OVERRIDES = ("norm_layer", *_GROUP_SIZING)
DEFAULT_NAME = "custom"
DICT_FILE = "<dict>"
YAML_SUFFIXES = (".yaml", ".yml")


def is_file_spec(spec: Any) -> bool:
    """Whether ``spec`` names a YAML file (a path object, or a string ending in .yaml / .yml, maybe ``::name``)."""
    if isinstance(spec, os.PathLike):
        return True
    return isinstance(spec, str) and spec.partition("::")[0].lower().endswith(YAML_SUFFIXES)


def _plain(value: Any, where: str) -> Any:
    """``value`` as YAML-representable built-ins (tuples -> lists, numpy scalars -> Python numbers)."""
    if isinstance(value, dict):
        return {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()
    raise TypeError(f"{where} must be a string, number, bool, list or mapping, got {type(value).__name__}")


def from_dict(fields: dict[str, Any], file: str = DICT_FILE) -> Variant:
    """Validate one variant given as a dict of ``registry.yaml`` entry fields (``name`` optional)."""
    if not isinstance(fields, dict):
        raise TypeError(f"an ad-hoc variant must be a dict of registry.yaml fields, got {describe(fields)}")
    fields = dict(fields)
    name = fields.pop("name", DEFAULT_NAME)
    if not isinstance(name, str):
        raise RegistryError([f"{file}: variant name must be a string, got {describe(name)}"])
    text = yaml.safe_dump({"schema": SCHEMA_VERSION, "variants": {name: _plain(fields, name)}}, sort_keys=False)
    try:
        (variant,) = load_text(text, file)
    except RegistryError as e:  # positions in the YAML text above mean nothing to the caller
        raise RegistryError([re.sub(rf"^{re.escape(file)}:\d+:\d+:", f"{file}:", line) for line in e.problems]) \
            from None
    return _unclashed(replace(variant, location=Location(file, 1)))


def from_file(spec: str | os.PathLike) -> Variant:
    """The variant of a user's YAML file; ``path::name`` selects one of several."""
    text = os.fspath(spec)
    path, sep, name = text.partition("::") if isinstance(spec, str) else (text, "", "")
    variants = load_file(Path(path).expanduser())
    names = [v.name for v in variants]
    if sep:
        if name not in names:
            from .registry import close_matches

            close = close_matches(name, names)
            hint = f"did you mean {path + '::' + close[0]!r}?" if close else f"it holds: {', '.join(names)}"
            raise UnknownVariantError(f"{path} has no variant {name!r}; {hint}")
        variant = variants[names.index(name)]
    elif len(variants) != 1:
        raise UnknownVariantError(f"{path} holds {len(variants)} variants ({', '.join(names) or 'none'}); say which "
                                  f"with '{path}::NAME'")
    else:
        variant = variants[0]
    return _unclashed(variant)


def _unclashed(variant: Variant) -> Variant:
    """``variant`` unless its name or an alias is a registry variant's (defined in another file)."""
    from .plugins import get_host

    registry = get_host().registry
    for key in (variant.name, *variant.aliases):
        try:
            known = registry.resolve(key).variant
        except UnknownVariantError:
            continue
        here = variant.location.file if variant.location else ""
        there = known.location.file if known.location else ""
        if here and there and os.path.realpath(here) == os.path.realpath(there):
            return known  # a registry file itself, e.g. registry.yaml::regnetx_002
        where = variant.location if variant.location and variant.location.file != DICT_FILE else DICT_FILE
        raise RegistryError([f"{where}: {key!r} is already the registry variant "
                             f"{known.name!r} ({known.source}); give the ad-hoc variant another name"])
    return variant


def entry_fields(variant: Variant) -> dict[str, Any]:
    """The architecture fields of ``variant`` as a ``registry.yaml`` entry (no generator, aliases or weights)."""
    v = variant
    fields: dict[str, Any] = {"block": v.block, "stem_width": v.stem_width, "widths": list(v.widths),
                              "depths": list(v.depths), "group_width": list(v.group_widths), "act": v.act,
                              "norm": v.norm, "bottle_ratio": v.bottle_ratio, "downsample": v.downsample,
                              "preact": v.preact, "linear_out": v.linear_out, "strides": list(v.strides)}
    if v.block == "y":
        fields["se_ratio"] = v.se_ratio
        if v.se_act:
            fields["se_act"] = v.se_act
    fields.update({k: getattr(v, k) for k in _GROUP_SIZING if getattr(v, k)})
    if v.num_features:
        fields["num_features"] = v.num_features
    return fields


def _norm_fields(variant: Variant, overrides: dict[str, Any]) -> dict[str, Any]:
    """The registry's norm fields after ``overrides``: ``norm_layer`` sets the kind; a group sizing given replaces
    the variant's; GroupNorm without one keeps the variant's, else takes timm's default of 32 groups."""
    norm = overrides.get("norm_layer", variant.norm)
    sizing = {k: overrides[k] for k in _GROUP_SIZING if k in overrides}
    if norm == "groupnorm" and not sizing:
        sizing = ({k: getattr(variant, k) for k in _GROUP_SIZING if getattr(variant, k)}
                  if variant.norm == "groupnorm" else {"norm_groups": GROUPNORM_DEFAULT_GROUPS})
    return {"norm": norm, **sizing}


def with_overrides(variant: Variant, overrides: dict[str, Any]) -> Variant:
    """``variant`` with create-time architecture overrides (timm's ``create_model(name, act_layer="silu",
    se_ratio=0.)``), validated by the registry loader. It keeps the variant's name and weight tags, so pretrained
    weights load where the shapes still match; ``se_ratio=0`` makes a Y variant an X one (and a ratio an X a Y)."""
    fields = {k: v for k, v in entry_fields(variant).items() if k not in _NORM_FIELDS}
    fields.update(_norm_fields(variant, overrides))
    for key, value in overrides.items():
        if key in _NORM_OVERRIDES:
            continue
        if key == "se_ratio" and value == 0:
            fields.pop("se_ratio", None)
            fields["block"] = "x"
        elif key == "se_ratio":
            fields.update(block="y", se_ratio=value)
        else:
            fields[key] = value
    where = f"<{variant.name} overrides>"
    text = yaml.safe_dump({"schema": SCHEMA_VERSION, "variants": {variant.name: _plain(fields, variant.name)}},
                          sort_keys=False)
    try:
        (changed,) = load_text(text, where)
    except RegistryError as e:
        raise RegistryError([re.sub(rf"^{re.escape(where)}:\d+:\d+:", f"{where}:", line) for line in e.problems]) \
            from None
    said = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
    return replace(changed, weights=variant.weights, location=variant.location, plugin=variant.plugin,
                   description=f"{variant.description or variant.name} with {said}")

