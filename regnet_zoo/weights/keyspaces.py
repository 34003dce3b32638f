"""Weight key spaces: the names each public RegNet source gives its tensors, and converters to and from the
canonical (timm) names.

Every converter is a pure rename (no tensor is copied), except pycls's BGR stem, which is flipped to RGB. Each
key of a checkpoint either maps to exactly one canonical key or is reported; nothing is dropped silently except
BN ``num_batches_tracked`` counters and, for VISSL, self-supervised pre-training heads (named in the notes).

Where the names come from (checked against the real libraries; see tests/weights):

* ``timm``: ``timm.models.regnet.RegNet.state_dict()`` (the canonical space itself).
* ``hf``: transformers ``RegNetModel`` / ``RegNetForImageClassification`` (PyTorch names; TF and Flax files are
  read into these names by ``hf_formats``). Stage ``i`` (0-based) -> ``s{i+1}``, layer ``j`` -> ``b{j+1}``;
  ``layer.0/1`` = conv1/conv2; X: ``layer.2`` = conv3; Y: ``layer.2.attention.0/2`` = SE fc1/fc2, ``layer.3`` = conv3.
* ``torchvision``: ``torchvision.models.regnet_*``: ``stem.0/1``, ``trunk_output.block{i}.block{i}-{j}`` (j 0-based)
  with ``proj.0/1``, ``f.a.0/1``, ``f.b.0/1``, ``f.se.fc1/fc2``, ``f.c.0/1``; head ``fc``.
* ``pycls``: ``pycls.models.anynet`` (``stem.conv/bn``, ``s{i}.b{j}.proj`` + ``.bn``, ``f.a``, ``f.a_bn``, ``f.b``,
  ``f.b_bn``, ``f.se.f_ex.0/2``, ``f.c``, ``f.c_bn``, ``head.fc``). pycls feeds BGR images, so its stem conv is
  flipped along the input-channel axis to take RGB like every other source.
* ``vissl``: VISSL ``RegNet`` trunks wrapping a ClassyVision ``AnyNet`` (``_feature_blocks.conv1.stem.0/1``,
  ``_feature_blocks.res{k}.block{i}-{j}`` with ``proj``, ``bn``, ``f.a.0/1``, ``f.b.0/1``,
  ``f.se.excitation.0/2``, ``f.c``, ``f.final_bn``), the FSDP form (``block{i}-part{p}`` groups,
  ``_checkpoint_wrapped_module``), plain ClassyVision models (``stem.stem.0/1``, ``trunk_output.block{i}...``) and
  linear-evaluation / fine-tuning heads ``heads.0.clf.0`` (timm's mapping).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from ..errors import WeightsError, spell

CANONICAL = "timm"
BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var")
_BN = r"(weight|bias|running_mean|running_var)"


class UnknownKeySpaceError(WeightsError):
    """A checkpoint whose tensor names match no known RegNet key space."""


@dataclass(frozen=True)
class Converted:
    """Canonical weights plus what the conversion did."""

    state: dict[str, Any]
    key_space: str
    notes: tuple[str, ...] = ()


def _ignored(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def _rename(state: Mapping[str, Any], rules: list[tuple[re.Pattern, Callable[[re.Match], str]]], space: str,
            origin: str, skip: Callable[[str], bool] = _ignored) -> dict[str, Any]:
    """Apply the first matching rule to every key; report every key no rule matches and every collision."""
    out: dict[str, Any] = {}
    unmatched, collisions = [], []
    for key, value in state.items():
        if skip(key):
            continue
        for pattern, target in rules:
            m = pattern.fullmatch(key)
            if m:
                new = target(m)
                if new in out:
                    collisions.append(f"{key} -> {new}")
                out[new] = value
                break
        else:
            unmatched.append(key)
    if unmatched or collisions:
        lines = [f"{origin}: {len(unmatched) + len(collisions)} key(s) do not fit the {space} RegNet key space:"]
        if unmatched:
            lines.append(f"  unknown keys ({len(unmatched)}): " + ", ".join(unmatched[:20]) +
                         (f", ... and {len(unmatched) - 20} more" if len(unmatched) > 20 else ""))
        if collisions:
            lines.append(f"  keys mapping to the same canonical name: {', '.join(collisions[:10])}")
        lines.append("  (pass keys=<space> to force another key space; known: " + ", ".join(KEY_SPACES) + ")")
        raise WeightsError("\n".join(lines))
    return out


def _block(stage: str, block: str, zero_based: bool = False) -> str:
    return f"s{int(stage) + (1 if zero_based else 0)}.b{int(block) + (1 if zero_based else 0)}"


# -- timm (canonical) ------------------------------------------------------------------------------------------
# timm's names over its whole RegNet design space: a conv is ConvNormAct (``x.conv.weight`` + ``x.bn.*``) or, in
# pre-activation networks, bare (``x.weight``, norms ``normK`` before it); an avg-pool shortcut is ``downsample.1``
_TIMM_CONV = rf"(?:weight|conv\.weight|bn\.{_BN})"
_TIMM_RULES = [
    (re.compile(rf"stem\.{_TIMM_CONV}"), lambda m: m.group(0)),
    (re.compile(rf"s[1-4]\.b\d+\.(?:conv[123]|downsample(?:\.1)?)\.{_TIMM_CONV}"), lambda m: m.group(0)),
    (re.compile(rf"s[1-4]\.b\d+\.norm[123]\.{_BN}"), lambda m: m.group(0)),
    (re.compile(r"s[1-4]\.b\d+\.se\.fc[12]\.(weight|bias)"), lambda m: m.group(0)),
    (re.compile(rf"final_conv\.(?:conv\.weight|bn\.{_BN})"), lambda m: m.group(0)),
    (re.compile(r"head\.fc\.(weight|bias)"), lambda m: m.group(0)),
]


def timm_to_canonical(state: Mapping[str, Any], origin: str = "checkpoint") -> Converted:
    return Converted(_rename(state, _TIMM_RULES, "timm", origin), "timm")


def canonical_to_timm(state: Mapping[str, Any]) -> dict[str, Any]:
    return dict(state)


# -- Hugging Face transformers (PyTorch names) -------------------------------------------------------------------
_HF_PREFIX = r"(?:regnet\.)?"
_HF_LAYER = {"0": "conv1", "1": "conv2"}


def _hf_conv(m: re.Match) -> str:
    stage, layer, index, kind, leaf = m.groups()
    name = _HF_LAYER.get(index, "conv3")
    return f"{_block(stage, layer, True)}.{name}.{'conv' if kind == 'convolution' else 'bn'}.{leaf}"


_HF_RULES = [
    (re.compile(_HF_PREFIX + r"embedder\.embedder\.convolution\.weight"), lambda m: "stem.conv.weight"),
    (re.compile(_HF_PREFIX + rf"embedder\.embedder\.normalization\.{_BN}"), lambda m: f"stem.bn.{m.group(1)}"),
    (re.compile(_HF_PREFIX + r"encoder\.stages\.(\d)\.layers\.(\d+)\.shortcut\.convolution\.weight"),
     lambda m: f"{_block(m.group(1), m.group(2), True)}.downsample.conv.weight"),
    (re.compile(_HF_PREFIX + rf"encoder\.stages\.(\d)\.layers\.(\d+)\.shortcut\.normalization\.{_BN}"),
     lambda m: f"{_block(m.group(1), m.group(2), True)}.downsample.bn.{m.group(3)}"),
    (re.compile(_HF_PREFIX + r"encoder\.stages\.(\d)\.layers\.(\d+)\.layer\.2\.attention\.([02])\.(weight|bias)"),
     lambda m: f"{_block(m.group(1), m.group(2), True)}.se.fc{1 if m.group(3) == '0' else 2}.{m.group(4)}"),
    # layer.2 is conv3 in X blocks (no SE) and layer.3 is conv3 in Y blocks
    (re.compile(_HF_PREFIX + r"encoder\.stages\.(\d)\.layers\.(\d+)\.layer\.([0-3])\.(convolution)\.(weight)"),
     _hf_conv),
    (re.compile(_HF_PREFIX + rf"encoder\.stages\.(\d)\.layers\.(\d+)\.layer\.([0-3])\.(normalization)\.{_BN}"),
     _hf_conv),
    (re.compile(r"classifier\.1\.(weight|bias)"), lambda m: f"head.fc.{m.group(1)}"),
]


def hf_to_canonical(state: Mapping[str, Any], origin: str = "checkpoint") -> Converted:
    return Converted(_rename(state, _HF_RULES, "hf", origin), "hf")


_CANON_BLOCK = re.compile(r"s([1-4])\.b(\d+)\.(.+)")


def canonical_to_hf(state: Mapping[str, Any], prefix: str = "regnet.") -> dict[str, Any]:
    """Canonical -> transformers ``RegNetForImageClassification`` names (``prefix=""`` for ``RegNetModel``)."""
    se_blocks = {k.rsplit(".se.", 1)[0] for k in state if ".se." in k}
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith("stem."):
            kind, leaf = key[len("stem."):].split(".", 1)
            out[f"{prefix}embedder.embedder.{'convolution' if kind == 'conv' else 'normalization'}.{leaf}"] = value
        elif key.startswith("head.fc."):
            out[f"classifier.1.{key[len('head.fc.'):]}"] = value
        else:
            m = _CANON_BLOCK.fullmatch(key)
            if not m:
                raise WeightsError(f"{key!r} is not a canonical RegNet key")
            s, b, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            base = f"{prefix}encoder.stages.{s - 1}.layers.{b - 1}"
            layer, _, tail = rest.partition(".")
            if layer == "se":
                fc, leaf = tail.split(".")
                out[f"{base}.layer.2.attention.{0 if fc == 'fc1' else 2}.{leaf}"] = value
                continue
            kind, leaf = tail.split(".", 1)
            module = "convolution" if kind == "conv" else "normalization"
            if layer == "downsample":
                out[f"{base}.shortcut.{module}.{leaf}"] = value
            else:
                index = {"conv1": 0, "conv2": 1}.get(layer)
                if index is None:
                    index = 3 if f"s{s}.b{b}" in se_blocks else 2
                out[f"{base}.layer.{index}.{module}.{leaf}"] = value
    return out


# -- torchvision ---------------------------------------------------------------------------------------------------
_TV_BLOCK = r"trunk_output\.block([1-4])\.block\1-(\d+)\."
_TV_LAYER = {"a": "conv1", "b": "conv2", "c": "conv3"}
_TV_RULES = [
    (re.compile(r"stem\.0\.weight"), lambda m: "stem.conv.weight"),
    (re.compile(rf"stem\.1\.{_BN}"), lambda m: f"stem.bn.{m.group(1)}"),
    (re.compile(_TV_BLOCK + r"proj\.0\.weight"),
     lambda m: f"{_block(m.group(1), int(m.group(2)) + 1)}.downsample.conv.weight"),
    (re.compile(_TV_BLOCK + rf"proj\.1\.{_BN}"),
     lambda m: f"{_block(m.group(1), int(m.group(2)) + 1)}.downsample.bn.{m.group(3)}"),
    (re.compile(_TV_BLOCK + r"f\.([abc])\.0\.weight"),
     lambda m: f"{_block(m.group(1), int(m.group(2)) + 1)}.{_TV_LAYER[m.group(3)]}.conv.weight"),
    (re.compile(_TV_BLOCK + rf"f\.([abc])\.1\.{_BN}"),
     lambda m: f"{_block(m.group(1), int(m.group(2)) + 1)}.{_TV_LAYER[m.group(3)]}.bn.{m.group(4)}"),
    (re.compile(_TV_BLOCK + r"f\.se\.(fc[12])\.(weight|bias)"),
     lambda m: f"{_block(m.group(1), int(m.group(2)) + 1)}.se.{m.group(3)}.{m.group(4)}"),
    (re.compile(r"fc\.(weight|bias)"), lambda m: f"head.fc.{m.group(1)}"),
]


def torchvision_to_canonical(state: Mapping[str, Any], origin: str = "checkpoint") -> Converted:
    return Converted(_rename(state, _TV_RULES, "torchvision", origin), "torchvision")


def canonical_to_torchvision(state: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical -> ``torchvision.models.regnet_*`` names (for torchvision-rounded variants, e.g. ``*_tv``)."""
    inverse = {v: k for k, v in _TV_LAYER.items()}
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith("stem."):
            kind, leaf = key[len("stem."):].split(".", 1)
            out[f"stem.{0 if kind == 'conv' else 1}.{leaf}"] = value
        elif key.startswith("head.fc."):
            out[f"fc.{key[len('head.fc.'):]}"] = value
        else:
            m = _CANON_BLOCK.fullmatch(key)
            s, b, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            base = f"trunk_output.block{s}.block{s}-{b - 1}"
            layer, _, tail = rest.partition(".")
            if layer == "se":
                out[f"{base}.f.se.{tail}"] = value
                continue
            kind, leaf = tail.split(".", 1)
            index = 0 if kind == "conv" else 1
            out[f"{base}.proj.{index}.{leaf}" if layer == "downsample" else
                f"{base}.f.{inverse[layer]}.{index}.{leaf}"] = value
    return out


