"""Canonical (timm-named numpy) weights <-> a torch model. The torch model already uses timm's names, so this is a
checked copy: no renaming, no layout change."""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn

from regnet_zoo.errors import WeightsError
from regnet_zoo.keys import check_state

COUNTER = "num_batches_tracked"  # timm/torch BN counters are not canonical


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's canonical tensors (parameters and BN statistics, sharing storage with the model)."""
    if getattr(model, "is_inference_optimized", False):
        raise WeightsError("this model was optimised for inference (BatchNorm folded into the convolutions), so it has "
                           "no canonical weights; load or export the model you optimised, before optimising it "
                           "(create(..., pretrained=...) with fast=, or model.optimize_for_inference() after loading)")
    return {k: v for k, v in model.state_dict().items() if not k.endswith(COUNTER)}


def _as_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    arr = np.asarray(value)
    with warnings.catch_warnings():  # memory-mapped checkpoints are read-only; we only read them
        warnings.simplefilter("ignore", UserWarning)
        if not arr.dtype.isnative:  # big-endian arrays from some .npy / h5 files
            arr = arr.astype(arr.dtype.newbyteorder("="))
        return torch.from_numpy(arr)


def load_canonical(model: nn.Module, state: Mapping[str, Any], strict: bool = True,
                   origin: str = "weights") -> None:
    """Copy canonical ``state`` into ``model`` in place (values cast to each parameter's dtype and device; a model
    sharded with FSDP2 / DTensor keeps each rank's shard of the full arrays).

    ``strict=True``: the key set must be exactly the model's; ``strict=False``: every given key must exist in the
    model with the same shape, keys not given are left untouched. Problems are listed together in one
    ``WeightsError``; nothing is copied unless all keys pass.
    """
    targets = _tensors(model)
    expected = {k: tuple(v.shape) for k, v in targets.items()}
    if strict:
        check_state(state, expected, origin)
    else:
        check_state(state, {k: s for k, s in expected.items() if k in state}, origin)
    keys = [k for k in state if not k.endswith(COUNTER)]
    if keys and any(targets[k].is_meta for k in keys):
        raise WeightsError("the model is on the meta device (shapes only, no storage); materialise it first with "
                           "model.to_empty(device='cpu') and then load the weights")
    with torch.no_grad():
        for k in keys:
            _copy_into(targets[k], _as_tensor(state[k]))


def _is_dtensor(t: torch.Tensor) -> bool:
    return type(t).__name__ == "DTensor"  # without importing torch.distributed for ordinary models


def _copy_into(target: torch.Tensor, value: torch.Tensor) -> None:
    if _is_dtensor(target):  # FSDP2 / tensor-parallel: every rank holds the full checkpoint, keeps its own shard
        from torch.distributed.tensor import distribute_tensor

        value = distribute_tensor(value.to(target.device_mesh.device_type, target.dtype), target.device_mesh,
                                  target.placements, src_data_rank=None)
    target.copy_(value)


def export_canonical(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's weights as a canonical dict of numpy arrays (copies; float32 and float16 kept, bfloat16 -> float32).

    Loading the result back with ``load_canonical`` is a bit-exact round trip.
    """
    out = {}
    for k, v in _tensors(model).items():
        if v.is_meta:
            raise WeightsError("the model is on the meta device (shapes only, no values) and cannot be exported; "
                               "materialise it with model.to_empty(device='cpu') and load weights first")
        v = (v.full_tensor() if _is_dtensor(v) else v).detach().cpu()  # a sharded tensor is gathered
        if v.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds every bfloat16 value exactly
            v = v.float()
        out[k] = v.numpy().copy()
    return out


def native_state(model: nn.Module) -> dict[str, np.ndarray]:
    """``model.state_dict()`` (what ``load_state_dict`` takes) as numpy arrays, bfloat16 widened to float32."""
    out = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        out[k] = (v.float() if v.dtype == torch.bfloat16 else v).numpy()
    return out


__all__ = ["export_canonical", "load_canonical", "native_state"]
