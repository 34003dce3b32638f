"""``regnet-zoo`` command line: list, explain and check variants; run a backbone on a sample picture.

Errors go to stderr with exit status 1 (2 for usage errors); ``--traceback`` (or ``REGNET_ZOO_TRACEBACK=1``) shows
the Python traceback too. An error that says what to pass names this command line's option (``--weights PATH``),
not the Python keyword. The frameworks' start-up logs (TensorFlow's C++ lines, JAX / absl warnings) are kept off
stderr unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any

from . import __version__, api
from .errors import RegistryError, RegNetZooError, spelled
from .plugins import get_host
from .registry import family
from .registry_file import load_file

GFLOPS_RESOLUTION = 224
RANDOM = "random"  # --weights random: random weights, to check the pipeline offline

# How errors raised under each command spell the Python options they mention (regnet_zoo.errors.spell templates).
# predict and features have no --keys / --keep-bgr: a checkpoint that needs them goes through convert first.
SPELLINGS = {"rz.list_variants()": "`regnet-zoo list`"}
_CONVERT_FIRST = "the checkpoint through `regnet-zoo convert SRC DST {}` first"
WEIGHTS_SPELLINGS = {**SPELLINGS, "pretrained={value!r}": "--weights {value}",
                     "pretrained=<local path>": "--weights PATH", "pretrained=False": f"--weights {RANDOM}",
                     "keys=<space>": _CONVERT_FIRST.format("--keys SPACE"),
                     "bgr=False": _CONVERT_FIRST.format("--keep-bgr")}
PREDICT_SPELLINGS = {**WEIGHTS_SPELLINGS, "create({name!r}, ...)": "--model {name}",
                     "create({name!r}, ...) or rz.from_pretrained({path!r})": "--model {name}"}
FEATURES_SPELLINGS = {**WEIGHTS_SPELLINGS, "create({name!r}, ...)": "{name} as NAME",
                      "create({name!r}, ...) or rz.from_pretrained({path!r})": "{name} as NAME"}
CONVERT_SPELLINGS = {**SPELLINGS, "pretrained=<local path>": "a local checkpoint file or model directory as SRC",
                     "keys=<space>": "--keys SPACE", "bgr=False": "--keep-bgr", "variant=<name>": "--variant NAME",
                     "create({name!r}, ...)": "--variant {name}"}


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:,.1f}M" if n < 1e9 else f"{n / 1e9:,.2f}B"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _tags_cell(tags: list[str]) -> str:
    """The default tag and how many more (the full list is in ``show`` and ``list --pretrained``)."""
    if not tags:
        return "-"
    return tags[0] + (f" +{len(tags) - 1}" if len(tags) > 1 else "")


def _builders(variant) -> list[str]:
    return api.frameworks_that_build(variant)


def _block_kind(v) -> str:
    """The block family as timm names it: X, Y (squeeze-excitation), V (pre-activation), Z (inverted bottleneck with
    no activation after the add)."""
    return "Z" if v.linear_out else "V" if v.preact else v.block.upper()


def _norm_cell(v) -> str:
    """``bn``, or ``gn`` with its channels per group (``gn/16ch``) or its fixed group count (``gn/32g``)."""
    if v.norm == "batchnorm":
        return "bn"
    return f"gn/{v.norm_group_size}ch" if v.norm_group_size else f"gn/{v.norm_groups}g"


def _norm_words(v) -> str:
    if v.norm == "batchnorm":
        return "batchnorm"
    return (f"groupnorm ({v.norm_group_size} channels per group)" if v.norm_group_size
            else f"groupnorm ({v.norm_groups} groups)")


def _layers(v) -> str:
    """The variant's design-space choices in words (timm's RegNetCfg fields)."""
    parts = [v.act, _norm_words(v),
             "pre-activation blocks" if v.preact else "post-activation blocks",
             f"bottleneck x{v.bottle_ratio:g}", f"shape-changing shortcut {v.downsample}"]
    if v.linear_out:
        parts.append("no activation after the residual add")
    if v.num_features:
        parts.append(f"final 1x1 conv -> {v.num_features}")
    return ", ".join(parts)


def cmd_list(args: argparse.Namespace) -> int:
    names = api.list_variants(args.pattern, pretrained=args.pretrained, framework=args.framework)
    records = []
    for name in names:
        res = api.resolve(name)
        v, pl = res.variant, api.plan(name)
        rec: dict[str, Any] = {
            "name": name, "block": _block_kind(v), "norm": _norm_cell(v), "act": v.act, "params": pl.params(),
            "gflops": pl.flops(GFLOPS_RESOLUTION) / 1e9,
            "widths": list(v.widths), "depths": list(v.depths), "frameworks": _builders(v),
        }
        if args.pretrained:
            w = res.weight
            rec.update(hub=w.hub, keys=w.keys, num_classes=w.num_classes, input_size=w.input_size,
                       license=w.license)
        else:
            rec["tags"] = list(v.weights)
        records.append(rec)
    # by family, then by complexity: regnety_10b (1,863 GFLOPs) last rather than between regnety_008 and regnety_016
    records.sort(key=lambda r: (family(r["name"]), r["gflops"]))
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    if not records:
        print(f"no variant matches {args.pattern!r}", file=sys.stderr)
        return 1
    if args.pretrained:
        header = ["NAME", "BLOCK", "NORM", "PARAMS", f"GFLOPS@{GFLOPS_RESOLUTION}", "HUB", "KEYS", "CLASSES",
                  "SIZE", "LICENSE"]
        rows = [[r["name"], r["block"], r["norm"], _fmt_params(r["params"]), f"{r['gflops']:.2f}", r["hub"], r["keys"],
                 str(r["num_classes"]), str(r["input_size"]), r["license"]] for r in records]
    else:
        header = ["NAME", "BLOCK", "NORM", "PARAMS", f"GFLOPS@{GFLOPS_RESOLUTION}", "WIDTHS", "DEPTHS", "TAGS",
                  "FRAMEWORKS"]
        rows = [[r["name"], r["block"], r["norm"], _fmt_params(r["params"]), f"{r['gflops']:.2f}",
                 ",".join(map(str, r["widths"])), ",".join(map(str, r["depths"])),
                 _tags_cell(r["tags"]), ",".join(r["frameworks"])] for r in records]
    print(_table(rows, header))
    return 0


def _show_record(name: str, resolution: int, output_stride: int = 32) -> dict[str, Any]:
    res = api.resolve(name)
    v, pl = res.variant, api.plan(name, output_stride)
    cx = pl.complexity(resolution)
    return {
        "name": v.name, "description": v.description, "block": v.block.upper(), "kind": _block_kind(v),
        "output_stride": output_stride, "source": v.source,
        "aliases": list(v.aliases), "stem_width": v.stem_width, "se_ratio": v.se_ratio,
        "generator": v.generator.as_dict() if v.generator else None,
        "layers": _layers(v), "preact": v.preact,
        "stages": [{"name": s.name, "in": s.in_width, "out": s.out_width, "depth": s.depth, "stride": s.stride,
                    "dilation": s.blocks[-1].dilation,
                    "group_width": s.group_width, "groups": s.groups, "bottleneck": s.bottleneck_width,
                    "se_widths": sorted(set(s.se_widths))} for s in pl.stages],
        "feature_info": [f.as_dict() for f in pl.all_feature_info()],
        "complexity": {"resolution": resolution, "params": cx.params, "params_no_head": pl.params(0),
                       "gflops": cx.flops / 1e9, "mflops": cx.flops / 1e6, "acts_m": cx.acts / 1e6},
        "weights": [{"tag": t, "hub": w.hub, "keys": w.keys, "num_classes": w.num_classes,
                     "input_size": w.input_size, "test_input_size": w.test_input_size, "crop_pct": w.crop_pct,
                     "interpolation": w.interpolation, "license": w.license, "default": t == v.default_tag}
                    for t, w in v.weights.items()],
        "frameworks": _builders(v),
    }


def cmd_show(args: argparse.Namespace) -> int:
    """One variant; a user's YAML file without ``::NAME`` shows each of its variants."""
    from .adhoc import is_file_spec

    if is_file_spec(args.name) and "::" not in args.name:
        names = [f"{args.name}::{v.name}" for v in load_file(args.name)]
        if len(names) > 1:
            if args.json:
                print(json.dumps([_show_record(n, args.resolution, args.output_stride) for n in names], indent=2))
                return 0
            for i, name in enumerate(names):
                if i:
                    print()
                _print_show(_show_record(name, args.resolution, args.output_stride))
            return 0
    rec = _show_record(args.name, args.resolution, args.output_stride)
    if args.json:
        print(json.dumps(rec, indent=2))
        return 0
    _print_show(rec)
    return 0


