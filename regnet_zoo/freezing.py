"""The rule every framework applies to the detection knobs that freeze BatchNorm (DESIGN.md, "Detection knobs")."""

from __future__ import annotations


def refuse_frozen_random_bn(*, pretrained: bool, force: bool, frozen_stages: int = -1, norm_eval: bool = False,
                            frozen_bn: bool = False) -> None:
    """Raise ``ValueError`` when a knob would freeze BatchNorm statistics of a model built without weights.

    ``frozen_stages >= 0`` (frozen parts keep BN in inference mode), ``norm_eval`` and ``norm="frozen_bn"`` all
    keep running statistics fixed; on random weights those stay random for ever, which is a bug rather than a
    choice. ``force=True`` is the way out for a caller who loads weights into the built model itself.
    """
    knobs = [knob for knob, on in (("norm='frozen_bn'", frozen_bn), ("norm_eval=True", norm_eval),
                                   (f"frozen_stages={frozen_stages}", frozen_stages >= 0)) if on]
    if knobs and not pretrained and not force:
        raise ValueError(f"{' and '.join(knobs)} freeze{'s' if len(knobs) == 1 else ''} BatchNorm statistics, but "
                         f"no pretrained weights were given, so they would stay random (a frozen random BN is a bug, "
                         f"not a choice); pass pretrained=True / a weight tag / a checkpoint path, or force=True if "
                         f"you load weights yourself afterwards")
