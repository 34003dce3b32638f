"""Feature-map metadata in timm's form: entries readable as dicts, a list with timm's ``FeatureInfo`` helpers.

Every framework's model carries a ``FeatureInfoList``: a classifier or headless model lists all five maps
(stem, s1..s4), a ``features_only`` model the maps it returns. timm's own helpers accept it
(``timm.models.FeatureInfo(model.feature_info, out_indices)`` reads each entry's ``num_chs`` / ``reduction`` /
``module``), and it answers the same calls as timm's ``FeatureInfo`` (``channels()``, ``reduction()``,
``module_name()``, ``get_dicts()``, ``get()``).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from .errors import describe

NUM_FEATURE_INDICES = 5  # stem, s1..s4


class FeatureInfo(dict):
    """One feature map a backbone can return: timm's ``feature_info`` dict, with attribute access.

    Keys (timm's plus two): ``num_chs``, ``reduction``, ``module`` (the module name: "stem", "s1", ...),
    ``index`` (0 = stem, 1..4 = s1..s4) and ``level`` ("P1".."P5", stride 2**k). Attributes: ``index``,
    ``name``, ``level``, ``channels``, ``reduction``. A plain dict underneath, because timm's helpers
    (``timm.models.FeatureInfo``) read and ``setdefault`` entries as dicts.
    """

    def __init__(self, index: int, name: str, level: str, channels: int, reduction: int):
        super().__init__(num_chs=channels, reduction=reduction, module=name, index=index, level=level)

    index = property(lambda self: self["index"])
    name = property(lambda self: self["module"])
    level = property(lambda self: self["level"])
    channels = property(lambda self: self["num_chs"])
    reduction = property(lambda self: self["reduction"])

    def __repr__(self) -> str:
        return (f"FeatureInfo(index={self.index}, name={self.name!r}, level={self.level!r}, "
                f"channels={self.channels}, reduction={self.reduction})")

    def __reduce__(self):
        return FeatureInfo, (self.index, self.name, self.level, self.channels, self.reduction)

    def as_dict(self) -> dict:
        """The JSON form the CLI prints."""
        return {"index": self.index, "name": self.name, "level": self.level, "channels": self.channels,
                "reduction": self.reduction}


class FeatureInfoList(list):
    """A list of ``FeatureInfo`` with timm's ``FeatureInfo`` accessors (``idx``: None = all, an int or a list)."""

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> Any:
        if idx is None:
            return [f[key] for f in self]
        if isinstance(idx, (tuple, list)):
            return [self[i][key] for i in idx]
        return self[idx][key]

    def get_dicts(self, keys: Sequence[str] | None = None, idx: int | Sequence[int] | None = None):
        def pick(f: FeatureInfo) -> dict:
            return dict(f) if keys is None else {k: f[k] for k in keys}

        if idx is None:
            return [pick(f) for f in self]
        if isinstance(idx, (tuple, list)):
            return [pick(self[i]) for i in idx]
        return pick(self[idx])

    def channels(self, idx: int | Sequence[int] | None = None):
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None):
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None):
        return self.get("module", idx)

    @property
    def out_indices(self) -> tuple[int, ...]:
        """The feature indices (0 = stem, 1..4 = s1..s4) of the entries, in order."""
        return tuple(f.index for f in self)


def normalize_out_indices(out_indices: Iterable[int], count: int = NUM_FEATURE_INDICES) -> tuple[int, ...]:
    """Validate feature indices (ints in 0..count-1, no duplicates) and return them sorted."""
    if isinstance(out_indices, int) or isinstance(out_indices, (str, bytes)):
        raise ValueError(f"out_indices must be a sequence of ints in 0..{count - 1}, got {describe(out_indices)}")
    idx = list(out_indices)
    bad = [i for i in idx if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < count]
    if bad or not idx:
        raise ValueError(
            f"out_indices must be a non-empty sequence of ints in 0..{count - 1} "
            f"(0 = stem, 1..4 = stages s1..s4), got {describe(tuple(idx))}"
        )
    if len(set(idx)) != len(idx):
        raise ValueError(f"out_indices has duplicates: {describe(tuple(idx))}")
    return tuple(sorted(idx))
