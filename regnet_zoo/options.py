"""The options every framework shares, validated once by the host, and each framework's own extras.

``create(name, framework, **kwargs)`` splits ``kwargs`` into the shared options below (one ``SharedOptions``) and
the framework's extras, which its plugin declares as a dataclass (``Framework.options``: every field an option,
its default the default; like llm's ``Options`` with ``extra="forbid"``). A name in neither is a ``TypeError``
with a did-you-mean and the accepted list. A shared option the framework cannot honour (``Framework.unsupported``:
name -> reason, or ``Framework.limits``: name -> accepted values) is an ``UnsupportedOptionError`` naming the
framework and the reason. Nothing here imports a framework.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, Mapping

from .adhoc import OVERRIDES, TIMM_OVERRIDE_NAMES
from .errors import RegNetZooError, describe
from .freezing import refuse_frozen_random_bn

NORMS = ("bn", "frozen_bn", "sync_bn")
DATA_FORMATS = ("channels_last", "channels_first")
FAST = (False, True, "fp32", "bf16")
GLOBAL_POOLS = ("avg", "max", "avgmax", "catavgmax", "")  # timm's SelectAdaptivePool2d; "" = none


class UnsupportedOptionError(RegNetZooError, ValueError):
    """A shared option (or value) a framework cannot honour; the message names the framework and the reason."""


@dataclass(frozen=True)
class SharedOptions:
    """What every framework accepts (defaults = off). ``data_format`` None = the framework's native layout."""

    drop_rate: float = 0.0  # dropout before the classifier (timm)
    drop_path_rate: float = 0.0  # stochastic depth, increasing linearly per stage (timm)
    frozen_stages: int = -1  # -1 none, 0 stem, k stem + s1..sk: no gradient, BN in inference mode
    norm_eval: bool = False  # every BN in inference mode, also in training
    norm: str = "bn"  # "bn" | "frozen_bn" | "sync_bn"
    force: bool = False  # allow frozen BN (frozen_stages, norm_eval, frozen_bn) without pretrained weights
    dtype: Any = None  # compute / parameter dtype: a name ("float32", "bfloat16", ...) or a framework dtype
    data_format: str | None = None  # None (native) | "channels_last" (NHWC) | "channels_first" (NCHW)
    fast: Any = False  # False | True (= "fp32") | "bf16": an inference-only optimised model
    abstract: bool = False  # shapes only: no memory, no compute (load weights later)
    global_pool: str = "avg"  # classifier pooling (timm's names: "avg" | "max" | "avgmax" | "catavgmax" | "")


SHARED_NAMES = tuple(f.name for f in dataclasses.fields(SharedOptions))


def _unknown(names: list[str], accepted: list[str], framework: str) -> TypeError:
    overrides = [*OVERRIDES, *TIMM_OVERRIDE_NAMES]
    hints = [f"{k!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(k, accepted + overrides, n=1))
             else repr(k) for k in names]
    return TypeError(f"unknown option{'s' if len(names) > 1 else ''} for framework {framework!r}: {', '.join(hints)}; "
                     f"accepted: {', '.join(accepted)}; architecture overrides: {', '.join(overrides)}")