def _print_show(rec: dict[str, Any]) -> None:
    out = [f"{rec['name']}: {rec['description'] or 'RegNet' + rec['kind']}",
           f"  defined at   {rec['source']}",
           f"  block        {rec['block']}" + (f" (squeeze-excitation ratio {rec['se_ratio']})" if rec['se_ratio'] else ""),
           f"  stem         3x3 conv stride 2 -> {rec['stem_width']} channels"
           + (" (bare conv)" if rec["preact"] else ""),
           f"  layers       {rec['layers']}"]
    if rec["aliases"]:
        out.append(f"  aliases      {', '.join(rec['aliases'])}")
    if rec["generator"]:
        g = rec["generator"]
        out.append(f"  generator    w0={g['w0']:g} wa={g['wa']:g} wm={g['wm']:g} depth={g['depth']} "
                   f"({g['rounding']} rounding)")
    out.append("")
    dilated = rec["output_stride"] != 32
    rows = [[s["name"], s["in"], s["out"], s["bottleneck"], s["depth"], s["stride"]] + ([s["dilation"]] if dilated
                                                                                       else [])
            + [s["group_width"], s["groups"], ",".join(map(str, s["se_widths"])) if any(s["se_widths"]) else "-"]
            for s in rec["stages"]]
    header = ["STAGE", "IN", "OUT", "BOTTLENECK", "DEPTH", "STRIDE"] + (["DILATION"] if dilated else []) \
        + ["GROUP_W", "GROUPS", "SE_W"]
    out.append(_indent(_table([[str(c) for c in r] for r in rows], header)))
    out.append("")
    rows = [[str(f["index"]), f["name"], f["level"], str(f["channels"]), str(f["reduction"])]
            for f in rec["feature_info"]]
    out.append(_indent(_table(rows, ["INDEX", "MODULE", "LEVEL", "CHANNELS", "REDUCTION"])))
    cx = rec["complexity"]
    out += ["", f"  params       {cx['params']:,} (1000 classes); {cx['params_no_head']:,} without head",
            f"  flops        {cx['gflops']:.3f} GFLOPs ({cx['mflops']:,.1f} M multiply-adds) at "
            f"{cx['resolution']}x{cx['resolution']}" + (f", output stride {rec['output_stride']}" if dilated else ""),
            f"  activations  {cx['acts_m']:.2f} M at {cx['resolution']}x{cx['resolution']}",
            f"  frameworks   {', '.join(rec['frameworks']) or '-'}"]
    if rec["weights"]:
        rows = [[w["tag"] + (" *" if w["default"] else ""), w["hub"], w["keys"], str(w["num_classes"]),
                 str(w["input_size"]) + (f"/{w['test_input_size']}" if w["test_input_size"] else ""),
                 w["interpolation"], w["license"]] for w in rec["weights"]]
        out += ["", _indent(_table(rows, ["TAG (* default)", "HUB", "KEYS", "CLASSES", "SIZE", "INTERP",
                                          "LICENSE"]))]
    else:
        out += ["", "  weights      none published"]
    print("\n".join(out))


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def cmd_frameworks(args: argparse.Namespace) -> int:
    infos = api.list_frameworks()
    if args.json:
        print(json.dumps([{"name": f.name, "aliases": list(f.aliases), "plugin": f.plugin, "installed": f.installed,
                           "install_hint": f.install_hint, "description": f.description} for f in infos], indent=2))
        return 0
    rows = [[f.name, ",".join(f.aliases) or "-", f.plugin, "yes" if f.installed else "no",
             "" if f.installed else f.install_hint] for f in infos]
    print(_table(rows, ["FRAMEWORK", "ALIASES", "PLUGIN", "INSTALLED", "INSTALL"]))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    host = get_host()
    infos = host.plugins()
    if args.json:
        print(json.dumps({"plugins": [{"name": p.name, "distribution": p.distribution, "hooks": list(p.hooks),
                                       "builtin": p.builtin} for p in infos],
                          "failed": [{"name": f.name, "distribution": f.distribution, "error": f.error}
                                     for f in host.failures]}, indent=2))
        return 0
    rows = [[p.name, p.distribution, "built-in" if p.builtin else "third-party", ",".join(p.hooks)]
            for p in infos]
    print(_table(rows, ["PLUGIN", "DISTRIBUTION", "KIND", "HOOKS"]))
    for f in host.failures:
        print(f"failed to load: {f.name} ({f.distribution}): {f.error}", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate variant files on their own and against the installed registry (clashing names)."""
    from .registry import Registry

    problems: list[str] = []
    for path in args.files:
        try:
            variants = load_file(path)
        except RegistryError as e:
            problems += e.problems
            continue
        probe = Registry()
        try:
            probe.add([v for v in get_host().registry.variants()
                       if os.path.realpath(v.location.file) != os.path.realpath(path)])
            probe.add(variants)
        except RegistryError as e:
            problems += e.problems
            continue
        print(f"{path}: ok ({len(variants)} variant{'s' if len(variants) != 1 else ''})")
        for v in variants:  # what each would build: create / show accept the file (FILE::NAME for one of several)
            pl = api.plan(v)
            print(f"  {v.name}: {v.block.upper()}, {_fmt_params(pl.params())} params, "
                  f"{pl.flops(GFLOPS_RESOLUTION) / 1e9:.3f} GFLOPs@{GFLOPS_RESOLUTION}, widths "
                  f"{','.join(map(str, v.widths))}, depths {','.join(map(str, v.depths))}")
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


def _framework(name: str, args: argparse.Namespace):
    """The framework record."""
    return get_host().framework(name)


def _weights_hint(variant) -> str:
    tag = variant.default_tag
    return (f"--weights TAG (e.g. --weights {tag}) or --weights PATH (a checkpoint file or model directory)" if tag
            else "--weights PATH (a checkpoint file or model directory)")


def _in_layout(shape: tuple[int, ...], layout: str) -> list[int]:
    """An NCHW shape (the runner's) in ``layout``."""
    shape = list(shape)
    return [shape[0], *shape[2:], shape[1]] if layout == "NHWC" and len(shape) == 4 else shape


def cmd_features(args: argparse.Namespace) -> int:
    """Build a backbone and print its per-stage feature maps on an image (the bundled sample by default)."""
    import numpy as np

    from .preprocessing import SAMPLE_IMAGE, data_config, preprocess

    fw = _framework(args.framework, args)
    random = args.weights in (None, RANDOM)
    pretrained: Any = False if random else args.weights
    model = api.create(args.name, framework=fw.name, features_only=True, out_indices=(0, 1, 2, 3, 4),
                       pretrained=pretrained, output_stride=args.output_stride)
    cfg = data_config(args.name)
    if args.size:
        cfg["input_size"] = args.size
    image = args.image or SAMPLE_IMAGE
    x = preprocess(image, cfg)
    maps = fw.run(model, x)  # NCHW, whatever the framework's layout
    layout = fw.layout
    rows = []
    for info, fmap in zip(model.feature_info, maps):
        a = np.asarray(fmap, np.float64)
        rows.append({"index": info.index, "module": info.name, "level": info.level, "channels": info.channels,
                     "reduction": info.reduction, "shape": _in_layout(a.shape, layout), "mean": float(a.mean()),
                     "std": float(a.std()), "max": float(a.max())})
    variant = api.get_variant(args.name)
    if args.json:
        print(json.dumps({"variant": variant.name, "framework": fw.name, "weights": None if random else args.weights,
                          "image": str(image), "layout": layout, "input_shape": _in_layout(x.shape, layout),
                          "features": rows}, indent=2))
        return 0
    weights = "random weights" if random else f"weights {args.weights}"
    print(f"{variant.name} on {fw.name} ({weights}); input {os.path.basename(str(image))} "
          f"-> {tuple(_in_layout(x.shape, layout))} {layout}")
    print(_table([[str(r["index"]), r["module"], r["level"], str(r["channels"]), str(r["reduction"]),
                   "x".join(map(str, r["shape"])), f"{r['mean']:.4f}", f"{r['std']:.4f}", f"{r['max']:.4f}"]
                  for r in rows], ["INDEX", "MODULE", "LEVEL", "CHANNELS", "STRIDE", f"SHAPE ({layout})", "MEAN", "STD",
                                   "MAX"]))
    if random:
        print(f"note: random weights, so these statistics mean nothing; load weights with {_weights_hint(variant)}")
    return 0


def _default_target(dst: str) -> str:
    if dst.endswith(".safetensors"):
        return "timm"
    owner = [fw.name for fw in get_host().frameworks.values() if any(dst.endswith(s) for s in fw.native_suffixes)]
    return owner[0] if owner else "hf"


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert a checkpoint (file, model directory, name.tag or hub repo) to safetensors, atomically."""
    from .weights.convert import FORMATS, convert_checkpoint, open_source

    to = args.to or _default_target(args.dst)
    source = open_source(args.src, keys=args.keys, bgr=not args.keep_bgr)
    native = to not in FORMATS
    if native:  # the weights are loaded into that framework's model first
        to = _framework(to, args).name
    out = convert_checkpoint(source, args.dst, to=to, variant=args.variant)
    rec = {"source": source.origin, "key_space": source.key_space, "format": source.format,
           "variant": args.variant or source.variant, "num_classes": source.num_classes, "to": to,
           "destination": str(out), "notes": list(source.notes)}
    if args.json:
        print(json.dumps(rec, indent=2))
        return 0
    what = get_host().framework(to).native_names if native else {
        "timm": "canonical timm names", "hf": "transformers directory (config.json + model.safetensors)"}[to]
    print(f"{rec['destination']}: {what}, variant {rec['variant']}, "
          f"{rec['num_classes'] or 'no'} classes; from {rec['source']} ({rec['format']}, {rec['key_space']} keys)")
    for note in rec["notes"]:
        print(f"  note: {note}")
    return 0


def _labels(num_classes: int, weights: str | None) -> list[str]:
    from pathlib import Path

    from .weights.classes import imagenet_classes
    from .weights.readers import read_config

    if weights and Path(weights).is_dir():
        config = read_config(Path(weights)) or {}
        id2label = config.get("id2label") or {}
        if len(id2label) == num_classes:
            return [str(id2label.get(str(i), id2label.get(i, f"class {i}"))) for i in range(num_classes)]
    if num_classes == 1000:
        return imagenet_classes()
    return [f"class {i}" for i in range(num_classes)]


def cmd_predict(args: argparse.Namespace) -> int:
    """Classify an image and print the top classes."""
    import numpy as np

    from .preprocessing import data_config, preprocess

    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    res = api.resolve(args.model)
    tag = res.tag or res.variant.default_tag
    random = args.weights == RANDOM
    if random:  # a head like the tag's (ImageNet's 1000 classes for a trunk or a variant without weights)
        pretrained: Any = False
        classes = (res.variant.weights[tag].num_classes if tag else 0) or api.DEFAULT_NUM_CLASSES
    elif args.weights in res.variant.weights:  # a tag of the variant
        pretrained, tag = args.weights, args.weights
        classes = res.variant.weights[tag].num_classes
    elif args.weights:
        from .weights.checkpoint import read_checkpoint

        pretrained = args.weights
        classes = read_checkpoint(args.weights).num_classes
    else:
        pretrained = True
        classes = res.variant.weights[tag].num_classes if tag else 1
    if classes == 0:
        tagged = [f"{res.variant.name}.{t}" for t, w in res.variant.weights.items() if w.num_classes]
        raise ValueError(f"{args.weights or args.model} has no classifier (a feature trunk); predict needs one"
                         + (f", e.g. --model {tagged[0]}" if tagged else ""))
    fw = _framework(args.framework, args)
    model = api.create(args.model, framework=fw.name, pretrained=pretrained,
                       **({"num_classes": classes} if random else {}))
    cfg = data_config(f"{res.variant.name}.{tag}" if tag else res.variant.name)
    x = preprocess(args.image, cfg)
    logits = np.asarray(fw.run(model, x), np.float64)[0]
    if logits.ndim != 1 or logits.size < 2:
        raise ValueError(f"{args.model} has no classifier (output shape {logits.shape}); predict needs one")
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    labels = _labels(logits.size, None if random else args.weights)
    top = np.argsort(-probs, kind="stable")[: args.top]
    rows = [{"rank": r + 1, "index": int(i), "label": labels[i], "probability": float(probs[i]),
             "logit": float(logits[i])} for r, i in enumerate(top)]
    from_file = bool(args.weights) and not random and args.weights not in res.variant.weights
    weights = RANDOM if random else args.weights if from_file else f"{res.variant.name}.{tag}"
    if args.json:
        print(json.dumps({"image": args.image, "model": res.variant.name, "weights": weights, "framework": fw.name,
                          "input_shape": list(x.shape), "top": rows}, indent=2))
        return 0
    shown = "RANDOM weights: a pipeline check, not a prediction" if random else f"weights {weights}"
    print(f"{os.path.basename(args.image)}: {res.variant.name} on {fw.name} ({shown}), input "
          f"{cfg['input_size']}x{cfg['input_size']}")
    print(_table([[str(r["rank"]), f"{100 * r['probability']:.2f}%", r["label"], str(r["index"])] for r in rows],
                 ["RANK", "PROB", "CLASS", "INDEX"]))
    if random:
        print(f"note: random weights, so these classes mean nothing; for a real prediction leave out --weights (the "
              f"tag's hub weights) or pass {_weights_hint(res.variant)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a model for deployment, verify it in its runtime against the source model, print the numbers."""
    from .deploy import DEFAULT_TOLERANCE, Tolerance, export

    res = api.resolve(args.name)
    pretrained: Any = args.weights if args.weights else bool(res.tag)
    features = _out_indices(args.features) if args.features else None
    default = DEFAULT_TOLERANCE.get(args.precision, Tolerance())
    tolerance = Tolerance(
        max_rel=args.max_rel if args.max_rel is not None else default.max_rel,
        min_cosine=args.min_cosine if args.min_cosine is not None else default.min_cosine,
        min_top1=args.min_top1 if args.min_top1 is not None else default.min_top1)
    kwargs: dict[str, Any] = {}
    if features:
        kwargs.update(features_only=True, out_indices=features)
    if args.output_stride != 32:
        kwargs["output_stride"] = args.output_stride
    if args.opset is not None:
        kwargs["opset"] = args.opset
    report = export(args.name, args.out, args.format, pretrained=pretrained, num_classes=args.num_classes,
                    input_size=args.input_size, batch=None if args.dynamic_batch else args.batch,
                    precision=args.precision, representative_data=args.representative, tolerance=tolerance, **kwargs)
    if args.json:
        print(json.dumps({"path": str(report.path), "format": report.format, "framework": report.framework,
                          "precision": report.precision, "batch": report.batch, "bytes": report.bytes,
                          "files": [str(f) for f in report.files], "seconds": report.seconds,
                          "weights": str(args.weights) if args.weights else (args.name if res.tag else "random"),
                          "notes": {k: str(v) for k, v in report.notes.items()}, "passed": report.passed,
                          "outputs": [{"name": o.name, "shape": list(o.shape), "max_rel": o.max_rel,
                                       "cosine": o.cosine, "top1": o.top1} for o in report.outputs]}, indent=2))
        return 0
    print(report)
    if not pretrained:
        print(f"  weights: random (pass {res.variant.name}.TAG or --weights PATH for trained weights)")
    return 0


def _out_indices(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(i) for i in text.split(","))
    except ValueError:
        raise ValueError(f"--features takes comma-separated feature indices (0 = stem, 1..4 = s1..s4), e.g. "
                         f"'1,2,3,4'; got {text!r}") from None


def add_output_stride(parser) -> None:
    """``--output-stride`` (show, features, export): timm's ``output_stride``, dilating the later stages."""
    parser.add_argument("--output-stride", type=int, default=32, choices=(8, 16, 32),
                        help="8 or 16: dilate the later stages instead of striding them (default 32)")


def add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="export for deployment (onnx, tflite, stablehlo, saved_model, torch_export), "
                       "verified against the source model",
                       description="Build NAME (NAME.TAG loads that tag's weights), export it to OUT in --format, run "
                       "the artefact in its runtime on a fixed image set and compare it with the source model. "
                       "Nothing is written when the check fails.")
    p.add_argument("name", metavar="NAME[.TAG]")
    p.add_argument("out", metavar="OUT", help="output file (a directory for saved_model); its directory must exist")
    p.add_argument("--format", "-F", required=True, help="onnx, tflite, stablehlo, saved_model or torch_export")
    p.add_argument("--weights", "-w", help="checkpoint file or model directory (default: NAME.TAG's weights, else "
                   "random)")
    p.add_argument("--features", metavar="OUT_INDICES", help="export a features_only backbone, e.g. '1,2,3,4'")
    add_output_stride(p)
    p.add_argument("--num-classes", type=int, help="classifier size (0 = pooled features; default: the weights')")
    batch = p.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=int, help="fixed batch size")
    batch.add_argument("--dynamic-batch", action="store_true", help="symbolic batch dimension (the default)")
    p.add_argument("--input-size", type=int, help="input height and width (default: the weights', else 224)")
    p.add_argument("--precision", default="fp32", help="fp32 (default), fp16, int8_dynamic (int8 weights) or int8 "
                   "(full integer; needs --representative)")
    p.add_argument("--representative", metavar="DIR", help="folder of calibration images for --precision int8")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    p.add_argument("--max-rel", type=float, help="fail above this max relative error (default per precision)")
    p.add_argument("--min-cosine", type=float, help="fail below this cosine similarity (default per precision)")
    p.add_argument("--min-top1", type=float, help="fail below this top-1 agreement with fp32")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)


