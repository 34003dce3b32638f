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


def trained_like_weights(model: str) -> str:
    """A safetensors file of canonical weights for ``model`` drawn like a trained network's: the test suite's
    ``harness.random_state`` (He-scaled convs, non-zero norm statistics, affine and biases, each block's last norm scaled
    down so that the residual sums stay bounded), seeded, written once per machine in the temp directory.

    Freshly initialised weights would time a graph no trained model has: the fast paths fold BatchNorm into graph
    constants, an initial BN (beta 0, mean 0) folds into a zero bias, and TensorFlow's grappler deletes a BiasAdd of
    zeros, which breaks its conv + bias + ReLU (+ sum) fusion (tf ``fast=True`` regnetx_004, batch 8: 26.5 ms with the
    initial weights, 22.9 ms with these)."""
    import importlib.util
    import os
    import tempfile
    from pathlib import Path

    from safetensors.numpy import save_file

    path = Path(tempfile.gettempdir()) / "regnet-zoo-bench" / f"{model}-trained-like-seed{SEED}.safetensors"
    if path.exists():
        return str(path)
    # loaded from its file: putting tests/ on sys.path would put its torch/, tf/ and flax/ folders there too
    spec = importlib.util.spec_from_file_location("regnet_zoo_tests_harness",
                                                  Path(__file__).resolve().parents[1] / "tests" / "harness.py")
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    save_file(harness.random_state(model, NUM_CLASSES, seed=SEED), str(partial))
    os.replace(partial, path)
    return str(path)


def rz_create(model: str, framework: str, **options):
    """``rz.create`` for a regnet-zoo contender, with ``trained_like_weights``."""
    import regnet_zoo as rz

    return rz.create(model, framework=framework, pretrained=trained_like_weights(model), **options)


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
