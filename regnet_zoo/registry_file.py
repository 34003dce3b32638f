"""Reading and validating one variants YAML file, with ``file:line:col`` for every problem.

The file is composed into YAML nodes (not loaded), so duplicate keys, YAML types (a bool is not an int) and the
position of every value are visible. ``load_file`` returns the variants or raises ``RegistryError`` listing every
problem found in the file, not just the first.

Schema (``schema: 2``; a ``schema: 1`` file is read the same way but may not use the fields marked 2)::

    variants:
      <name>:
        block: x | y                      (required; y: squeeze-excitation)
        stem_width: int                   (required)
        widths: [int, int, int, int]      (required, one per stage)
        depths: [int, int, int, int]      (required)
        group_width: int | [int x 4]      (required; clipped to the bottleneck width; must divide it)
        se_ratio: float                   (y only, 0 < r < 1, default 0.25)
        act: <activation>                 (2; default relu; one of relu | silu | gelu | gelu_tanh | quick_gelu |
                                           mish | relu6 | leaky_relu | tanh | sigmoid | identity: timm's
                                           get_act_layer names, variant.ACTIVATIONS)
        se_act: <activation>              (2; y only: the activation inside squeeze-excitation, default act)
        norm: batchnorm | groupnorm       (2; default batchnorm)
        norm_group_size: int              (2; groupnorm: channels per group, must divide every norm width)
        norm_groups: int                  (2; groupnorm: a fixed number of groups instead (timm's GroupNorm
                                           default is 32); must divide every norm width; give one of the two)
        bottle_ratio: float               (2; bottleneck width / stage width, default 1)
        downsample: conv1x1 | avg | none  (2; shortcut of shape-changing blocks, default conv1x1)
        preact: bool                      (2; pre-activation blocks, RegNetV)
        linear_out: bool                  (2; no activation after the residual add, RegNetZ)
        num_features: int                 (2; width of a final 1x1 conv after the last stage, default none)
        strides: [int x 4]                (2; 1 or 2, stride of each stage, default [2, 2, 2, 2])
        generator: {w0, wa, wm, depth, rounding: pycls | torchvision}   (optional; must reproduce the lists)
        description: str
        aliases: [str, ...]
        weights: {<tag>: {hub, keys, num_classes, input_size, crop_pct, interpolation, mean, std, license,
                          test_input_size?, test_crop_pct?, filename?, revision?}}
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import RegistryError
from .generator import ROUNDINGS, generate
from .variant import ACTIVATIONS, NAMED_STATS, NORMS, SHORTCUTS, Generator, Location, Variant, WeightTag

SCHEMA_VERSION = 2
SCHEMAS = (1, 2)
NUM_STAGES = 4
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
KEY_SPACES = ("timm", "hf", "torchvision", "pycls", "vissl")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos")

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_STR = "tag:yaml.org,2002:str"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_TYPE_NAMES = {_INT: "an int", _FLOAT: "a float", _STR: "a string", _BOOL: "a bool", _NULL: "null"}


class _Problems:
    def __init__(self, file: str):
        self.file = file
        self.lines: list[str] = []

    def loc(self, node: yaml.Node) -> Location:
        return Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def add(self, node: yaml.Node | Location, message: str) -> None:
        loc = node if isinstance(node, Location) else self.loc(node)
        self.lines.append(f"{loc}: {message}")


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"{_TYPE_NAMES.get(node.tag, node.tag)} ({node.value!r})"


def _mapping(p: _Problems, node: yaml.Node, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
    """Keys -> (key node, value node); reports non-mappings, non-string and duplicate keys."""
    if not isinstance(node, yaml.MappingNode):
        p.add(node, f"{what} must be a mapping, got {_describe(node)}")
        return None
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode) or k.tag != _STR:
            p.add(k, f"{what}: keys must be strings, got {_describe(k)}")
            continue
        if k.value in out:
            first = p.loc(out[k.value][0])
            p.add(k, f"duplicate key {k.value!r} in {what} (first defined at line {first.line})")
            continue
        out[k.value] = (k, v)
    return out


def _check_fields(p: _Problems, fields: dict, allowed: tuple[str, ...], required: tuple[str, ...], what: str,
                  at: yaml.Node) -> None:
    for key, (knode, _) in fields.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of: {', '.join(allowed)}"
            p.add(knode, f"unknown field {key!r} in {what}{hint}")
    for key in required:
        if key not in fields:
            p.add(at, f"{what} is missing required field {key!r}")


def _scalar(p: _Problems, node: yaml.Node, tags: tuple[str, ...], what: str, expected: str) -> Any:
    if not isinstance(node, yaml.ScalarNode) or node.tag not in tags:
        p.add(node, f"{what} must be {expected}, got {_describe(node)}")
        return None
    if node.tag == _INT:
        return int(node.value.replace("_", ""), 0)
    if node.tag == _FLOAT:
        return float(node.value.replace("_", ""))
    return node.value


def _int(p, node, what, minimum=None):
    v = _scalar(p, node, (_INT,), what, "an int")
    if v is not None and minimum is not None and v < minimum:
        p.add(node, f"{what} must be >= {minimum}, got {v}")
        return None
    return v


def _number(p, node, what):
    v = _scalar(p, node, (_INT, _FLOAT), what, "a number")
    return None if v is None else float(v)


def _str(p, node, what, choices=None, pattern=None):
    v = _scalar(p, node, (_STR,), what, "a string")
    if v is not None and choices and v not in choices:
        p.add(node, f"{what} must be one of {', '.join(choices)}, got {v!r}")
        return None
    if v is not None and pattern and not pattern.match(v):
        p.add(node, f"{what} {v!r} must match {pattern.pattern}")
        return None
    return v


def _list(p, node, what, item: Callable, length=None):
    if not isinstance(node, yaml.SequenceNode):
        p.add(node, f"{what} must be a list, got {_describe(node)}")
        return None
    items = [item(p, n, f"{what}[{i}]") for i, n in enumerate(node.value)]
    if length is not None and len(items) != length:
        p.add(node, f"{what} must have {length} entries, got {len(items)}")
        return None
    return None if any(i is None for i in items) else tuple(items)


_TAG_FIELDS = ("hub", "keys", "num_classes", "input_size", "crop_pct", "interpolation", "mean", "std", "license",
               "test_input_size", "test_crop_pct", "filename", "revision")
_TAG_REQUIRED = ("hub", "keys", "num_classes", "input_size", "crop_pct", "interpolation", "mean", "std", "license")


def _stats(p, node, what):
    if isinstance(node, yaml.ScalarNode) and node.tag == _STR:
        if node.value in NAMED_STATS:
            return node.value
        p.add(node, f"{what} must be one of {', '.join(NAMED_STATS)} or a list of 3 numbers, got {node.value!r}")
        return None
    return _list(p, node, what, _number, length=3)


def _weight_tag(p: _Problems, tag: str, knode, vnode, variant: str) -> WeightTag | None:
    what = f"weight tag {variant}.{tag}"
    if not TAG_RE.match(tag):
        p.add(knode, f"{what}: tag names may use letters, digits, '_' and '-' only")
    f = _mapping(p, vnode, what)
    if f is None:
        return None
    _check_fields(p, f, _TAG_FIELDS, _TAG_REQUIRED, what, knode)
    v = {}
    for key, (_, n) in f.items():
        w = f"{what}.{key}"
        if key in ("hub", "license", "filename", "revision"):
            v[key] = _str(p, n, w)
        elif key == "keys":
            v[key] = _str(p, n, w, KEY_SPACES)
        elif key == "interpolation":
            v[key] = _str(p, n, w, INTERPOLATIONS)
        elif key == "num_classes":
            v[key] = _int(p, n, w, 0)
        elif key in ("input_size", "test_input_size"):
            v[key] = _int(p, n, w, 32)
        elif key in ("crop_pct", "test_crop_pct"):
            v[key] = _number(p, n, w)
            if v[key] is not None and not 0 < v[key] <= 1:
                p.add(n, f"{w} must be in (0, 1], got {v[key]}")
                v[key] = None
        elif key in ("mean", "std"):
            v[key] = _stats(p, n, w)
    if any(v.get(k) is None for k in _TAG_REQUIRED if k in f) or any(k not in f for k in _TAG_REQUIRED):
        return None
    mean, std = v["mean"], v["std"]
    if isinstance(mean, str):
        mean = NAMED_STATS[mean][0]
    if isinstance(std, str):
        std = NAMED_STATS[std][1]
    v.update(mean=tuple(mean), std=tuple(std))
    return WeightTag(tag=tag, location=p.loc(knode), **{k: x for k, x in v.items() if x is not None})


_SCHEMA2_FIELDS = ("act", "se_act", "norm", "norm_group_size", "norm_groups", "bottle_ratio", "downsample", "preact",
                   "linear_out", "num_features", "strides")
_VARIANT_FIELDS = ("description", "block", "stem_width", "widths", "depths", "group_width", "se_ratio", "generator",
                   "aliases", "weights") + _SCHEMA2_FIELDS
_VARIANT_REQUIRED = ("block", "stem_width", "widths", "depths", "group_width")
_GENERATOR_FIELDS = ("w0", "wa", "wm", "depth", "rounding")


def _generator(p: _Problems, node, what) -> Generator | None:
    f = _mapping(p, node, what)
    if f is None:
        return None
    _check_fields(p, f, _GENERATOR_FIELDS, ("w0", "wa", "wm", "depth"), what, node)
    v = {}
    for key, (_, n) in f.items():
        if key in ("w0", "wa", "wm"):
            v[key] = _number(p, n, f"{what}.{key}")
        elif key == "depth":
            v[key] = _int(p, n, f"{what}.depth", 1)
        elif key == "rounding":
            v[key] = _str(p, n, f"{what}.rounding", ROUNDINGS)
    if any(x is None for x in v.values()) or not all(k in v for k in ("w0", "wa", "wm", "depth")):
        return None
    if v["w0"] <= 0 or v["wa"] < 0 or v["wm"] <= 1:
        p.add(node, f"{what} needs w0 > 0, wa >= 0 and wm > 1, got w0={v['w0']}, wa={v['wa']}, wm={v['wm']}")
        return None
    return Generator(**v)


def _bool(p, node, what):
    v = _scalar(p, node, (_BOOL,), what, "true or false")
    return None if v is None else v.lower() in ("true", "yes", "on", "y")


def _design_fields(p: _Problems, name: str, f: dict, schema: int, block: str | None) -> dict[str, Any]:
    """The schema-2 fields of variant ``name`` (timm's ``RegNetCfg`` design space), validated one by one."""
    v: dict[str, Any] = {}
    for key in _SCHEMA2_FIELDS:
        if key not in f:
            continue
        knode, n = f[key]
        what = f"{name}.{key}"
        if schema < 2:
            p.add(knode, f"{what} needs 'schema: 2' at the top of the file (this file says schema {schema})")
            continue
        if key in ("act", "se_act"):
            v[key] = _str(p, n, what, ACTIVATIONS)
        elif key == "norm":
            v[key] = _str(p, n, what, NORMS)
        elif key in ("norm_group_size", "norm_groups", "num_features"):
            v[key] = _int(p, n, what, 1)
        elif key == "bottle_ratio":
            v[key] = _number(p, n, what)
            if v[key] is not None and not v[key] > 0:
                p.add(n, f"{what} must be > 0, got {v[key]}")
                v[key] = None
        elif key == "downsample":
            v[key] = _str(p, n, what, SHORTCUTS)
        elif key in ("preact", "linear_out"):
            v[key] = _bool(p, n, what)
        elif key == "strides":
            v[key] = _list(p, n, what, lambda pp, nn, w: _str_int_choice(pp, nn, w, (1, 2)), NUM_STAGES)
    if "se_act" in f and block == "x":
        p.add(f["se_act"][0], f"{name}.se_act: X blocks have no squeeze-excitation; remove se_act or use block: y")
    if v.get("preact") and v.get("linear_out"):
        p.add(f["linear_out"][0], f"{name}.linear_out: pre-activation blocks (preact: true) have no activation after "
                                  f"the residual add to drop; remove one of the two")
    sizing = [k for k in ("norm_group_size", "norm_groups") if k in f]
    if v.get("norm") == "groupnorm" and not sizing:
        p.add(f["norm"][1], f"{name}.norm: groupnorm needs norm_group_size (channels per group, e.g. 16) or "
                            f"norm_groups (number of groups, e.g. 32)")
    elif sizing and v.get("norm") != "groupnorm":
        p.add(f[sizing[0]][0], f"{name}.{sizing[0]} is for norm: groupnorm only")
    elif len(sizing) == 2:
        p.add(f["norm_groups"][0], f"{name}: give norm_group_size (channels per group) or norm_groups (number of "
                                   f"groups), not both")
    return {k: x for k, x in v.items() if x is not None}


def _str_int_choice(p, node, what, choices):
    v = _int(p, node, what)
    if v is not None and v not in choices:
        p.add(node, f"{what} must be one of {', '.join(map(str, choices))}, got {v}")
        return None
    return v


def _variant(p: _Problems, name: str, knode, vnode, schema: int = SCHEMA_VERSION) -> Variant | None:
    what = f"variant {name!r}"
    if not NAME_RE.match(name):
        p.add(knode, f"{what}: names are lower-case letters, digits and '_', starting with a letter")
    f = _mapping(p, vnode, what)
    if f is None:
        return None
    n_before = len(p.lines)
    _check_fields(p, f, _VARIANT_FIELDS, _VARIANT_REQUIRED, what, knode)
    v: dict[str, Any] = {}
    get = lambda key: f[key][1] if key in f else None  # noqa: E731
    if "block" in f:
        v["block"] = _str(p, get("block"), f"{name}.block", ("x", "y"))
    if "stem_width" in f:
        v["stem_width"] = _int(p, get("stem_width"), f"{name}.stem_width", 1)
    pos_int = lambda pp, n, w: _int(pp, n, w, 1)  # noqa: E731
    for key in ("widths", "depths"):
        if key in f:
            v[key] = _list(p, get(key), f"{name}.{key}", pos_int, NUM_STAGES)
    if "group_width" in f:
        n = get("group_width")
        v["group_width"] = (_list(p, n, f"{name}.group_width", pos_int, NUM_STAGES)
                            if isinstance(n, yaml.SequenceNode) else _int(p, n, f"{name}.group_width", 1))
    if "se_ratio" in f:
        v["se_ratio"] = _number(p, get("se_ratio"), f"{name}.se_ratio")
        if v["se_ratio"] is not None and v.get("block") == "x" and v["se_ratio"] != 0:
            p.add(get("se_ratio"), f"{name}.se_ratio: X blocks have no squeeze-excitation; remove se_ratio or "
                                   f"use block: y")
        elif v["se_ratio"] is not None and v.get("block") == "y" and not 0 < v["se_ratio"] < 1:
            p.add(get("se_ratio"), f"{name}.se_ratio must be in (0, 1), got {v['se_ratio']}")
    if "description" in f:
        v["description"] = _str(p, get("description"), f"{name}.description")
    if "aliases" in f:
        v["aliases"] = _list(p, get("aliases"), f"{name}.aliases", _str)
    if "generator" in f:
        v["generator"] = _generator(p, get("generator"), f"{name}.generator")
    design = _design_fields(p, name, f, schema, v.get("block"))
    weights: dict[str, WeightTag] = {}
    if "weights" in f:
        wf = _mapping(p, get("weights"), f"{name}.weights")
        for tag, (tk, tv) in (wf or {}).items():
            wt = _weight_tag(p, tag, tk, tv, name)
            if wt is not None:
                weights[tag] = wt
    if len(p.lines) > n_before:
        return None

    gw = v["group_width"]
    group_widths = tuple(gw) if isinstance(gw, tuple) else (gw,) * NUM_STAGES
    ratio = design.get("bottle_ratio", 1.0)
    bad = False
    for i, (w, g) in enumerate(zip(v["widths"], group_widths), start=1):
        wb = bottleneck_width(w, ratio)
        g_eff = min(g, wb)
        if wb % g_eff:
            what_w = "stage" if ratio == 1 else "bottleneck"
            size = f"width {w}" if ratio == 1 else f"bottleneck width {wb} ({w} x {ratio:g})"
            p.add(get("group_width"), f"{name}: group width {g} does not divide stage s{i} {size} "
                                      f"({wb} / {g_eff} = {wb / g_eff:.3g} groups); every {what_w} width must be a "
                                      f"multiple of its group width")
            bad = True
    for key in ("norm_group_size", "norm_groups"):
        gs = design.get(key)
        if gs:
            norm_widths = {v["stem_width"], design.get("num_features") or v["stem_width"], *v["widths"],
                           *(bottleneck_width(w, ratio) for w in v["widths"])}
            odd = sorted(w for w in norm_widths if w % gs)
            if odd:
                p.add(f[key][1], f"{name}.{key} {gs} does not divide the normalised widths {odd}; choose a divisor "
                                 f"of every width")
                bad = True
    gen = v.get("generator")
    if gen is not None and len(set(group_widths)) == 1:
        want = generate(gen.w0, gen.wa, gen.wm, gen.depth, group_widths[0], gen.rounding)
        have = (list(v["widths"]), list(v["depths"]))
        if (want[0], want[1]) != have:
            p.add(get("generator"), f"{name}.generator ({gen.rounding} rounding) gives widths {want[0]}, depths "
                                    f"{want[1]}, but the variant lists widths {list(v['widths'])}, depths "
                                    f"{list(v['depths'])}")
            bad = True
    elif gen is not None:
        p.add(get("generator"), f"{name}.generator needs a single group_width, got {list(group_widths)}")
        bad = True
    if bad:
        return None
    block = v["block"]
    return Variant(
        name=name, block=block, stem_width=v["stem_width"], widths=v["widths"], depths=v["depths"],
        group_widths=group_widths, se_ratio=v.get("se_ratio", 0.25) if block == "y" else 0.0,
        description=v.get("description", ""), generator=gen, aliases=v.get("aliases", ()), weights=weights,
        location=p.loc(knode), **design,
    )


def bottleneck_width(width: int, bottle_ratio: float) -> int:
    """Bottleneck width of a stage (timm's ``Bottleneck``: ``int(round(out_chs * bottle_ratio))``)."""
    return int(round(width * bottle_ratio))


def load_text(text: str, file: str = "<string>", plugin: str = "") -> list[Variant]:
    """Validate variants YAML ``text``; raise ``RegistryError`` with every problem found."""
    p = _Problems(file)
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        raise RegistryError([f"{where}: invalid YAML: {e.problem or e}"]) from None
    if root is None:
        raise RegistryError([f"{file}:1:1: empty file; expected 'schema: {SCHEMA_VERSION}' and 'variants:'"])
    top = _mapping(p, root, "the file")
    variants: list[Variant] = []
    if top is not None:
        _check_fields(p, top, ("schema", "variants"), ("schema", "variants"), "the file", root)
        schema = SCHEMA_VERSION
        if "schema" in top:
            s = _int(p, top["schema"][1], "schema")
            if s is not None and s not in SCHEMAS:
                p.add(top["schema"][1], f"unsupported schema {s}; this regnet-zoo reads schemas "
                                        f"{', '.join(map(str, SCHEMAS))}")
            schema = s if s in SCHEMAS else SCHEMA_VERSION
        if "variants" in top:
            vs = _mapping(p, top["variants"][1], "variants")
            for name, (kn, vn) in (vs or {}).items():
                var = _variant(p, name, kn, vn, schema)
                if var is not None:
                    variants.append(var if not plugin else _with_plugin(var, plugin))
    if p.lines:
        raise RegistryError(p.lines)
    return variants


def _with_plugin(v: Variant, plugin: str) -> Variant:
    from dataclasses import replace

    return replace(v, plugin=plugin)


def load_file(path: str | Path, plugin: str = "") -> list[Variant]:
    """Validate one variants file (see module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RegistryError([f"{path}: cannot read variants file: {e.strerror or e}"]) from None
    return load_text(text, str(path), plugin)