# -- pycls ---------------------------------------------------------------------------------------------------------
_PYCLS_BLOCK = r"s([1-4])\.b(\d+)\."
_PYCLS_RULES = [
    (re.compile(r"stem\.conv\.weight"), lambda m: "stem.conv.weight"),
    (re.compile(rf"stem\.bn\.{_BN}"), lambda m: f"stem.bn.{m.group(1)}"),
    (re.compile(_PYCLS_BLOCK + r"proj\.weight"), lambda m: f"{_block(m.group(1), m.group(2))}.downsample.conv.weight"),
    (re.compile(_PYCLS_BLOCK + rf"bn\.{_BN}"),
     lambda m: f"{_block(m.group(1), m.group(2))}.downsample.bn.{m.group(3)}"),
    (re.compile(_PYCLS_BLOCK + r"f\.([abc])\.weight"),
     lambda m: f"{_block(m.group(1), m.group(2))}.{_TV_LAYER[m.group(3)]}.conv.weight"),
    (re.compile(_PYCLS_BLOCK + rf"f\.([abc])_bn\.{_BN}"),
     lambda m: f"{_block(m.group(1), m.group(2))}.{_TV_LAYER[m.group(3)]}.bn.{m.group(4)}"),
    (re.compile(_PYCLS_BLOCK + r"f\.se\.f_ex\.([02])\.(weight|bias)"),
     lambda m: f"{_block(m.group(1), m.group(2))}.se.fc{1 if m.group(3) == '0' else 2}.{m.group(4)}"),
    (re.compile(r"head\.fc\.(weight|bias)"), lambda m: f"head.fc.{m.group(1)}"),
]


