"""The variant registry: every variant from every plugin, looked up by name, alias, hub id or ``name.tag``."""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass

from .errors import RegistryError, UnknownVariantError
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
            raise UnknownVariantError(f"variant name must be a non-empty string, got {name!r}")
        hit = self._index.get(name.lower())
        if hit:
            return Resolved(self._variants[hit[0]], hit[1])
        base, dot, tag = name.rpartition(".")
        if dot and base.lower() in self._index:
            variant = self._variants[self._index[base.lower()][0]]
            if tag in variant.weights:
                return Resolved(variant, tag)
            tags = list(variant.weights)
            close = difflib.get_close_matches(tag, tags, n=1)
            hint = f"did you mean {variant.name}.{close[0]!r}?" if close else (
                f"it has: {', '.join(tags)}" if tags else "it has no weight tags")
            raise UnknownVariantError(f"unknown weight tag {tag!r} for variant {variant.name!r}; {hint}")
        raise UnknownVariantError(self._unknown_message(name))

    def _unknown_message(self, name: str) -> str:
        base, dot, tag = name.rpartition(".")
        typed = base if dot and tag else name  # "regnety_02.pycls_in1k": suggest for the name, keep the tag
        candidates = [k for k, (_, t, _) in self._index.items() if t is None]
        close = difflib.get_close_matches(typed.lower(), candidates, n=5, cutoff=0.6)
        numbers = lambda text: [int(n) for n in re.findall(r"\d+", text)]  # noqa: E731
        # prefer completions of what was typed, then the same numbers ("regnety_02" -> "regnety_002")
        close.sort(key=lambda c: (not c.startswith(typed.lower()), numbers(c) != numbers(typed)))
        if close:
            target = self._variants[self._index[close[0]][0]]
            suggestion = f"{target.name}.{tag}" if typed is base and tag in target.weights else target.name
            return f"unknown variant {name!r}; did you mean {suggestion!r}?"
        return f"unknown variant {name!r}; run `regnet-zoo list` to see the {len(self._variants)} variants"

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
