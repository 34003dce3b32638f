"""ImageNet-1k class names shipped with the package (index order of every public 1000-class RegNet head)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

IMAGENET_CLASSES_FILE = Path(__file__).resolve().parent.parent / "data" / "imagenet_classes.txt"


@lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    names = tuple(IMAGENET_CLASSES_FILE.read_text(encoding="utf-8").splitlines())
    if len(names) != 1000:
        raise RuntimeError(f"{IMAGENET_CLASSES_FILE} has {len(names)} lines, expected 1000 (a broken install?)")
    return names


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names, index ``i`` = logit ``i``."""
    return list(_names())
