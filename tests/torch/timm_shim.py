"""A pytest plugin that runs timm's own ``tests/test_models.py`` on regnet-zoo's torch models.

Loaded with ``-p timm_shim`` in a pytest run of the file from timm's sdist (see ``test_timm_suite.py``). Before
timm's test module is collected it routes timm's registry functions to regnet-zoo for the variants named in
``REGNET_ZOO_TIMM_VARIANTS`` (comma-separated): ``list_models`` / ``list_pretrained`` list only them (with their
weight tags), ``create_model`` builds them with ``regnet_zoo.create(name, "torch", **kwargs)`` (timm's
``feature_cfg`` dict is passed as its ``feature_cls`` keyword) and ``get_pretrained_cfg_value`` reads regnet-zoo's
``pretrained_cfg``. Other names still go to timm.

Collected tests are deselected when they are not about our variants (timm's fixed-model tests), when they need
the network (pretrained downloads), or, for the variants in ``REGNET_ZOO_TIMM_ABSTRACT``, when they compute on real
tensors (those run only timm's meta-device config test). ``REGNET_ZOO_TIMM_REPORT`` names a JSON file that gets,
per variant, the count of each outcome, plus the deselection counts by reason.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections import Counter, defaultdict

import timm
import timm.models

import regnet_zoo as rz
from regnet_zoo.pretrained_cfg import pretrained_cfg

VARIANTS = tuple(v for v in os.environ.get("REGNET_ZOO_TIMM_VARIANTS", "").split(",") if v)
ABSTRACT = frozenset(v for v in os.environ.get("REGNET_ZOO_TIMM_ABSTRACT", "").split(",") if v)
NETWORK_TESTS = ("test_model_inference", "test_model_load_pretrained", "test_model_features_pretrained")
META_TESTS = ("test_model_default_cfgs",)  # build and run on the meta device: no storage, any size

_timm_create_model = timm.create_model
_timm_get_pretrained_cfg_value = timm.models.get_pretrained_cfg_value


def _ours(name: str) -> bool:
    return isinstance(name, str) and name.split(".", 1)[0] in VARIANTS


def _patterns(value) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    return list(value or [])


def list_models(filter="", module="", pretrained=False, exclude_filters="", name_matches_cfg=False,
                include_tags=None):
    """timm's ``list_models`` over our variants (all live in timm's ``regnet`` module)."""
    if module and not any(fnmatch.fnmatch("regnet", m) for m in _patterns(module)):
        return []
    include_tags = pretrained if include_tags is None else include_tags
    names = []
    for v in VARIANTS:
        tags = list(rz.get_variant(v).weights)
        if include_tags:
            names += [f"{v}.{t}" for t in tags]
        elif tags or not pretrained:
            names.append(v)
    keep = _patterns(filter)
    if keep:
        names = [n for n in names if any(fnmatch.fnmatch(n, p) or fnmatch.fnmatch(n.split(".")[0], p) for p in keep)]
    drop = _patterns(exclude_filters)
    return [n for n in names if not any(fnmatch.fnmatch(n, p) for p in drop)]


def list_pretrained(filter="", exclude_filters=""):
    return list_models(filter, pretrained=True, exclude_filters=exclude_filters, include_tags=True)


def create_model(model_name, pretrained=False, **kwargs):
    if not _ours(model_name):
        return _timm_create_model(model_name, pretrained=pretrained, **kwargs)
    feature_cfg = kwargs.pop("feature_cfg", None) or {}
    return rz.create(model_name, "torch", pretrained=pretrained, **feature_cfg, **kwargs)


def get_pretrained_cfg_value(model_name, cfg_key):
    if not _ours(model_name):
        return _timm_get_pretrained_cfg_value(model_name, cfg_key)
    res = rz.resolve(model_name)
    return pretrained_cfg(res.variant, res.weight).get(cfg_key)


for _module in (timm, timm.models):
    for _fn in (list_models, list_pretrained, create_model, get_pretrained_cfg_value):
        setattr(_module, _fn.__name__, _fn)

_outcomes: dict[str, Counter] = defaultdict(Counter)
_deselected: Counter = Counter()
_variant_of: dict[str, str] = {}  # selected test id -> variant


def _variant(item) -> str | None:
    spec = getattr(item, "callspec", None)
    name = spec.params.get("model_name") if spec else None
    return name.split(".", 1)[0] if _ours(name) else None


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): per-test time limit (pytest-timeout's; unused here)")


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        variant = _variant(item)
        if variant is None:
            reason = "not a regnet-zoo variant"
        elif item.originalname in NETWORK_TESTS:
            reason = "needs the network"
        elif variant in ABSTRACT and item.originalname not in META_TESTS:
            reason = "too large to compute here (meta-device config test only)"
        else:
            keep.append(item)
            _variant_of[item.nodeid] = variant
            continue
        _deselected[reason] += 1
        drop.append(item)
    items[:] = keep
    config.hook.pytest_deselected(items=drop)


def pytest_runtest_logreport(report):
    variant = _variant_of.get(report.nodeid)
    if variant is not None and (report.when == "call" or report.outcome != "passed"):
        test = report.nodeid.split("::")[-1].split("[")[0]
        _outcomes[variant][f"{report.outcome}:{test}"] += 1


def pytest_sessionfinish(session):
    path = os.environ.get("REGNET_ZOO_TIMM_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({"outcomes": {v: dict(c) for v, c in _outcomes.items()}, "deselected": dict(_deselected)}, f,
                      indent=1, sort_keys=True)
