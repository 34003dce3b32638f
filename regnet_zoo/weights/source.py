"""What ``create(..., pretrained=...)`` loads: a weight tag from the hub, or a local file / model directory."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import WeightsError, spell
from ..frameworks import WeightSource
from ..variant import Variant, WeightTag
from . import hub, match
from .checkpoint import Checkpoint, read_checkpoint

log = logging.getLogger("regnet_zoo.weights")


def _checked(ck: Checkpoint, variant: Variant) -> WeightSource:
    from_config = ck.config is not None and ck.config.get("model_type") == "regnet"
    if from_config and not _same(ck.variant, variant):
        if isinstance(ck.variant, Variant):
            raise WeightsError(f"{ck.origin} holds weights for the architecture its config.json describes, not "
                               f"{variant.name}; use {spell('rz.from_pretrained({path!r})', path=ck.origin)}")
        use = spell("create({name!r}, ...) or rz.from_pretrained({path!r})", name=ck.variant, path=ck.origin)
        raise WeightsError(f"{ck.origin} holds weights for {ck.variant} (from its config.json), not {variant.name}; "
                           f"use {use}")
    match.check_variant(ck.state, variant, ck.origin)
    for note in ck.notes:
        log.info("%s: %s", ck.origin, note)
    return WeightSource(state=ck.state, origin=ck.origin, num_classes=ck.num_classes)


def _same(found: "str | Variant | None", variant: Variant) -> bool:
    """Whether the variant a config.json describes is ``variant`` (an unnamed one: the same plan, any name)."""
    if isinstance(found, Variant):
        from ..plan import build_plan

        return replace(build_plan(found), name="") == replace(build_plan(variant), name="")
    return found == variant.name


def from_tag(variant: Variant, weight: WeightTag) -> WeightSource:
    """Fetch ``weight.hub`` (cache / offline honoured) and read it in the tag's key space."""
    path = hub.fetch(weight.hub, revision=weight.revision, filename=weight.filename)
    return _checked(replace(read_checkpoint(path, keys=weight.keys), origin=weight.hub), variant)


def from_path(variant: Variant, path: Path) -> WeightSource:
    """A checkpoint file, sharded index or model directory; the key space is detected."""
    return _checked(read_checkpoint(path), variant)


def weight_source(variant: Variant, weight: WeightTag | None, pretrained: Any) -> WeightSource:
    """The ``resolve_weights`` contract: a tag (``weight`` given) or a path."""
    if weight is not None:
        return from_tag(variant, weight)
    return from_path(variant, Path(pretrained))