def build_parser() -> argparse.ArgumentParser:
    from .weights.convert import targets as convert_targets

    parser = argparse.ArgumentParser(prog="regnet-zoo", description="RegNet X/Y variants as data, built in "
                                     "PyTorch, TensorFlow or Flax.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the Python traceback of errors")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="let the frameworks log to stderr (TensorFlow's C++ start-up lines, JAX warnings)")
    # the same two flags after the command (regnet-zoo features NAME --verbose); SUPPRESS keeps the global value
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS,
                        help="let the frameworks log to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", parents=[common], help="list variants (or weight tags with --pretrained)")
    p.add_argument("pattern", nargs="?", default="*", metavar="PATTERN", help="fnmatch pattern, e.g. 'regnety_*'")
    p.add_argument("--pretrained", action="store_true", help="list name.tag for every weight tag")
    p.add_argument("--framework", help="only variants this framework can build")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", parents=[common], help="stage plan, feature_info, complexity and weights of a variant")
    p.add_argument("name", help="variant, alias, hub id or name.tag; or a YAML file of your own variants (FILE::NAME "
                                "for one of several)")
    p.add_argument("--resolution", type=int, default=GFLOPS_RESOLUTION, help="input size for FLOPs (default 224)")
    add_output_stride(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("frameworks", parents=[common], help="registered frameworks and whether they are installed")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_frameworks)

    p = sub.add_parser("plugins", parents=[common], help="loaded plugins and the ones that failed")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("check", parents=[common], help="validate variant YAML files, the registry's or your own (exit 1 with "
                       "file:line:col lines)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("features", parents=[common],
                       help="build a backbone and print its per-stage feature maps on an image")
    p.add_argument("name", help="variant, alias or name.tag")
    p.add_argument("--framework", "-f", default="torch", help="torch (default), tf or flax")
    p.add_argument("--image", help="image file (default: the bundled sample picture)")
    p.add_argument("--weights", "-w", metavar="TAG|PATH",
                   help=f"weight tag (e.g. ra3_in1k), checkpoint file or model directory; {RANDOM} (the default) for "
                        f"random weights")
    p.add_argument("--pretrained", dest="weights", help=argparse.SUPPRESS)  # the former name of --weights
    p.add_argument("--size", type=int, help="input size (default: the weights' input size, else 224)")
    add_output_stride(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_features, spellings=FEATURES_SPELLINGS)

    p = sub.add_parser("convert", parents=[common],
                       help="convert a checkpoint to safetensors (timm, transformers or framework-native)",
                       description="Read SRC (a checkpoint file, sharded index, model directory, name.tag or hub repo; "
                       "timm / transformers PT-TF-Flax / torchvision / pycls / VISSL, detected) and write DST "
                       "atomically. --to timm: one .safetensors in timm names; hf: a transformers directory; "
                       "torch|tf|flax: that framework's own variables (loaded and checked first).")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST")
    p.add_argument("--to", choices=convert_targets(),
                   help="target (default: timm for *.safetensors, a framework for its own files such as tf for "
                        "*.weights.h5, else hf)")
    p.add_argument("--keys", choices=("timm", "hf", "torchvision", "pycls", "vissl"),
                   help="force the source key space (default: detected)")
    p.add_argument("--variant", help="the architecture (default: from config.json or the weight shapes)")
    p.add_argument("--keep-bgr", action="store_true", help="do not flip a pycls (BGR) stem to RGB")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_convert, spellings=CONVERT_SPELLINGS)

    p = sub.add_parser("predict", parents=[common], help="classify an image and print the top-5 classes")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--model", "-m", required=True, help="variant or name.tag (weights and preprocessing)")
    p.add_argument("--weights", "-w", metavar="TAG|PATH",
                   help=f"weight tag, checkpoint file or model directory (default: the tag's hub weights); {RANDOM}: "
                        f"random weights, to check the pipeline offline (the classes then mean nothing)")
    p.add_argument("--framework", "-f", default="torch", help="torch (default), tf or flax")
    p.add_argument("--top", type=int, default=5, help="how many classes to print (default 5)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict, spellings=PREDICT_SPELLINGS)

    add_export_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    show_tb = args.traceback or os.environ.get("REGNET_ZOO_TRACEBACK") == "1"
    quiet: Any = contextlib.nullcontext
    if not args.verbose:
        from .framework_logs import quiet
    try:
        with spelled(getattr(args, "spellings", SPELLINGS)), quiet():
            return args.func(args)
    except (RegNetZooError, ValueError, TypeError, KeyError, ImportError, OSError) as e:
        if show_tb:
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"regnet-zoo: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
