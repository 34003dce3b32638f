"""The canonical weight key space: timm's PyTorch ``state_dict`` names and shapes, derived from a plan.

Canonical weights are a flat ``{name: numpy array}`` dict with timm's names and PyTorch layouts (conv OIHW,
linear (out, in)); BN contributes ``weight, bias, running_mean, running_var`` (timm's ``num_batches_tracked``
counters are not part of it). Every framework plugin maps its own variables to and from this space.
"""

from __future__ import annotations

from . import layer_table
from .plan import ArchPlan

BN_PARAMS = ("weight", "bias")
BN_STATS = ("running_mean", "running_var")
BN_KEYS = BN_PARAMS + BN_STATS


STEM_CONV_KEYS = ("stem.conv.weight", "stem.weight")  # a ConvNormAct stem's kernel; a pre-activation bare conv's


def stem_conv_key(plan: ArchPlan) -> str:
    """The canonical key of the stem's 3x3 kernel (the one timm's ``adapt_input_conv`` adapts to ``in_chans``)."""
    return STEM_CONV_KEYS[1] if plan.preact else STEM_CONV_KEYS[0]


def canonical_shapes(plan: ArchPlan, num_classes: int = 1000, in_chans: int = 3) -> dict[str, tuple[int, ...]]:
    """Every canonical key of ``plan`` with its shape, in timm's ``state_dict`` order (read off the layer table)."""
    shapes: dict[str, tuple[int, ...]] = {}
    norm_keys = BN_KEYS if plan.norm == "batchnorm" else BN_PARAMS  # GroupNorm: the affine pair only
    for layer in layer_table.layers(plan, num_classes, in_chans):
        if layer.kind == "conv":
            shapes[f"{layer.name}.weight"] = (layer.out_width, layer.in_width // layer.groups, layer.kernel,
                                              layer.kernel)
        elif layer.kind == "linear":
            shapes[f"{layer.name}.weight"] = (layer.out_width, layer.in_width)
        elif layer.kind == "norm":
            shapes.update({f"{layer.name}.{n}": (layer.out_width,) for n in norm_keys})
        if layer.bias:
            shapes[f"{layer.name}.bias"] = (layer.out_width,)
    return shapes


def is_buffer(key: str) -> bool:
    """True for BN running statistics (state, not trainable parameters)."""
    return key.endswith(BN_STATS)


def stage_of(key: str) -> int:
    """Feature index a key belongs to: 0 = stem, 1..4 = s1..s4, 5 = after the stages (final_conv, head)."""
    head = key.split(".", 1)[0]
    if head == "stem":
        return 0
    if head in ("head", "final_conv"):
        return 5
    return int(head[1:])


def check_state(state, expected: dict[str, tuple[int, ...]], origin: str = "weights") -> None:
    """Raise one ``WeightsError`` listing every missing, unexpected and mis-shaped key of ``state``.

    ``state`` maps canonical names to arrays (anything with ``.shape``); timm's ``num_batches_tracked``
    counters are ignored.
    """
    from .errors import WeightsError

    keys = {k for k in state if not k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in keys]
    unexpected = sorted(keys - expected.keys())
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)}, model {expected[k]}" for k in expected
              if k in keys and tuple(state[k].shape) != tuple(expected[k])]
    if not (missing or unexpected or shapes):
        return
    lines = [f"{origin} do not match the model:"]
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("mis-shaped keys", shapes)):
        if items:
            shown = items[:20] + ([f"... and {len(items) - 20} more"] if len(items) > 20 else [])
            lines.append(f"  {title} ({len(items)}): " + ", ".join(shown))
    raise WeightsError("\n".join(lines))
