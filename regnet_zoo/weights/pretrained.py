"""``from_pretrained``: a model from a registry name, a hub repository or a local checkpoint, variant derived."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import UnknownVariantError, WeightsError
from . import hub
from .checkpoint import read_checkpoint
from .hf_config import variant_from_config
from .readers import read_config


def locate(source: str | os.PathLike) -> tuple[str, Any]:
    """(name for ``create``, its ``pretrained`` value) for a registry name / tag / hub id, a path, or a repo id."""
    from ..api import resolve

    path = Path(source).expanduser()
    if path.exists():
        cfg = read_config(path) if path.is_dir() else None  # the variant without reading the weights twice
        if cfg is not None and cfg.get("model_type") == "regnet":
            return variant_from_config(cfg, str(path / "config.json")), path
        ck = read_checkpoint(path)
        if ck.variant is None:
            raise WeightsError(f"{path}: cannot tell which variant these weights are (no config.json, and the shapes "
                               f"fit no registry variant); use create(<variant>, pretrained={str(path)!r})")
        return ck.variant, path
    source = str(source)
    try:
        res = resolve(source)
    except UnknownVariantError as e:
        if source.count("/") != 1 or source.startswith((".", "/", "~")):
            raise WeightsError(f"{source!r} is not an existing file or directory, and not a variant, weight tag or hub "
                               f"repository id ({e})") from None
        snapshot = hub.fetch(source)  # a repository outside the registry, e.g. a fine-tuned model
        return locate(snapshot)[0], snapshot
    if res.tag is None and res.variant.default_tag is None:
        raise WeightsError(f"variant {res.variant.name!r} has no published weights; pass a checkpoint path")
    return (f"{res.variant.name}.{res.tag}" if res.tag else res.variant.name), True


def from_pretrained(source: str | os.PathLike, framework: str = "torch", **kwargs: Any):
    """Build and load a model like ``transformers``' ``from_pretrained``, in any framework.

    ``source``: a variant / alias / ``name.tag`` / hub id from the registry (``"facebook/regnet-y-040"``,
    ``"regnety_040.ra3_in1k"``), a checkpoint file or model directory (variant from its ``config.json`` or its
    shapes), or another hub repository with a transformers RegNet ``config.json``. ``kwargs`` go to ``create``.
    """
    from ..api import create

    name, pretrained = locate(source)
    return create(name, framework, pretrained=pretrained, **kwargs)
