"""``read_checkpoint``: any RegNet checkpoint file or model directory -> canonical numpy weights."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import WeightsError
from . import keyspaces, match, readers
from ..variant import Variant
from .hf_config import variant_from_config


@dataclass(frozen=True)
class Checkpoint:
    """Canonical (timm-named) weights read from a checkpoint, and what is known about them.

    ``state`` maps canonical names to numpy arrays, memory-mapped from safetensors and zip pickles (nothing is read
    until used). ``variant`` comes from the directory's ``config.json`` when there is one, else from matching the
    shapes against the registry (``None`` when nothing matches); a config.json describing no registry variant gives
    the unnamed ``Variant`` built from it.
    """

    state: dict[str, Any]
    origin: str
    key_space: str
    format: str
    variant: "str | Variant | None"
    config: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        """Classifier size (0 = headless trunk)."""
        return match.head_classes(self.state)


def read_checkpoint(path: str | os.PathLike, *, keys: str | None = None, bgr: bool = True) -> Checkpoint:
    """Read ``path`` (a checkpoint file, a sharded ``*.index.json``, or a model directory) into canonical weights.

    ``keys`` forces the source key space (``timm``, ``hf``, ``torchvision``, ``pycls``, ``vissl``); by default it is
    detected from the tensor names. ``bgr=False`` keeps a pycls stem in BGR order. Pickles are read with a
    restricted unpickler into numpy (memory-mapped; torch is not needed) and never execute code.
    """
    raw = readers.read(path)
    origin = str(Path(path).expanduser())
    if keys is not None and raw.key_space is not None and keys != raw.key_space:
        raise WeightsError(f"{origin}: a transformers {raw.format} file is always in the {raw.key_space!r} key space, "
                           f"not {keys!r}")
    converted = keyspaces.to_canonical(raw.state, keys or raw.key_space, origin, bgr=bgr)
    variant = None
    if raw.config is not None and raw.config.get("model_type") == "regnet":
        variant = variant_from_config(raw.config, f"{origin} (config.json)")
    else:
        found = match.identify(converted.state)
        variant = found[0] if found else None
    notes = list(raw.notes) + list(converted.notes)
    if raw.wrapper:
        notes.insert(0, f"weights read from the checkpoint's {raw.wrapper!r} entry")
    return Checkpoint(converted.state, origin, converted.key_space, raw.format, variant, raw.config, tuple(notes))