def flip_stem_channels(state: dict[str, Any]) -> None:
    """Reverse the input-channel axis of the stem conv in place (BGR <-> RGB weights)."""
    import numpy as np

    w = state["stem.conv.weight"]
    state["stem.conv.weight"] = np.ascontiguousarray(np.asarray(w)[:, ::-1])


def pycls_to_canonical(state: Mapping[str, Any], origin: str = "checkpoint", bgr: bool = True) -> Converted:
    out = _rename(state, _PYCLS_RULES, "pycls", origin)
    notes = []
    if bgr and "stem.conv.weight" in out:
        if out["stem.conv.weight"].shape[1] != 3:
            raise WeightsError(f"{origin}: pycls stem has {out['stem.conv.weight'].shape[1]} input channels; the BGR "
                               f"-> RGB flip needs 3 (pass {spell('bgr=False')} to keep the weights as they are)")
        flip_stem_channels(out)
        notes.append("pycls weights expect BGR input: the stem conv was flipped to take RGB")
    return Converted(out, "pycls", tuple(notes))


# -- VISSL / ClassyVision ----------------------------------------------------------------------------------------
_VISSL_NOISE = re.compile(r"(?:_checkpoint_wrapped_module|_fsdp_wrapped_module|_fpw_module|base_model)\.")
_VISSL_PART = re.compile(r"\.block([1-4])-part\d+\.")
_VISSL_STEM = r"(?:trunk\.)?(?:_feature_blocks\.conv1|stem)\.stem\."
_VISSL_BLOCK = r"(?:trunk\.)?(?:_feature_blocks\.res\d|trunk_output\.block[1-4])\.block([1-4])-(\d+)\."
_VISSL_RULES = [
    (re.compile(_VISSL_STEM + r"0\.weight"), lambda m: "stem.conv.weight"),
    (re.compile(_VISSL_STEM + rf"1\.{_BN}"), lambda m: f"stem.bn.{m.group(1)}"),
    (re.compile(_VISSL_BLOCK + r"proj\.weight"),
     lambda m: f"{_block(m.group(1), int(m.group(2)) + 1)}.downsample.conv.weight"),
    (re.compile(_VISSL_BLOCK + rf"bn\.{_BN}"),
     lambda m: f"{_block(m.group(1), int(m.group(2)) + 1)}.downsample.bn.{m.group(3)}"),
    (re.compile(_VISSL_BLOCK + r"f\.([ab])\.0\.weight"),
     lambda m: f"{_block(m.group(1), int(m.group(2)) + 1)}.{_TV_LAYER[m.group(3)]}.conv.weight"),
    (re.compile(_VISSL_BLOCK + rf"f\.([ab])\.1\.{_BN}"),
     lambda m: f"{_block(m.group(1), int(m.group(2)) + 1)}.{_TV_LAYER[m.group(3)]}.bn.{m.group(4)}"),
    (re.compile(_VISSL_BLOCK + r"f\.se\.excitation\.([02])\.(weight|bias)"),
     lambda m: f"{_block(m.group(1), int(m.group(2)) + 1)}.se.fc{1 if m.group(3) == '0' else 2}.{m.group(4)}"),
    (re.compile(_VISSL_BLOCK + r"f\.c\.weight"),
     lambda m: f"{_block(m.group(1), int(m.group(2)) + 1)}.conv3.conv.weight"),
    (re.compile(_VISSL_BLOCK + rf"f\.final_bn\.{_BN}"),
     lambda m: f"{_block(m.group(1), int(m.group(2)) + 1)}.conv3.bn.{m.group(3)}"),
    (re.compile(r"heads\.0\.clf\.0\.(weight|bias)"), lambda m: f"head.fc.{m.group(1)}"),
]


