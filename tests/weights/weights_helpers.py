"""Helpers for the weights tests: models from the real libraries with non-trivial weights, and their outputs."""

from __future__ import annotations

import numpy as np

from harness import randomize

SMALL = ("regnetx_002", "regnety_002")
HF_SMALL = {"regnetx_002": dict(hidden_sizes=[24, 56, 152, 368], depths=[1, 1, 4, 7], groups_width=8, layer_type="x"),
            "regnety_002": dict(hidden_sizes=[24, 56, 152, 368], depths=[1, 1, 4, 7], groups_width=8, layer_type="y")}


def timm_model(name: str, num_classes: int = 1000, seed: int = 0):
    import timm
    import torch

    torch.manual_seed(seed)
    return randomize(timm.create_model(name, num_classes=num_classes), seed)


def hf_model(name: str, num_labels: int = 1000, headless: bool = False, seed: int = 0):
    import torch
    from transformers import RegNetConfig, RegNetForImageClassification, RegNetModel

    torch.manual_seed(seed)
    config = RegNetConfig(num_labels=num_labels, **HF_SMALL[name])
    return randomize((RegNetModel if headless else RegNetForImageClassification)(config), seed)


def timm_with(name: str, state, num_classes: int | None = None):
    """timm's model for ``name`` with canonical ``state`` loaded strictly (BN counters aside)."""
    import timm
    import torch

    if num_classes is None:
        num_classes = state["head.fc.weight"].shape[0] if "head.fc.weight" in state else 0
    model = timm.create_model(name, num_classes=num_classes).eval()
    result = model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    assert all(k.endswith("num_batches_tracked") for k in result.missing_keys), result.missing_keys
    return model


def run(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(x))
    out = getattr(out, "logits", out)
    if hasattr(out, "pooler_output"):
        out = out.pooler_output.flatten(1)
    return out.numpy()


def image_batch(batch: int = 2, size: int = 64, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, 3, size, size)).astype(np.float32)


X = image_batch()


def torch_state(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
