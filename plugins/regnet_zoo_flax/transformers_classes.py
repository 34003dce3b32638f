"""``FlaxRegNetModel`` and ``FlaxRegNetForImageClassification`` on the flax plugin's linen form, with
transformers' API (X variants too, which transformers' Flax RegNet cannot build).

Like transformers' Flax classes these are not modules but a linen ``module`` plus ``params`` (``{"params",
"batch_stats"}``, timm-named): ``model(pixel_values, params=None, train=False, output_hidden_states=None,
return_dict=None)`` with NCHW ``pixel_values``; ``train=True`` uses and updates batch statistics (every BN) and
returns ``(outputs, {"batch_stats": ...})``. ``dtype`` (constructor / ``from_pretrained``) is the compute dtype;
parameters stay float32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from regnet_zoo.transformers.base import PretrainedRegNet
from regnet_zoo.transformers.configuration import RegNetConfig
from regnet_zoo.transformers.labels import check_labels, problem_type
from regnet_zoo.transformers.outputs import (FlaxBaseModelOutputWithPoolingAndNoAttention,
                                             FlaxImageClassifierOutputWithNoAttention)

from .xla_options import jit_inference


class FlaxRegNetPreTrainedModel(PretrainedRegNet):
    """Base of the Flax classes: ``config``, ``module`` (linen), ``params``, transformers' files."""

    framework = "flax"
    weights_format = "flax"
    model_options = ("dtype", "seed", "input_shape")

    def __init__(self, config: RegNetConfig, input_shape=None, seed: int = 0, dtype=jnp.float32, **options):
        self.config = config
        self.dtype = dtype
        self.model = self.create_model(config, api="linen", data_format="channels_first", seed=seed,
                                       dtype=jnp.dtype(dtype).name, **options)
        self.module = self.model.module

    @property
    def num_labels(self) -> int:
        return self.config.num_labels

    @property
    def params(self) -> dict:
        """``{"params": ..., "batch_stats": ...}`` of the linen module (timm names)."""
        return self.model.variables

    @params.setter
    def params(self, params: dict) -> None:
        new = dict(params)
        self.model.variables.clear()
        self.model.variables.update(new)

    def canonical_state(self, params: dict | None = None) -> dict:
        """Canonical weights of ``params`` (default: the model's own), e.g. for ``save_pretrained(dir, params=p)``."""
        from regnet_zoo.weights.export import export_state

        return export_state(self.model if params is None else self.model._replace(variables=params), self.framework)

    def _forward(self, pixel_values, params, train: bool):
        variables = self.params if params is None else params
        if train:
            out, mutated = _apply_fn(self.module, True)(variables, pixel_values)
            return out, dict(mutated)
        return _apply_fn(self.module, False)(variables, pixel_values), None

    def _finish(self, result, mutated, return_dict):
        result = result if (self.config.use_return_dict if return_dict is None else return_dict) else \
            result.to_tuple()
        return result if mutated is None else (result, mutated)


@functools.lru_cache(maxsize=32)
def _apply_fn(module, train: bool):
    """Jitted ``module.apply`` returning every output field (and the new batch statistics in training)."""
    apply = functools.partial(module.apply, train=train, output_hidden_states=True,
                              mutable=["batch_stats"] if train else False)
    return jax.jit(apply) if train else jit_inference(apply)


class FlaxRegNetModel(FlaxRegNetPreTrainedModel):
    """transformers' ``FlaxRegNetModel``."""

    with_head = False

    def __call__(self, pixel_values, params: dict | None = None, train: bool = False,
                 output_hidden_states: bool | None = None, return_dict: bool | None = None):
        hidden = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        out, mutated = self._forward(pixel_values, params, train)
        pooled = out.pooler_output.reshape(*out.pooler_output.shape, 1, 1)
        result = FlaxBaseModelOutputWithPoolingAndNoAttention(out.last_hidden_state, pooled,
                                                              out.hidden_states if hidden else None)
        return self._finish(result, mutated, return_dict)


class FlaxRegNetForImageClassification(FlaxRegNetPreTrainedModel):
    """transformers' ``FlaxRegNetForImageClassification``, plus ``labels=`` (the loss of ``config.problem_type``)."""

    with_head = True

    def __call__(self, pixel_values, params: dict | None = None, train: bool = False,
                 output_hidden_states: bool | None = None, return_dict: bool | None = None, labels=None):
        hidden = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        out, mutated = self._forward(pixel_values, params, train)
        loss = None if labels is None else classification_loss(self.config, out.logits, labels)
        result = FlaxImageClassifierOutputWithNoAttention(loss, out.logits, out.hidden_states if hidden else None)
        return self._finish(result, mutated, return_dict)


def classification_loss(config: RegNetConfig, logits, labels):
    """Mean loss for ``config.problem_type`` (set from the labels on first use), as transformers' PyTorch class."""
    labels = jnp.asarray(labels)
    dtype = np.dtype(labels.dtype).name
    config.problem_type = problem = problem_type(config, dtype)
    check_labels(problem, labels.shape, logits.shape, dtype)
    logits = logits.astype(jnp.float32)
    if problem == "regression":
        return jnp.mean(jnp.square(logits.reshape(labels.shape) - labels.astype(jnp.float32)))
    if problem == "single_label_classification":
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, labels.reshape(-1, 1).astype(jnp.int32), axis=-1))
    labels = labels.astype(jnp.float32)
    return jnp.mean(jnp.maximum(logits, 0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits))))
