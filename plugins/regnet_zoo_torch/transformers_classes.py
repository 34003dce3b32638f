"""``RegNetModel`` and ``RegNetForImageClassification`` on the torch plugin (timm blocks), with transformers' API.

``model(pixel_values, output_hidden_states=None, return_dict=None)`` takes NCHW ``pixel_values`` and returns
transformers' output classes with their shapes (``pooler_output`` (B, C, 1, 1), five NCHW ``hidden_states``), or
their tuple with ``return_dict=False``. The regnet-zoo model (timm names) is ``.model``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from regnet_zoo.transformers.base import PretrainedRegNet
from regnet_zoo.transformers.configuration import RegNetConfig
from regnet_zoo.transformers.labels import check_labels, problem_type
from regnet_zoo.transformers.outputs import BaseModelOutputWithPoolingAndNoAttention, ImageClassifierOutputWithNoAttention


class RegNetPreTrainedModel(PretrainedRegNet, nn.Module):
    """Base of the PyTorch classes: ``config``, ``model`` (a ``regnet_zoo`` torch RegNet), transformers' files."""

    framework = "torch"
    weights_format = "pt"

    def __init__(self, config: RegNetConfig, **options):
        nn.Module.__init__(self)
        self.config = config
        self.model = self.create_model(config, **options)

    def after_loading(self):
        return self.eval()

    @property
    def num_labels(self) -> int:
        return self.config.num_labels

    def _run(self, pixel_values: torch.Tensor, output_hidden_states: Optional[bool]):
        hidden = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return self.model(pixel_values, output_hidden_states=hidden, return_dict=True)


class RegNetModel(RegNetPreTrainedModel):
    """transformers' ``RegNetModel``: the trunk, its last map and its pooled map."""

    with_head = False

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: Optional[bool] = None,
                return_dict: Optional[bool] = None):
        out = self._run(pixel_values, output_hidden_states)
        pooled = out.pooler_output.reshape(*out.pooler_output.shape[:2], 1, 1)  # transformers: AdaptiveAvgPool2d
        result = BaseModelOutputWithPoolingAndNoAttention(out.last_hidden_state, pooled, out.hidden_states)
        return result if (self.config.use_return_dict if return_dict is None else return_dict) else result.to_tuple()


class RegNetForImageClassification(RegNetPreTrainedModel):
    """transformers' ``RegNetForImageClassification``; ``labels`` add transformers' loss (by ``problem_type``)."""

    with_head = True

    def forward(self, pixel_values: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None,
                output_hidden_states: Optional[bool] = None, return_dict: Optional[bool] = None):
        out = self._run(pixel_values, output_hidden_states)
        loss = None if labels is None else classification_loss(self.config, out.logits, labels)
        result = ImageClassifierOutputWithNoAttention(loss, out.logits, out.hidden_states)
        return result if (self.config.use_return_dict if return_dict is None else return_dict) else result.to_tuple()


def classification_loss(config: RegNetConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """transformers' loss for ``config.problem_type`` (set from the labels on first use, as transformers does)."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    labels = labels.to(logits.device)
    dtype = str(labels.dtype).removeprefix("torch.")
    config.problem_type = problem = problem_type(config, dtype)
    check_labels(problem, labels.shape, logits.shape, dtype)
    if problem == "regression":
        if config.num_labels == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze())
        return F.mse_loss(logits, labels)
    if problem == "single_label_classification":
        return F.cross_entropy(logits.view(-1, config.num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels)
