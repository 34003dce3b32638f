"""``convert_checkpoint``: any RegNet checkpoint -> safetensors in timm, transformers or framework-native form.

Targets (every write is atomic; nothing is left behind on error):

* ``timm``: one ``.safetensors`` file in canonical (timm) names; timm's ``load_state_dict`` and every regnet-zoo
  framework (``create(..., pretrained=path)``) load it.
* ``hf``: a transformers directory (``config.json`` + ``model.safetensors``) for ``from_pretrained`` in PyTorch,
  and in TF / Flax with ``from_pt=True``.
* ``torch`` | ``tf`` | ``flax``: the weights are loaded strictly into that framework's regnet-zoo model, checked to
  export back bit-exactly, and its own variables are written under their own names: torch ``state_dict`` keys
  (``model.load_state_dict``), Keras variable paths, or NNX state paths, as safetensors. For tf a destination
  ending in ``.weights.h5`` gets Keras' native ``save_weights`` file instead.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ..errors import UnknownVariantError, WeightsError
from ..variant import Variant
from . import hub, safetensors_io
from .atomic import atomic_path
from .checkpoint import Checkpoint, read_checkpoint
from .export import export_state, load_state, native_state
from .save import resolve_variant, save_canonical, save_pretrained

TARGETS = ("timm", "hf", "torch", "tf", "flax")


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

    model = create(variant, framework, num_classes=ck.num_classes)
    load_state(model, ck.state, framework, strict=True)
    exported = export_state(model, framework)
    bad = [k for k, v in ck.state.items() if not np.array_equal(exported[k], np.asarray(v).astype(exported[k].dtype))]
    if bad:
        raise WeightsError(f"{ck.origin}: the {framework} model does not hold the weights exactly after loading "
                           f"({len(bad)} tensors differ, e.g. {bad[0]}); nothing was written")
    if framework == "tf" and dst.name.endswith(".weights.h5"):
        with atomic_path(dst, suffix=".weights.h5") as tmp:
            model.save_weights(str(tmp))
        return dst
    return safetensors_io.save(native_state(model, framework), dst,
                               metadata={"format": "pt" if framework == "torch" else framework,
                                         "regnet_zoo_variant": getattr(variant, "name", variant),
                                         "regnet_zoo_framework": framework})


def convert_checkpoint(source: str | os.PathLike | Checkpoint, destination: str | os.PathLike, *, to: str = "timm",
                       keys: str | None = None, variant: str | None = None, bgr: bool = True) -> Path:
    """Convert ``source`` (see ``open_source``, or a ``Checkpoint``) to ``destination`` in the ``to`` format.

    ``keys`` forces the source key space, ``variant`` the architecture (checked against the shapes), ``bgr=False``
    keeps a pycls stem in BGR order.
    """
    if to not in TARGETS:
        raise ValueError(f"unknown target {to!r}; choose one of {', '.join(TARGETS)}")
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