def vissl_to_canonical(state: Mapping[str, Any], origin: str = "checkpoint") -> Converted:
    """VISSL / ClassyVision trunks (+ ``heads.0.clf.0`` linear heads); SwAV / projection heads are dropped."""
    cleaned: dict[str, Any] = {}
    dropped = []
    for key, value in state.items():
        k = _VISSL_PART.sub(lambda m: ".", _VISSL_NOISE.sub("", key))
        if k.startswith("heads.") and not re.fullmatch(r"heads\.0\.clf\.0\.(weight|bias)", k):
            dropped.append(key)
            continue
        cleaned[k] = value
    out = _rename(cleaned, _VISSL_RULES, "vissl", origin)
    notes = [f"dropped {len(dropped)} self-supervised head tensor(s) (e.g. {dropped[0]}): not a classifier"
             ] if dropped else []
    return Converted(out, "vissl", tuple(notes))


# -- registry of key spaces ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeySpace:
    name: str
    description: str
    marker: re.Pattern  # a key only this space has
    to_canonical: Callable[..., Converted]
    from_canonical: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None


KEY_SPACES: dict[str, KeySpace] = {
    "timm": KeySpace("timm", "timm / regnet-zoo canonical names (stem.conv, s1.b1.conv1.conv or s1.b1.conv1 + "
                             "norm1, head.fc)",
                     re.compile(r"s[1-4]\.b\d+\.conv1\.(?:conv\.)?weight"), timm_to_canonical, canonical_to_timm),
    "hf": KeySpace("hf", "Hugging Face transformers RegNet (regnet.embedder / regnet.encoder.stages, classifier.1)",
                   re.compile(r"(?:regnet\.)?embedder\.embedder\.convolution\.weight"), hf_to_canonical,
                   canonical_to_hf),
    "torchvision": KeySpace("torchvision", "torchvision regnet_* (stem.0, trunk_output.block1.block1-0.f.a.0, fc)",
                            re.compile(r"trunk_output\.block1\.block1-0\.f\.c\.0\.weight"), torchvision_to_canonical,
                            canonical_to_torchvision),
    "pycls": KeySpace("pycls", "pycls AnyNet/RegNet .pyth (s1.b1.f.a, f.a_bn, f.se.f_ex); BGR stem",
                      re.compile(r"s1\.b1\.f\.a\.weight"), pycls_to_canonical),
    "vissl": KeySpace("vissl", "VISSL / ClassyVision SEER trunks (_feature_blocks.res2.block1-0.f.a.0, f.final_bn)",
                      re.compile(r"(?:.*\.)?(?:_feature_blocks\.res2|trunk_output\.block1)\."
                                 r"block1-(?:part\d+\.block1-)?0\.(?:.*\.)?f\.final_bn\.weight"), vissl_to_canonical),
}


