"""Find the weights inside a training checkpoint: the wrappers each library puts around its ``state_dict``.

* pycls ``.pyth``: ``{"model_state": ..., "optimizer_state": ..., "epoch": ..., "cfg": ...}``
* VISSL / ClassyVision: ``{"classy_state_dict": {"base_model": {"model": {"trunk": ..., "heads": ...}}}}``
  (trunk and heads are flattened to ``trunk.*`` / ``heads.*``)
* timm / torchvision training scripts: ``{"state_dict": ...}`` / ``{"model": ...}``; ``model_state_dict``
* DistributedDataParallel prefixes ``module.``
"""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import WeightsError

WRAPPERS = ("model_state", "state_dict", "model_state_dict", "model")


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings of arrays -> ``{"a.b.c": array}``; non-array leaves (ints, strings) are left out."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        elif _is_array(value):
            out[name] = value
    return out


def unwrap(obj: Any, origin: str = "checkpoint") -> tuple[dict[str, Any], str | None]:
    """The flat ``{name: array}`` weights inside ``obj`` and the wrapper they were found under (or ``None``)."""
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{origin}: expected a mapping of tensors (a state_dict), found {type(obj).__name__}")
    if "classy_state_dict" in obj:
        try:
            model = obj["classy_state_dict"]["base_model"]["model"]
        except (KeyError, TypeError):
            raise WeightsError(f"{origin}: a VISSL/ClassyVision checkpoint without classy_state_dict.base_model.model"
                               ) from None
        return _strip_module(flatten({k: model[k] for k in ("trunk", "heads") if k in model})), "classy_state_dict"
    if obj and all(_is_array(v) for v in obj.values()):
        return _strip_module(dict(obj)), None
    for key in WRAPPERS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and any(_is_array(v) for v in inner.values()):
            return _strip_module(flatten(inner)), key
    arrays = flatten(obj)
    if arrays:
        return _strip_module(arrays), None
    entries = ", ".join(map(str, list(obj)[:10])) or "none"
    raise WeightsError(f"{origin}: no tensors found (top-level entries: {entries})")


def _strip_module(state: dict[str, Any]) -> dict[str, Any]:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state
