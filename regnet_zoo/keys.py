"""The canonical weight key space: timm's PyTorch ``state_dict`` names and shapes, derived from a plan.

Canonical weights are a flat ``{name: numpy array}`` dict with timm's names and PyTorch layouts (conv OIHW,
linear (out, in)); BN contributes ``weight, bias, running_mean, running_var`` (timm's ``num_batches_tracked``
counters are not part of it). Every framework plugin maps its own variables to and from this space.
"""

from __future__ import annotations

from .plan import ArchPlan

BN_PARAMS = ("weight", "bias")
BN_STATS = ("running_mean", "running_var")
BN_KEYS = BN_PARAMS + BN_STATS


def _conv_bn(prefix: str, out_ch: int, in_per_group: int, k: int) -> dict[str, tuple[int, ...]]:
    shapes = {f"{prefix}.conv.weight": (out_ch, in_per_group, k, k)}
    shapes.update({f"{prefix}.bn.{n}": (out_ch,) for n in BN_KEYS})
    return shapes


def canonical_shapes(plan: ArchPlan, num_classes: int = 1000, in_chans: int = 3) -> dict[str, tuple[int, ...]]:
    """Every canonical key of ``plan`` with its shape, in timm's ``state_dict`` order."""
    shapes = _conv_bn("stem", plan.stem_width, in_chans, 3)
    for stage in plan.stages:
        for b in stage.blocks:
            p = b.name
            shapes.update(_conv_bn(f"{p}.conv1", b.bottleneck_width, b.in_width, 1))
            shapes.update(_conv_bn(f"{p}.conv2", b.bottleneck_width, b.bottleneck_width // b.groups, 3))
            if b.se_width:
                shapes[f"{p}.se.fc1.weight"] = (b.se_width, b.bottleneck_width, 1, 1)
                shapes[f"{p}.se.fc1.bias"] = (b.se_width,)
                shapes[f"{p}.se.fc2.weight"] = (b.bottleneck_width, b.se_width, 1, 1)
                shapes[f"{p}.se.fc2.bias"] = (b.bottleneck_width,)
            shapes.update(_conv_bn(f"{p}.conv3", b.out_width, b.bottleneck_width, 1))
            if b.shortcut_conv:
                shapes.update(_conv_bn(f"{p}.downsample", b.out_width, b.in_width, 1))
    if num_classes:
        shapes["head.fc.weight"] = (num_classes, plan.num_features)
        shapes["head.fc.bias"] = (num_classes,)
    return shapes


def is_buffer(key: str) -> bool:
    """True for BN running statistics (state, not trainable parameters)."""
    return key.endswith(BN_STATS)


def stage_of(key: str) -> int:
    """Feature index a key belongs to: 0 = stem, 1..4 = s1..s4, 5 = head."""
    head = key.split(".", 1)[0]
    if head == "stem":
        return 0
    if head == "head":
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