def detect_key_space(keys: Iterable[str], origin: str = "checkpoint") -> str:
    """The key space whose marker key is present; ``UnknownKeySpaceError`` naming the known ones otherwise."""
    keys = list(keys)
    found = [s.name for s in KEY_SPACES.values() if any(s.marker.fullmatch(k) for k in keys)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise UnknownKeySpaceError(f"{origin}: tensor names match several key spaces ({', '.join(found)}); pass "
                                   f"{spell('keys=<space>')} to choose one")
    sample = ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "") if keys else "(no tensors)"
    known = "\n".join(f"  {s.name:12s} {s.description}" for s in KEY_SPACES.values())
    raise UnknownKeySpaceError(f"{origin}: unknown key space: its {len(keys)} tensor names ({sample}) match no RegNet "
                               f"checkpoint layout regnet-zoo knows:\n{known}\nIf it is one of these with extra "
                               f"prefixes, pass {spell('keys=<space>')}; otherwise it is probably not a RegNet "
                               f"checkpoint.")


def to_canonical(state: Mapping[str, Any], keys: str | None = None, origin: str = "checkpoint",
                 bgr: bool = True) -> Converted:
    """Convert a flat ``{name: array}`` mapping from ``keys`` (detected when ``None``) to canonical names.

    ``bgr`` applies to pycls only: its weights take BGR input and are flipped to RGB unless ``bgr=False``.
    """
    space = keys or detect_key_space(state.keys(), origin)
    if space not in KEY_SPACES:
        raise UnknownKeySpaceError(f"unknown key space {space!r}; known: {', '.join(KEY_SPACES)}")
    if space == "pycls":
        return pycls_to_canonical(state, origin, bgr=bgr)
    return KEY_SPACES[space].to_canonical(state, origin)


def from_canonical(state: Mapping[str, Any], keys: str) -> dict[str, Any]:
    """Canonical names -> ``keys`` names (timm, hf, torchvision)."""
    space = KEY_SPACES.get(keys)
    if space is None or space.from_canonical is None:
        writable = [s.name for s in KEY_SPACES.values() if s.from_canonical]
        raise WeightsError(f"cannot write the {keys!r} key space; writable: {', '.join(writable)}")
    return space.from_canonical(state)
