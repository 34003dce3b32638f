"""Match canonical weights to registry variants by their keys and shapes (no framework, nothing loaded)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

from ..errors import WeightsError, spell
from ..keys import STEM_CONV_KEYS, canonical_shapes, check_state
from ..variant import Variant


@lru_cache(maxsize=None)
def _backbone_shapes(variant: "str | Variant", in_chans: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
    from ..api import plan

    return tuple(canonical_shapes(plan(variant), 0, in_chans).items())


def input_channels(state: Mapping[str, Any]) -> int:
    """Input channels of canonical weights (their stem conv's; 3 without one)."""
    stem = next((state[k] for k in STEM_CONV_KEYS if k in state), None)
    return int(stem.shape[1]) if stem is not None and len(stem.shape) == 4 else 3


def head_classes(state: Mapping[str, Any]) -> int:
    """Classifier size of canonical weights (0 = none)."""
    head = state.get("head.fc.weight")
    return int(head.shape[0]) if head is not None else 0


def without_counters(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` without BN ``num_batches_tracked`` counters (not part of the canonical space)."""
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def backbone(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if not k.startswith("head.") and not k.endswith("num_batches_tracked")}


def identify(state: Mapping[str, Any]) -> list[str]:
    """Registry variants whose backbone has exactly these keys and shapes (usually one)."""
    from ..api import list_variants

    body = {k: tuple(v.shape) for k, v in backbone(state).items()}
    in_chans = input_channels(state)
    return [n for n in list_variants() if dict(_backbone_shapes(n, in_chans)) == body]


def check_variant(state: Mapping[str, Any], variant: "str | Variant", origin: str) -> None:
    """Raise one ``WeightsError`` listing every key that does not fit ``variant`` (a registry name or an ad-hoc
    ``Variant``), and which registry variant fits."""
    from ..api import plan

    classes = head_classes(state)
    p = plan(variant)
    expected = canonical_shapes(p, classes, input_channels(state))
    if classes and "head.fc.bias" not in state:
        expected.pop("head.fc.bias")
    try:
        check_state(state, expected, origin)
    except WeightsError as e:
        fits = identify(state)
        use = spell("create({name!r}, ...)", name=fits[0]) if fits else ""
        hint = (f"\n  these weights fit variant {fits[0]!r}: {use}" if fits else
                "\n  they fit no registry variant")
        raise WeightsError(f"{e} (the model is {p.name}){hint}") from None
