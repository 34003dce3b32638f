"""``RegNetClassifier``: backbone + global pool + ``head.fc``, with HF-style outputs and loss.

``model(x)`` returns logits (pooled features when ``num_classes == 0``), so ``compile`` / ``fit`` / ``predict`` work
as for any Keras model; ``model(x, output_hidden_states=True)`` and ``model(x, labels=y)`` return a
``regnet_zoo.RegNetOutput`` with Hugging Face's field names.
"""

from __future__ import annotations

from regnet_zoo.contract import loss_kind
from regnet_zoo.outputs import RegNetOutput

from ._tf import keras, tf
from .backbone import RegNetBackbone
from .layers import PACKAGE, GlobalPool


@keras.saving.register_keras_serializable(package=PACKAGE)
class RegNetClassifier(keras.Model):
    """A RegNet image classifier (timm's ``RegNet``; HF's ``TFRegNetForImageClassification``).

    Args:
        backbone: a ``RegNetBackbone`` in its keras-hub form (``out_indices=None``); ``classifier.backbone`` is
            the object to hand to ``keras_hub.models.ImageClassifier`` or to fine-tune on its own.
        num_classes: classifier size; 0 returns the pooled features (B, C).
        drop_rate: dropout on the pooled features before ``head.fc`` in training (timm's ``drop_rate``).
        global_pool: ``"avg"``, ``"max"`` or ``"avgmax"`` (timm's names).
    """

    def __init__(self, backbone: RegNetBackbone, num_classes: int = 1000, drop_rate: float = 0.0,
                 global_pool: str = "avg", **kwargs):
        if not isinstance(backbone, RegNetBackbone) or backbone.out_indices is not None:
            raise TypeError("RegNetClassifier needs a RegNetBackbone built with out_indices=None")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        kwargs.setdefault("name", backbone.name)
        super().__init__(**kwargs)
        self.backbone = backbone
        self.num_classes = num_classes
        self.drop_rate = float(drop_rate)
        dtype = backbone.dtype_policy
        self.drop = keras.layers.Dropout(self.drop_rate, dtype=dtype, name="head.drop") if drop_rate else None
        self.global_pool = global_pool
        self.pool = GlobalPool(global_pool, backbone.data_format, dtype=dtype, name="head.global_pool")
        self.fc = keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                                     dtype=dtype, name="head.fc") if num_classes else None  # timm's head init
        if self.fc is not None:
            self.fc.build((None, backbone.plan.num_features))
        self.built = True

    # --- metadata shared with the backbone -------------------------------------------------------------------
    @property
    def plan(self):
        return self.backbone.plan

    @property
    def data_format(self) -> str:
        return self.backbone.data_format

    @property
    def feature_info(self):
        return self.plan.all_feature_info()

    def optimize_for_inference(self, precision: str = "fp32"):
        """A ``FrozenRegNet``: BN folded, weights as graph constants, fused oneDNN convs; ``"bf16"`` for AMX / GPU."""
        from .fast import _optimize_for_inference

        return _optimize_for_inference(self, precision)

    # --- forward ---------------------------------------------------------------------------------------------
    def __call__(self, inputs, *args, **kwargs):
        self.backbone.check_input(inputs)
        labels = kwargs.get("labels")
        if labels is not None and self.num_classes and hasattr(labels, "shape") and hasattr(inputs, "shape"):
            loss_kind((inputs.shape[0], self.num_classes), tuple(labels.shape), labels.dtype)  # before Keras wraps it
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, training=None, output_hidden_states=False, labels=None):
        if output_hidden_states or labels is not None:
            *maps, last = self.backbone.hidden_states_model(inputs, training=training)
            hidden = tuple(maps)
        else:
            hidden, last = None, self.backbone(inputs, training=training)
        pooled = self.pool(last)
        logits = None if self.fc is None else self.fc(self.drop(pooled, training=training) if self.drop else pooled)
        if not output_hidden_states and labels is None:
            return logits if logits is not None else pooled
        loss = self.compute_hf_loss(labels, logits) if labels is not None else None
        return RegNetOutput(logits=logits, pooler_output=pooled, last_hidden_state=last,
                            hidden_states=hidden if output_hidden_states else None, loss=loss)

    def compute_hf_loss(self, labels, logits):
        """HF's loss by the host's rule (``regnet_zoo.contract.loss_kind``): MSE for one output, cross-entropy for
        integer class indices, BCE-with-logits for float multi-hot labels."""
        if logits is None:
            raise ValueError("labels= needs a classifier head; this model was built with num_classes=0")
        logits = tf.cast(logits, "float32")
        labels = tf.convert_to_tensor(labels)
        kind = loss_kind(tuple(logits.shape), tuple(labels.shape), labels.dtype)
        if kind == "mse":
            return tf.reduce_mean(tf.square(tf.reshape(logits, (-1,)) - tf.reshape(tf.cast(labels, "float32"), (-1,))))
        if kind == "cross_entropy":
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, "int64"),
                                                                                 logits=logits))
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, "float32"),
                                                                      logits=logits))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes or self.plan.num_features)

    # --- serialisation ---------------------------------------------------------------------------------------
    def get_config(self):
        return {"backbone": keras.layers.serialize(self.backbone), "num_classes": self.num_classes,
                "drop_rate": self.drop_rate, "global_pool": self.global_pool, "name": self.name,
                "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)
