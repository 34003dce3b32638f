"""``RegNetOutput`` on torch: registered as a pytree node (for ``torch.export`` / ``torch.compile``) and the loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils import _pytree

from regnet_zoo.outputs import RegNetOutput

_SERIALIZED_NAME = "regnet_zoo.outputs.RegNetOutput"


def _register() -> None:
    if RegNetOutput in _pytree.SUPPORTED_NODES:  # the host class is shared: register it once per process
        return
    torch.export.register_dataclass(RegNetOutput, serialized_type_name=_SERIALIZED_NAME)


_register()


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """HF's RegNet loss: MSE for one output (regression), cross-entropy for class indices, BCE for multi-hot labels."""
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1).float(), labels.reshape(logits.shape[0]).float())
    if not labels.is_floating_point():
        return F.cross_entropy(logits.float(), labels.reshape(-1).long())
    if labels.shape != logits.shape:
        raise ValueError(f"float labels are multi-label targets and need the logits' shape {tuple(logits.shape)}, "
                         f"got {tuple(labels.shape)}; pass class indices as an integer tensor for cross-entropy")
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


__all__ = ["RegNetOutput", "classification_loss"]
