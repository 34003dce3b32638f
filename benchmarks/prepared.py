"""What a contender builder hands the worker, and the inputs every contender shares (same seed, same values)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

NUM_CLASSES = 1000
SEED = 0
LEARNING_RATE = 0.01  # the training step's plain SGD update (no momentum, no weight decay), in every framework


@dataclass
class Prepared:
    """A built contender: ``step()`` runs one synchronised call (inference or training step)."""

    step: Callable[[], Any]
    create_s: float  # seconds to construct the model (framework already imported)
    params: int | None = None  # parameter count, to show that every contender computes the same network
    notes: list[str] = field(default_factory=list)


def seeded_input(batch: int, size: int, layout: str = "nchw") -> np.ndarray:
    x = np.random.default_rng(SEED).standard_normal((batch, 3, size, size), dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "nhwc" else x


def seeded_labels(batch: int) -> np.ndarray:
    return np.random.default_rng(SEED + 1).integers(0, NUM_CLASSES, size=(batch,), dtype=np.int64)


def hf_config(model: str):
    """An HF ``RegNetConfig`` for a registry variant (X or Y; HF uses one group width for all stages)."""
    import regnet_zoo as rz
    from transformers import RegNetConfig

    v = rz.get_variant(model)
    if len(set(v.group_widths)) != 1:
        raise ValueError(f"{model}: HF RegNetConfig takes one group width, the variant has {v.group_widths}")
    gw = v.group_widths[0]
    return RegNetConfig(num_channels=3, embedding_size=v.stem_width, hidden_sizes=list(v.widths),
                        depths=list(v.depths), groups_width=gw, layer_type=v.block, num_labels=NUM_CLASSES)
