"""The public API: list, describe and build RegNet variants in any registered framework."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Union

from . import adhoc

from .errors import FrameworkNotInstalledError, PluginError, WeightsError, describe, spell
from .frameworks import BuildRequest, Framework, FrameworkInfo, WeightSource
from .feature_info import FeatureInfoList, normalize_out_indices
from .options import check_pooling, parse_options
from .plan import ArchPlan, build_plan, check_output_stride
from .plugins import get_host
from .registry import Resolved, close_matches
from .variant import Variant, WeightTag
from .weights.match import input_channels

DEFAULT_NUM_CLASSES = 1000
DEFAULT_IN_CHANS = 3


def list_variants(pattern: str = "*", *, pretrained: bool = False, framework: str | None = None) -> list[str]:
    """Canonical variant names matching ``pattern`` (fnmatch), in natural order.

    ``pretrained=True`` lists ``name.tag`` for every weight tag; ``framework`` keeps the variants that framework
    can build (an unknown framework is an error).
    """
    host = get_host()
    names = host.registry.list(pattern, pretrained=pretrained)
    if framework is not None:
        fw = host.framework(framework)
        names = [n for n in names if _builds(fw, host.registry.resolve(n).variant)]
    return names


def frameworks_that_build(variant: Variant) -> list[str]:
    """Names of the registered frameworks that declare what ``variant`` needs (its block and design features)."""
    return [fw.name for fw in get_host().frameworks.values() if _builds(fw, variant)]


def _builds(fw: Framework, variant: Variant) -> bool:
    """True when ``fw`` declares every block type and design feature ``variant`` needs."""
    return variant.block in fw.blocks and build_plan(variant).design_features() <= set(fw.design_features)


VariantSpec = Union[str, "os.PathLike[str]", dict, Variant]


def resolve(name: VariantSpec) -> Resolved:
    """Look up a name, alias, hub id or ``name.tag``; or take an ad-hoc variant: a ``Variant``, a dict of
    ``registry.yaml`` entry fields, or a YAML file path (``path::name`` for one of several), validated by the
    registry loader (see ``regnet_zoo.adhoc``)."""
    if isinstance(name, Variant):
        return Resolved(name)
    if isinstance(name, dict):
        return Resolved(adhoc.from_dict(name))
    if adhoc.is_file_spec(name):
        return Resolved(adhoc.from_file(name))
    return get_host().registry.resolve(name)


def get_variant(name: VariantSpec) -> Variant:
    """The validated variant record (``.source`` says which file, line and plugin defined it)."""
    return resolve(name).variant


@lru_cache(maxsize=None)
def _plan_of(variant: Variant, output_stride: int = 32) -> ArchPlan:
    return build_plan(variant).with_output_stride(output_stride)


def plan(name: VariantSpec, output_stride: int = 32) -> ArchPlan:
    """Per-stage architecture plan of a variant, with complexity and feature metadata. Pure Python.

    ``output_stride`` 16 / 8 dilates the later stages instead of striding them (timm's rule;
    ``ArchPlan.with_output_stride``).
    """
    return _plan_of(get_variant(name), check_output_stride(output_stride))


def feature_info(name: VariantSpec, out_indices: Iterable[int] = (1, 2, 3, 4), *,
                 output_stride: int = 32) -> FeatureInfoList:
    """Channels, reduction and level of each feature map ``create(..., features_only=True)`` returns."""
    return plan(name, output_stride).feature_info(out_indices)


def list_frameworks() -> list[FrameworkInfo]:
    """Every registered framework, whether it is installed, and how to install it."""
    return [FrameworkInfo(f.name, f.aliases, f.plugin, f.installed, f.install_hint, f.description)
            for f in get_host().frameworks.values()]


def _check_int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}, got {describe(value)}")
    return value


def _select_weights(res: Resolved, pretrained: Any) -> tuple[WeightTag | None, WeightSource | None]:
    """Turn ``pretrained`` into (weight tag metadata, loaded canonical weights)."""
    variant = res.variant
    if pretrained is None or pretrained is False:
        return res.weight, None
    if isinstance(pretrained, WeightSource):  # canonical weights already in memory
        return res.weight, pretrained
    weight: WeightTag | None
    if pretrained is True:
        tag = res.tag or variant.default_tag
        if tag is None:
            raise WeightsError(f"variant {variant.name!r} has no published weights; pass "
                               f"{spell('pretrained=<local path>')} or {spell('pretrained=False')}")
        weight, target = variant.weights[tag], tag
    elif isinstance(pretrained, str) and pretrained in variant.weights:
        weight, target = variant.weights[pretrained], pretrained
    elif isinstance(pretrained, (str, os.PathLike)):
        path = Path(pretrained).expanduser()
        if not path.exists():
            close = close_matches(str(pretrained), list(variant.weights))
            hint = (f"did you mean tag {close[0]!r}?" if close else
                    f"tags of {variant.name}: {', '.join(variant.weights) or 'none'}")
            raise WeightsError(f"{spell('pretrained={value!r}', value=str(pretrained))} is neither a weight tag of "
                               f"{variant.name!r} nor an existing file or directory; {hint}")
        weight, target = res.weight, path
    else:
        raise TypeError(f"pretrained must be a bool, a weight tag or a path, got {describe(pretrained)}")
    source = get_host().pm.hook.resolve_weights(variant=variant, weight=weight if isinstance(target, str) else None,
                                                 pretrained=target)
    if source is None:
        raise WeightsError(f"no installed plugin can load weights {target!s} for {variant.name!r}")
    if not isinstance(source, WeightSource):
        raise PluginError(f"a resolve_weights hook returned {type(source).__name__}; expected a WeightSource")
    return weight, source


def create(name: VariantSpec, framework: str = "torch", **kwargs: Any):
    """Build ``name`` (a variant, alias, hub id or ``name.tag``; or an ad-hoc variant: a dict of registry.yaml fields,
    a YAML file path, ``path::name``, a ``Variant``) as a model of ``framework``.

    Keyword arguments are those of ``build_request``: ``pretrained``, ``num_classes``, ``features_only``,
    ``out_indices``, ``in_chans``, ``output_stride`` and the options (shared: ``regnet_zoo.options.SharedOptions``;
    the framework's own: ``Framework.options``).
    """
    fw, request = _request(name, framework, **kwargs)
    return _labelled(fw.build(request), request)


def _labelled(model: Any, request: BuildRequest) -> Any:
    """``model`` with ``variant_name`` and ``weight_tag`` (the tag it was built for), which ``data_config(model)``
    reads, unless its plugin set them."""
    for attr, value in (("variant_name", request.variant.name), ("weight_tag", request.weight)):
        if not hasattr(model, attr):
            try:
                setattr(model, attr, value)
            except (AttributeError, TypeError):  # e.g. flax's linen (module, variables) tuple
                pass
    return model


def _check_design_features(fw: Framework, plan_: ArchPlan) -> None:
    """Refuse, before importing anything, a plan that needs what the framework does not build, naming both and the
    frameworks that do build it."""
    lacking = sorted(plan_.design_features() - set(fw.design_features))
    if lacking:
        able = [f.name for f in get_host().frameworks.values() if plan_.design_features() <= set(f.design_features)]
        hint = f"frameworks that build it: {', '.join(able)}" if able else "no registered framework builds it yet"
        raise ValueError(f"framework {fw.name!r} cannot build {plan_.name}: it needs {', '.join(lacking)}, which "
                         f"{fw.name!r} does not support yet; {hint}")


def build_request(name: VariantSpec, framework: str = "torch", **kwargs: Any) -> BuildRequest:
    """The validated ``BuildRequest`` ``create`` hands the framework's builder (nothing is built or imported)."""
    return _request(name, framework, **kwargs)[1]


def _request(
    name: VariantSpec,
    framework: str = "torch",
    *,
    pretrained: bool | str | os.PathLike = False,
    num_classes: int | None = None,
    features_only: bool = False,
    out_indices: Iterable[int] = (1, 2, 3, 4),
    in_chans: int | None = None,
    output_stride: int = 32,
    **framework_kwargs: Any,
) -> tuple[Any, BuildRequest]:
    """Resolve and validate a ``create`` call into (framework record, ``BuildRequest``).

    ``pretrained``: ``True`` (the tag in the name, else the variant's default tag), a tag, a checkpoint path, or a
    ``WeightSource`` (canonical weights in memory).
    ``num_classes``: classifier size (0 = pooled features); defaults to the weights' head, else 1000.
    ``in_chans``: input channels; defaults to the weights' stem, else 3 (other counts adapt a 3-channel stem as timm
    does: ``loading.adapt_input_conv``).
    ``features_only``: return a backbone giving the maps at ``out_indices`` (0 = stem, 1..4 = s1..s4).
    ``output_stride``: 32, 16 or 8; stages past that reduction are dilated instead of strided (timm's rule, in the
    plan the builder gets: ``BlockPlan.dilation``, ``StagePlan.stride``).
    ``framework_kwargs``: the options every framework shares (``regnet_zoo.options.SharedOptions``: drop_rate,
    drop_path_rate, frozen_stages, norm_eval, norm, force, dtype, data_format, fast, abstract) and the framework's
    own (``Framework.options``), validated here, before the framework is imported; and architecture overrides
    (``adhoc.OVERRIDES``: ``act`` (timm's ``act_layer``), ``se_ratio``, ``bottle_ratio``, ``downsample``,
    ``preact``, ``linear_out``, ``num_features``), applied to the variant as timm's ``create_model`` does.
    """
    res = resolve(name)
    overrides = {adhoc.TIMM_OVERRIDE_NAMES.get(k, k): framework_kwargs.pop(k) for k in list(framework_kwargs)
                 if adhoc.TIMM_OVERRIDE_NAMES.get(k, k) in adhoc.OVERRIDES}
    if overrides:
        res = Resolved(adhoc.with_overrides(res.variant, overrides), res.tag)
    fw = get_host().framework(framework)
    if res.variant.block not in fw.blocks:
        raise ValueError(f"framework {fw.name!r} cannot build {res.variant.block.upper()} blocks "
                         f"({res.variant.name}); it builds: {', '.join(b.upper() for b in fw.blocks)}")
    missing = fw.missing
    if missing:
        hint = fw.install_hint or f"pip install {' '.join(missing)}"
        raise FrameworkNotInstalledError(f"framework {fw.name!r} needs {', '.join(missing)}, which "
                                         f"{'is' if len(missing) == 1 else 'are'} not installed; install it with: "
                                         f"{hint}")
    if not isinstance(features_only, bool):
        raise TypeError(f"features_only must be a bool, got {describe(features_only)}")
    indices = normalize_out_indices(out_indices)
    if in_chans is not None:
        _check_int(in_chans, "in_chans", 1)
    plan_ = _plan_of(res.variant, check_output_stride(output_stride))
    _check_design_features(fw, plan_)
    if features_only:  # timm's features_only: nothing after the deepest requested map is built
        plan_ = plan_.truncated(max(indices))
    shared, extras = parse_options(fw, framework_kwargs, num_stages=len(plan_.stages),
                                   pretrained=pretrained is not None and pretrained is not False)
    weight, source = _select_weights(res, pretrained)
    if in_chans is None:  # a checkpoint's own input channels (a 1-channel fine-tune), else RGB
        in_chans = input_channels(source.state) if source is not None else DEFAULT_IN_CHANS
    if num_classes is None:
        num_classes = source.num_classes if source is not None else (
            weight.num_classes if weight is not None else DEFAULT_NUM_CLASSES)
    _check_int(num_classes, "num_classes", 0)
    check_pooling(shared.global_pool, features_only, num_classes)
    request = BuildRequest(
        variant=res.variant, plan=plan_, num_classes=num_classes, features_only=features_only,
        out_indices=indices, in_chans=in_chans, weight=weight, weights=source, options=extras, shared=shared,
    )
    return fw, request
