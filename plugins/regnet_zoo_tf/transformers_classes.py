"""``TFRegNetModel`` and ``TFRegNetForImageClassification`` on the tf plugin (Keras 3), with transformers' API.

Keras models taking NCHW ``pixel_values`` like transformers' TF classes (computed NHWC inside):
``model(pixel_values, output_hidden_states=None, return_dict=None, labels=None, training=False)``. Outputs have
transformers' fields and its ``return_dict=True`` shapes (NCHW maps, ``pooler_output`` (B, C, 1, 1)) also in the
``return_dict=False`` tuple (transformers returns NHWC hidden states there, a bug not copied). The loss is per
example, (B,), as transformers' TF losses are.
"""

from __future__ import annotations

from ._tf import keras, tf  # the plugin's import: triton first (TensorFlow before it segfaults)

from regnet_zoo.transformers.base import PretrainedRegNet
from regnet_zoo.transformers.configuration import RegNetConfig
from regnet_zoo.transformers.labels import check_labels, problem_type
from regnet_zoo.transformers.outputs import TFBaseModelOutputWithPoolingAndNoAttention, TFSequenceClassifierOutput


class TFRegNetPreTrainedModel(PretrainedRegNet, keras.Model):
    """Base of the TensorFlow classes: ``config``, ``model`` (a ``regnet_zoo`` Keras RegNet, NCHW), files."""

    framework = "tf"
    weights_format = "tf"

    def __init__(self, config: RegNetConfig, **options):
        keras.Model.__init__(self, name=type(self).__name__)
        self.config = config
        self.model = self.create_model(config, data_format="channels_first", **options)

    @property
    def num_labels(self) -> int:
        return self.config.num_labels

    def _dict(self, return_dict) -> bool:
        return self.config.use_return_dict if return_dict is None else return_dict


class TFRegNetModel(TFRegNetPreTrainedModel):
    """transformers' ``TFRegNetModel``."""

    with_head = False

    def call(self, pixel_values, output_hidden_states=None, return_dict=None, training=False):
        hidden = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        out = self.model(pixel_values, output_hidden_states=True, training=bool(training))
        pooled = tf.reshape(out.pooler_output, (-1, out.pooler_output.shape[-1], 1, 1))
        result = TFBaseModelOutputWithPoolingAndNoAttention(out.last_hidden_state, pooled,
                                                            out.hidden_states if hidden else None)
        return result if self._dict(return_dict) else result.to_tuple()


class TFRegNetForImageClassification(TFRegNetPreTrainedModel):
    """transformers' ``TFRegNetForImageClassification``; ``labels`` add the loss of ``config.problem_type``."""

    with_head = True

    def call(self, pixel_values=None, labels=None, output_hidden_states=None, return_dict=None, training=False):
        hidden = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        out = self.model(pixel_values, output_hidden_states=True, training=bool(training))
        loss = None if labels is None else classification_loss(self.config, out.logits, labels)
        result = TFSequenceClassifierOutput(loss, out.logits, out.hidden_states if hidden else None)
        return result if self._dict(return_dict) else result.to_tuple()


def classification_loss(config: RegNetConfig, logits, labels):
    """Per-example loss (B,) for ``config.problem_type`` (set from the labels on first use, as transformers does)."""
    labels = tf.convert_to_tensor(labels)
    dtype = labels.dtype.name
    config.problem_type = problem = problem_type(config, dtype)
    check_labels(problem, labels.shape, logits.shape, dtype)
    logits = tf.cast(logits, tf.float32)
    if problem == "regression":
        labels = tf.reshape(tf.cast(labels, tf.float32), tf.shape(logits))
        return tf.reduce_mean(tf.square(logits - labels), axis=-1)
    if problem == "single_label_classification":
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.reshape(labels, (-1,)), logits=logits)
    labels = tf.cast(labels, tf.float32)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits), axis=-1)
