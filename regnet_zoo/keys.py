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


STEM_CONV_KEYS = ("stem.conv.weight", "stem.weight")  # a ConvNormAct stem's kernel; a pre-activation bare conv's


def stem_conv_key(plan: ArchPlan) -> str:
    """The canonical key of the stem's 3x3 kernel (the one timm's ``adapt_input_conv`` adapts to ``in_chans``)."""
    return STEM_CONV_KEYS[1] if plan.preact else STEM_CONV_KEYS[0]


def _norm(plan: ArchPlan, prefix: str, width: int) -> dict[str, tuple[int, ...]]:
    """A norm's keys: BN's four, GroupNorm's affine pair."""
    return {f"{prefix}.{n}": (width,) for n in (BN_KEYS if plan.norm == "batchnorm" else BN_PARAMS)}


def _conv(plan: ArchPlan, prefix: str, out_ch: int, in_per_group: int, k: int,
          norm: bool = True) -> dict[str, tuple[int, ...]]:
    """timm's ``ConvNormAct`` (``{prefix}.conv.weight`` + ``{prefix}.bn.*``), or a bare conv (``{prefix}.weight``)
    where ``norm`` is False (pre-activation networks)."""
    if not norm:
        return {f"{prefix}.weight": (out_ch, in_per_group, k, k)}
    return {f"{prefix}.conv.weight": (out_ch, in_per_group, k, k), **_norm(plan, f"{prefix}.bn", out_ch)}


def canonical_shapes(plan: ArchPlan, num_classes: int = 1000, in_chans: int = 3) -> dict[str, tuple[int, ...]]:
    """Every canonical key of ``plan`` with its shape, in timm's ``state_dict`` order."""
    post = not plan.preact  # ConvNormAct layers; pre-activation networks have bare convs and norms before them
    shapes = _conv(plan, "stem", plan.stem_width, in_chans, 3, post)
    for stage in plan.stages:
        for b in stage.blocks:
            p, wb = b.name, b.bottleneck_width
            for i, (c_in, c_out, per_group, k) in enumerate(
                    ((b.in_width, wb, b.in_width, 1), (wb, wb, wb // b.groups, 3)), start=1):
                if not post:
                    shapes.update(_norm(plan, f"{p}.norm{i}", c_in))
                shapes.update(_conv(plan, f"{p}.conv{i}", c_out, per_group, k, post))
            if b.se_width:
                shapes[f"{p}.se.fc1.weight"] = (b.se_width, wb, 1, 1)
                shapes[f"{p}.se.fc1.bias"] = (b.se_width,)
                shapes[f"{p}.se.fc2.weight"] = (wb, b.se_width, 1, 1)
                shapes[f"{p}.se.fc2.bias"] = (wb,)
            if not post:
                shapes.update(_norm(plan, f"{p}.norm3", wb))
            shapes.update(_conv(plan, f"{p}.conv3", b.out_width, wb, 1, post))
            if b.shortcut_conv:
                prefix = f"{p}.downsample" + (".1" if b.shortcut == "avg" else "")  # avg: Sequential(pool, conv)
                shapes.update(_conv(plan, prefix, b.out_width, b.in_width, 1, post))
    if plan.final_conv_width:
        shapes.update(_conv(plan, "final_conv", plan.final_conv_width, plan.stages[-1].out_width, 1))
    if num_classes:
        shapes["head.fc.weight"] = (num_classes, plan.num_features)
        shapes["head.fc.bias"] = (num_classes,)
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
