"""``convert_checkpoint``: any RegNet checkpoint -> safetensors in timm, transformers or framework-native form.

Targets (every write is atomic; nothing is left behind on error):

* ``timm``: one ``.safetensors`` file in canonical (timm) names; timm's ``load_state_dict`` and every regnet-zoo
  framework (``create(..., pretrained=path)``) load it.
* ``hf``: a transformers directory (``config.json`` + ``model.safetensors``) for ``from_pretrained`` in PyTorch,
  and in TF / Flax with ``from_pt=True``.
* a registered framework's name (``torch``, ``tf``, ``flax``, or a plugin's): the weights are loaded strictly into
  that framework's regnet-zoo model, checked to export back bit-exactly, and the backend writes its own variables
  under its own names (``Framework.save_native``: torch ``state_dict`` keys, Keras variable paths or NNX state paths
  as safetensors; a tf destination ending in ``.weights.h5`` gets Keras' own ``save_weights`` file).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ..errors import UnknownFrameworkError, UnknownVariantError, WeightsError
from ..plugins import get_host
from ..registry import close_matches
from ..variant import Variant
from . import hub
from .checkpoint import Checkpoint, read_checkpoint
from .save import resolve_variant, save_canonical, save_pretrained

FORMATS = ("timm", "hf")  # the framework-free targets; every registered framework is one too


def targets() -> tuple[str, ...]:
    """What ``convert_checkpoint(..., to=...)`` accepts."""
    return (*FORMATS, *get_host().frameworks)


def open_source(source: str | os.PathLike, *, keys: str | None = None, bgr: bool = True) -> Checkpoint:
    """A checkpoint path, a registry ``name[.tag]`` / hub id (fetched from the hub), or any hub repository id."""
    from ..api import resolve

    path = Path(source).expanduser()
    if path.exists():
        return read_checkpoint(path, keys=keys, bgr=bgr)
    try:
        res = resolve(str(source))
    except UnknownVariantError as e:
        if str(source).count("/") != 1:
            raise WeightsError(f"{str(source)!r} is neither an existing path nor a variant, weight tag or hub "
                               f"repository id ({e})") from None
        return read_checkpoint(hub.fetch(str(source)), keys=keys, bgr=bgr)
    tag = res.tag or res.variant.default_tag
    if tag is None:
        raise WeightsError(f"variant {res.variant.name!r} has no published weights to convert")
    weight = res.variant.weights[tag]
    ck = read_checkpoint(hub.fetch(weight.hub, weight.revision, weight.filename), keys=keys or weight.keys, bgr=bgr)
    return replace(ck, origin=weight.hub, variant=ck.variant or res.variant.name)


def _native(ck: Checkpoint, variant: "str | Variant", framework: str, dst: Path) -> Path:
    import numpy as np

    from ..api import create

    fw = get_host().framework(framework)
    model = create(variant, fw.name, num_classes=ck.num_classes)
    fw.load_weights(model, ck.state, strict=True)
    exported = fw.export_weights(model)
    bad = [k for k, v in ck.state.items() if not np.array_equal(exported[k], np.asarray(v).astype(exported[k].dtype))]
    if bad:
        raise WeightsError(f"{ck.origin}: the {fw.name} model does not hold the weights exactly after loading "
                           f"({len(bad)} tensors differ, e.g. {bad[0]}); nothing was written")
    return fw.save_native(model, dst, {"format": fw.name, "regnet_zoo_variant": getattr(variant, "name", variant),
                                       "regnet_zoo_framework": fw.name})


def convert_checkpoint(source: str | os.PathLike | Checkpoint, destination: str | os.PathLike, *, to: str = "timm",
                       keys: str | None = None, variant: str | None = None, bgr: bool = True) -> Path:
    """Convert ``source`` (see ``open_source``, or a ``Checkpoint``) to ``destination`` in the ``to`` format.

    ``keys`` forces the source key space, ``variant`` the architecture (checked against the shapes), ``bgr=False``
    keeps a pycls stem in BGR order.
    """
    if to not in FORMATS:
        try:
            to = get_host().framework(to).name
        except UnknownFrameworkError:
            close = close_matches(str(to), list(targets()))
            raise ValueError(f"unknown target {to!r}{f' (did you mean {close[0]!r}?)' if close else ''}; choose one "
                             f"of {', '.join(targets())}") from None
    ck = source if isinstance(source, Checkpoint) else open_source(source, keys=keys, bgr=bgr)
    name = resolve_variant(ck.state, variant or ck.variant, ck.origin)
    dst = Path(destination).expanduser()
    if to == "hf":
        return save_pretrained(ck.state, dst, variant=name)
    if dst.is_dir():
        dst = dst / ("model.safetensors" if to == "timm" else f"model_{to}.safetensors")
    if to == "timm":
        return save_canonical(ck.state, dst, variant=name)
    return _native(ck, name, to, dst)
