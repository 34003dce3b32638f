"""``RegNetOutput`` on torch: registered as a pytree node (for ``torch.export`` / ``torch.compile``) and the loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils import _pytree

from regnet_zoo.contract import loss_kind
from regnet_zoo.outputs import RegNetOutput

_SERIALIZED_NAME = "regnet_zoo.outputs.RegNetOutput"


def _register() -> None:
    if RegNetOutput in _pytree.SUPPORTED_NODES:  # the host class is shared: register it once per process
        return
    torch.export.register_dataclass(RegNetOutput, serialized_type_name=_SERIALIZED_NAME)


_register()


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """HF's RegNet loss, chosen by the host's rule (``regnet_zoo.contract.loss_kind``): MSE for one output,
    cross-entropy for integer class indices, BCE-with-logits for float multi-hot labels."""
    kind = loss_kind(tuple(logits.shape), tuple(labels.shape), labels.dtype)
    logits = logits.float()
    if kind == "mse":
        return F.mse_loss(logits.reshape(-1), labels.reshape(-1).float())
    if kind == "cross_entropy":
        return F.cross_entropy(logits, labels.long())
    return F.binary_cross_entropy_with_logits(logits, labels.float())


__all__ = ["RegNetOutput", "classification_loss"]