def _check_shared(o: SharedOptions, num_stages: int) -> None:
    def check(ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(message)

    for name in ("drop_rate", "drop_path_rate"):
        v = getattr(o, name)
        check(isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v < 1.0,
              f"{name} must be a float in [0, 1), got {describe(v)}")
    fs = o.frozen_stages
    check(isinstance(fs, int) and not isinstance(fs, bool) and -1 <= fs <= num_stages,
          f"frozen_stages must be an int in -1..{num_stages} (-1 none, 0 stem, k = stem + s1..sk), got {describe(fs)}")
    for name in ("norm_eval", "force", "abstract"):
        check(isinstance(getattr(o, name), bool), f"{name} must be True or False, got {describe(getattr(o, name))}")
    check(o.norm in NORMS, f"norm must be one of {', '.join(map(repr, NORMS))} (BatchNorm's mode), got "
                           f"{describe(o.norm)}" + (f"; to change the architecture's norm layer use "
                                                    f"norm_layer={o.norm!r} (timm's name)"
                                                    if o.norm in ("batchnorm", "groupnorm") else ""))
    check(isinstance(o.global_pool, str) and o.global_pool in GLOBAL_POOLS,
          f"global_pool must be one of {', '.join(map(repr, GLOBAL_POOLS))}, got {describe(o.global_pool)}")
    check(o.data_format is None or o.data_format in DATA_FORMATS,
          f"data_format must be None (native) or one of {', '.join(map(repr, DATA_FORMATS))}, "
          f"got {describe(o.data_format)}")
    check(any(o.fast is v for v in FAST[:2]) or (isinstance(o.fast, str) and o.fast in FAST[2:]),
          f"fast must be False, True (= 'fp32') or 'bf16', got {describe(o.fast)}")
    if o.fast is not False and (o.frozen_stages >= 0 or o.norm_eval or o.norm != "bn" or o.abstract):
        raise ValueError("fast= builds an inference-only model (BN folded into the convolutions); frozen_stages, "
                         "norm_eval, norm and abstract are training / build options and cannot be combined with it")


def check_pooling(global_pool: str, features_only: bool, num_classes: int) -> None:
    """``global_pool`` against the kind of model: a backbone has no pooling, a classifier needs pooled features."""
    if features_only and global_pool != "avg":
        raise ValueError(f"global_pool={global_pool!r} has no effect with features_only=True (a backbone returns "
                         f"unpooled maps); leave it out")
    if global_pool == "" and num_classes:
        raise ValueError(f"global_pool='' (no pooling) needs num_classes=0: a classifier needs pooled features, got "
                         f"num_classes={num_classes}")


def parse_options(framework, kwargs: Mapping[str, Any], *, num_stages: int, pretrained: bool):
    """Split and validate ``create``'s keyword arguments for ``framework`` (a ``Framework`` record).

    Returns ``(SharedOptions, extras)``: ``extras`` holds every field of the framework's own options dataclass,
    defaults filled in. Applies the frozen-BN rule (``freezing.refuse_frozen_random_bn``).
    """
    schema = framework.options
    extra_names = [f.name for f in dataclasses.fields(schema)] if schema is not None else []
    clash = set(extra_names) & set(SHARED_NAMES)
    if clash:
        from .errors import PluginError

        raise PluginError(f"framework {framework.name!r} redeclares shared option(s) {sorted(clash)}; declare only "
                          f"its own extras")
    accepted = list(SHARED_NAMES) + extra_names
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise _unknown(unknown, accepted, framework.name)
    shared = SharedOptions(**{k: v for k, v in kwargs.items() if k in SHARED_NAMES})
    _check_shared(shared, num_stages)
    default = SharedOptions()
    for name, reason in dict(framework.unsupported).items():
        value = getattr(shared, name)
        if value is not getattr(default, name) and value != getattr(default, name):
            raise UnsupportedOptionError(f"framework {framework.name!r} does not support {name}={describe(value)}: "
                                         f"{reason}")
    for name, allowed in dict(framework.limits).items():
        value = getattr(shared, name)
        if not any(value is a or (type(value) is type(a) and value == a) for a in allowed):
            raise UnsupportedOptionError(f"framework {framework.name!r} does not support {name}={describe(value)}; it "
                                         f"accepts {', '.join(map(repr, allowed))}")
    refuse_frozen_random_bn(pretrained=pretrained, force=shared.force, frozen_stages=shared.frozen_stages,
                            norm_eval=shared.norm_eval, frozen_bn=shared.norm == "frozen_bn")
    extras = dataclasses.asdict(schema(**{k: v for k, v in kwargs.items() if k in extra_names})) \
        if schema is not None else {}
    return shared, extras


def accepted_options(framework) -> dict[str, Any]:
    """Every option ``create`` accepts for ``framework`` with its default (shared first, then the extras)."""
    out = dataclasses.asdict(SharedOptions())
    if framework.options is not None:
        out.update(dataclasses.asdict(framework.options()))
    return out
