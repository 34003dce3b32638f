"""What a framework builder loads from ``BuildRequest.weights``: the shared head / stem / strictness policy."""

from __future__ import annotations

import warnings
from typing import Any, Mapping

from .frameworks import BuildRequest
from .keys import canonical_shapes, check_state, stem_conv_key



def adapt_input_conv(weight: Any, in_chans: int) -> Any:
    """timm's ``adapt_input_conv`` on a numpy OIHW stem kernel with ``c`` input channels, for ``in_chans`` inputs.

    ``in_chans == 1``: the sum over the input channels; otherwise the channels repeated (cyclically) up to
    ``in_chans`` and scaled by ``c / in_chans``. Computed in float32 (as timm), returned in the kernel's dtype.
    """
    import numpy as np

    w = np.asarray(weight)
    c = w.shape[1]
    if in_chans == c:
        return weight
    w32 = w.astype(np.float32)
    if in_chans == 1:
        out = w32.sum(axis=1, keepdims=True)
    else:
        out = np.tile(w32, (1, -(-in_chans // c), 1, 1))[:, :in_chans] * np.float32(c / in_chans)
    return out.astype(w.dtype)


def expected_shapes(request: BuildRequest) -> dict[str, tuple[int, ...]]:
    """Canonical keys and shapes of the model ``request`` describes (no head when headless / features_only)."""
    num_classes = 0 if request.features_only else request.num_classes
    return canonical_shapes(request.plan, num_classes, request.in_chans)


def state_to_load(request: BuildRequest) -> Mapping[str, Any] | None:
    """The canonical weights to load strictly into the model of ``request``, or ``None``.

    Head keys are dropped for a headless or ``features_only`` model, and when the requested ``num_classes``
    differs from the checkpoint's (the head stays randomly initialised, with a warning saying so). A stem conv with
    other than ``in_chans`` input channels is adapted as timm does (``adapt_input_conv``). Everything else must
    match exactly; a mismatch raises ``WeightsError`` listing every bad key.
    """
    source = request.weights
    if source is None:
        return None
    state: Mapping[str, Any] = source.state
    has_head = "head.fc.weight" in state
    if has_head and not request.features_only and request.num_classes and \
            tuple(state["head.fc.weight"].shape) != (request.num_classes, request.plan.num_features):
        warnings.warn(f"{source.origin}: classifier has {state['head.fc.weight'].shape[0]} classes, the model "
                      f"{request.num_classes}; head.fc is re-initialised (train it before use)", UserWarning,
                      stacklevel=3)
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    elif has_head and (request.features_only or request.num_classes == 0):
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    if request.features_only:  # the plan stops at the deepest requested stage: so do the weights
        built = {"stem", *(s.name for s in request.plan.stages)}
        state = {k: v for k, v in state.items() if k.split(".", 1)[0] in built}
    expected = expected_shapes(request)
    key = stem_conv_key(request.plan)
    stem = state.get(key)
    if stem is not None and len(stem.shape) == 4 and stem.shape[1] != request.in_chans:  # timm's pretrained in_chans
        state = {**state, key: adapt_input_conv(stem, request.in_chans)}
    if "head.fc.weight" in expected and "head.fc.weight" not in state:
        expected = {k: v for k, v in expected.items() if not k.startswith("head.")}
        if source.num_classes == 0:
            warnings.warn(f"{source.origin} has no classifier; head.fc ({request.num_classes} classes) is randomly "
                          f"initialised", UserWarning, stacklevel=3)
    check_state(state, expected, source.origin)
    return state
