"""Write weights out: canonical safetensors files and transformers-loadable model directories. Always atomic."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import WeightsError, spell
from ..variant import Variant
from . import hf_config, match, safetensors_io
from .atomic import atomic_directory, atomic_file
from .export import export_state
from .keyspaces import canonical_to_hf

log = logging.getLogger("regnet_zoo.weights")
HF_WEIGHTS = "model.safetensors"
HF_CONFIG = "config.json"
_STALE = ("model.safetensors.index.json",)  # would make transformers read old shards beside the new file


def resolve_variant(state: Mapping[str, Any], variant: Any, origin: str = "weights") -> "str | Variant":
    """``variant`` (a registry name, or an ad-hoc variant: dict, YAML path, ``Variant``) checked against ``state``,
    or the one registry variant the shapes fit. Registry variants come back as their name."""
    from ..api import get_variant

    if variant is not None:
        v = get_variant(variant)
        name = v.name if hf_config._registered(v) else v
        match.check_variant(state, name, origin)
        return name
    found = match.identify(state)
    if not found:
        raise WeightsError(f"{origin}: the weights fit no registry variant; pass {spell('variant=<name>')}")
    if len(found) > 1:
        raise WeightsError(f"{origin}: the weights fit several variants ({', '.join(found)}); pass "
                           f"{spell('variant=<name>')}")
    return found[0]


def with_bn_counters(hf_state: dict[str, Any]) -> dict[str, Any]:
    """Add PyTorch's BN ``num_batches_tracked`` (0) after each BN, as transformers' own files have them."""
    import numpy as np

    out: dict[str, Any] = {}
    for key, value in hf_state.items():
        out[key] = value
        if key.endswith(".running_var"):
            out[key[: -len("running_var")] + "num_batches_tracked"] = np.zeros((), np.int64)
    return out


def save_canonical(state: Mapping[str, Any], path: str | os.PathLike, *, variant: str | None = None) -> Path:
    """Canonical (timm) names in one safetensors file, which timm and every regnet-zoo framework load."""
    state = match.without_counters(state)
    name = resolve_variant(state, variant)
    return safetensors_io.save(state, path, metadata={"format": "pt", "regnet_zoo_variant": getattr(name, "name", name)})


def save_pretrained(model: Any, save_directory: str | os.PathLike, *, variant: str | None = None,
                    framework: str | None = None, labels: Sequence[str] | None = None) -> Path:
    """Write ``model`` as a transformers RegNet directory: ``config.json`` + ``model.safetensors`` (PyTorch names).

    ``transformers.RegNetForImageClassification.from_pretrained(save_directory)`` (or ``RegNetModel`` for a
    headless model) loads it with identical outputs, and so does ``rz.from_pretrained``. ``model`` is a model of
    any installed framework (found from its type, or ``framework=``) or a dict of canonical weights. ``variant``
    is derived from the weight shapes unless given; ``labels`` name the classes (``id2label``; ImageNet-1k names
    for a 1000-class head by default). A new directory appears complete or not at all; in an existing one the
    weights are replaced before the config, each file atomically.
    """
    state = dict(model) if isinstance(model, Mapping) else export_state(model, framework)
    state = match.without_counters(state)
    name = resolve_variant(state, variant, "model")
    num_classes = match.head_classes(state)
    if labels is None and num_classes == 1000:
        from .classes import imagenet_classes

        labels = imagenet_classes()
    if labels is not None and len(labels) != num_classes:
        raise WeightsError(f"labels has {len(labels)} names; the classifier has {num_classes} classes")
    config = hf_config.config_for(name, num_classes, list(labels) if labels is not None else None,
                                  match.input_channels(state))
    hf_state = with_bn_counters(canonical_to_hf(state, prefix="regnet." if num_classes else ""))
    with atomic_directory(save_directory) as directory:
        safetensors_io.save(hf_state, directory / HF_WEIGHTS, metadata={"format": "pt"})
        with atomic_file(directory / HF_CONFIG) as f:
            f.write(hf_config.dumps(config).encode())
        for stale in _STALE:
            if (directory / stale).exists():
                (directory / stale).unlink()
                log.info("removed stale %s from %s", stale, save_directory)
    return Path(save_directory)
