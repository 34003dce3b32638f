"""The registry's weight tags against the real timm (every timm RegNet X/Y tag, with its pretrained_cfg)."""

from __future__ import annotations


import regnet_zoo as rz

import timm  # noqa: E402  (a test dependency: CI installs it)


def _timm_tags() -> dict[str, object]:
    from timm.models import get_pretrained_cfg

    from timm.models.regnet import model_cfgs  # the architectures of timm's regnet.py (not byobnet's regnetz_b16...)

    return {name: get_pretrained_cfg(name) for name in timm.list_pretrained("regnet*")
            if name.split(".")[0] in model_cfgs}


def test_every_timm_regnet_tag_is_registered_with_its_pretrained_cfg():
    ours = {}
    for full in rz.list_variants(pretrained=True):
        w = rz.resolve(full).weight
        if w.keys == "timm":
            ours[full] = w
    theirs = _timm_tags()
    assert sorted(ours) == sorted(theirs)
    problems = []
    for name, cfg in theirs.items():
        w, c = ours[name], cfg.to_dict()
        test_size = c["test_input_size"][1] if c.get("test_input_size") else None
        expected = dict(hub=c["hf_hub_id"], num_classes=c["num_classes"], input_size=c["input_size"][1],
                        test_input_size=test_size, crop_pct=c["crop_pct"], test_crop_pct=c.get("test_crop_pct"),
                        interpolation=c["interpolation"], mean=tuple(c["mean"]), std=tuple(c["std"]),
                        license=c.get("license"))
        problems += [f"{name}.{k}: timm {v!r}, registry {getattr(w, k)!r}" for k, v in expected.items()
                     if getattr(w, k) != v]
    assert not problems, "\n".join(problems)


def test_default_tags_follow_timm_order():
    from timm.models._registry import get_arch_pretrained_cfgs

    for name in rz.list_variants():
        if name not in timm.list_models():
            continue
        timm_order = [t.split(".", 1)[1] for t, c in get_arch_pretrained_cfgs(name).items()
                      if c.hf_hub_id or c.url]  # "untrained" placeholders (regnety_040_sgn, regnetz_005) have none
        ours = [t for t, w in rz.get_variant(name).weights.items() if w.keys == "timm"]
        assert ours == timm_order, name


def test_hf_tags_name_facebook_repositories():
    hf = {rz.resolve(n).weight.hub for n in rz.list_variants(pretrained=True) if rz.resolve(n).weight.keys == "hf"}
    assert all(h.startswith("facebook/regnet-") for h in hf)
    for size in ("320", "640", "1280", "10b"):
        assert f"facebook/regnet-y-{size}-seer" in hf and f"facebook/regnet-y-{size}-seer-in1k" in hf
