"""The variant registry: every variant from every plugin, looked up by name, alias, hub id or ``name.tag``."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from .errors import RegistryError, UnknownVariantError, describe, spell
from .variant import Variant, WeightTag


@dataclass(frozen=True)
class Resolved:
    """A looked-up name: the variant and the weight tag it selects (``None`` = no tag named)."""

    variant: Variant
    tag: str | None = None

    @property
    def weight(self) -> WeightTag | None:
        return self.variant.weights.get(self.tag) if self.tag else None


def natural_key(name: str) -> list:
    """Sort key that orders ``regnetx_002 < regnetx_016 < regnetx_160 < regnety_10b`` by their numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def family(name: str) -> str:
    """A variant's family: its name up to the first digit (``regnety_`` for ``regnety_040`` and ``regnety_10b``)."""
    m = re.match(r"\D*", name)
    return m.group(0) if m and m.group(0) else name


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


def close_matches(word: str, candidates, n: int = 1) -> list[str]:
    """The candidates a did-you-mean may offer for ``word``: only close ones, best first.

    Close means a typo away (case-insensitive edit distance at most a quarter of the word, at least 1) or a
    completion of what was typed (``regnety_04`` -> ``regnety_040``). ``resnet50`` has no close RegNet name, so
    nothing is suggested rather than ``regnety_2560``.
    """
    low = word.lower()
    numbers = lambda text: [int(t) for t in re.findall(r"\d+", text)]  # noqa: E731
    scored = []
    for c in candidates:
        d = edit_distance(low, c.lower())
        completes = len(low) >= 4 and c.lower().startswith(low) and len(c) - len(low) <= 2
        if d <= max(1, len(low) // 4) or completes:
            # completions first, then the same numbers ("regnety_02" -> "regnety_002"), then the fewest edits
            scored.append(((not completes, numbers(c) != numbers(word), d, natural_key(c)), c))
    return [c for _, c in sorted(scored)[:n]]


class Registry:
    """Variants by canonical name, plus a case-insensitive index of aliases and weight hub ids."""

    def __init__(self) -> None:
        self._variants: dict[str, Variant] = {}
        self._index: dict[str, tuple[str, str | None, str]] = {}  # lower name -> (variant, tag, what defined it)

    def add(self, variants: list[Variant]) -> None:
        """Add validated variants; raise ``RegistryError`` naming both places for any clashing name or alias."""
        problems = []
        for v in variants:
            where = v.source
            for key, tag, kind in [(v.name, None, "name")] + [(a, None, "alias") for a in v.aliases]:
                low = key.lower()
                if low in self._index:
                    other, _, other_where = self._index[low]
                    problems.append(f"{v.location or where}: {kind} {key!r} of variant {v.name!r} is already "
                                    f"used by variant {other!r} ({other_where})")
                    continue
                self._index[low] = (v.name, tag, where)
            if v.name not in self._variants:
                self._variants[v.name] = v
        if problems:
            raise RegistryError(problems)
        for v in variants:  # hub ids select their tag; an alias equal to a hub id selects it too
            for tag, w in v.weights.items():
                low = w.hub.lower()
                entry = self._index.get(low)
                if entry is None or (entry[0] == v.name and entry[1] is None):
                    self._index[low] = (v.name, tag, v.source)

    def __len__(self) -> int:
        return len(self._variants)

    def variants(self) -> list[Variant]:
        return [self._variants[n] for n in sorted(self._variants, key=natural_key)]

    def resolve(self, name: str) -> Resolved:
        """Name, alias, hub id, or any of these followed by ``.tag``."""
        if not isinstance(name, str) or not name:
            raise UnknownVariantError(f"variant name must be a non-empty string, got {describe(name)}")
        hit = self._index.get(name.lower())
        if hit:
            return Resolved(self._variants[hit[0]], hit[1])
        base, dot, tag = name.rpartition(".")
        if dot and base.lower() in self._index:
            variant = self._variants[self._index[base.lower()][0]]
            if tag in variant.weights:
                return Resolved(variant, tag)
            tags = list(variant.weights)
            close = close_matches(tag, tags)
            hint = f"did you mean {variant.name + '.' + close[0]!r}?" if close else (
                f"its tags: {', '.join(tags)}" if tags else "it has no weight tags")
            raise UnknownVariantError(f"unknown weight tag {tag!r} for variant {variant.name!r}; {hint}")
        raise UnknownVariantError(self._unknown_message(name))

    def _unknown_message(self, name: str) -> str:
        base, dot, tag = name.rpartition(".")
        close, typed = close_matches(name, self._index), name
        if not close and dot and tag:  # "regnety_02.pycls_in1k": suggest for the name, keep the tag
            close, typed = close_matches(base, self._index), base
        if close:
            variant, selected, _ = self._index[close[0]]  # a hub id selects a tag
            target = self._variants[variant]
            suggestion = (f"{target.name}.{selected}" if selected else
                          f"{target.name}.{tag}" if typed is base and tag in target.weights else target.name)
            return f"unknown variant {name!r}; did you mean {suggestion!r}?"
        return (f"unknown variant {name!r}, and no variant has a close name; the registry holds "
                f"{self.families()}: see {spell('rz.list_variants()')}")

    def families(self) -> str:
        """The variants grouped by name prefix, e.g. ``"regnetx_* (13 variants), regnety_* (18 variants)"``."""
        groups: dict[str, int] = {}
        for name in self._variants:
            groups[family(name)] = groups.get(family(name), 0) + 1
        parts = [f"{f}* ({n} variants)" if n > 1 else f.rstrip("_") for f, n in groups.items()]
        return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else "".join(parts) or "no variants"

    def list(self, pattern: str = "*", pretrained: bool = False) -> list[str]:
        """Canonical names matching ``pattern`` (fnmatch, case-insensitive), natural order.

        With ``pretrained=True`` the result is ``name.tag`` for every weight tag, as in ``timm.list_models``.
        """
        out = []
        for v in self.variants():
            if pretrained:
                out += [f"{v.name}.{t}" for t in v.weights if fnmatch.fnmatch(f"{v.name}.{t}".lower(),
                                                                                  pattern.lower())
                        or fnmatch.fnmatch(v.name.lower(), pattern.lower())]
            elif fnmatch.fnmatch(v.name.lower(), pattern.lower()):
                out.append(v.name)
        return out
