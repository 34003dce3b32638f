"""The RegNet quantised linear width rule, with both roundings found in the wild.

``generate(w0, wa, wm, depth, group_width, rounding)`` returns per-stage ``(widths, depths, group_widths)``.

* ``rounding="pycls"`` (pycls, timm, HF): block widths ``w0 * wm**round(log(u_j / w0) / log(wm))`` rounded to
  a multiple of 8, then each stage width rounded to a multiple of its group width with round-half-to-even.
* ``rounding="torchvision"``: the same block widths, but the group-width quantisation rounds half up and
  adds one group width when that lost more than 10 % (torchvision's ``_make_divisible``).

Pure Python: ``round`` is banker's rounding like ``numpy.round``.
"""

from __future__ import annotations

import math

QUANT = 8
ROUNDINGS = ("pycls", "torchvision")


def block_widths(w0: float, wa: float, wm: float, depth: int) -> list[int]:
    """Per-block widths of the quantised linear rule (before group compatibility)."""
    widths = []
    for j in range(depth):
        u = j * wa + w0
        k = round(math.log(u / w0) / math.log(wm))
        widths.append(int(round(w0 * wm**k / QUANT)) * QUANT)
    return widths


def _make_divisible(v: int, divisor: int) -> int:
    """torchvision's rounding: half up, never more than 10 % below ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def generate(
    w0: float, wa: float, wm: float, depth: int, group_width: int, rounding: str = "pycls"
) -> tuple[list[int], list[int], list[int]]:
    """Stage widths, stage depths and (clipped) group widths for generator parameters."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"unknown rounding {rounding!r}; expected one of {', '.join(ROUNDINGS)}")
    widths: list[int] = []
    depths: list[int] = []
    for w in block_widths(w0, wa, wm, depth):
        if widths and widths[-1] == w:
            depths[-1] += 1
        else:
            widths.append(w)
            depths.append(1)
    groups = [min(group_width, w) for w in widths]
    if rounding == "pycls":
        widths = [max(g, int(round(w / g) * g)) for w, g in zip(widths, groups)]
    else:
        widths = [_make_divisible(w, g) for w, g in zip(widths, groups)]
    return widths, depths, groups
