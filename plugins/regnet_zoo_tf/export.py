"""Export a regnet_zoo_tf model as a TensorFlow SavedModel for serving (TF Serving, ``tf.saved_model.load``).

The ``serve`` endpoint (also the ``serving_default`` signature) takes a float32 image batch in the model's layout
with any batch size, height and width (>= 32) and runs in inference mode. It returns a dict:

* classifier: ``{"logits": (N, K)}``, or ``{"pooler_output": (N, C)}`` for ``num_classes=0``;
* backbone: one entry per pyramid level, e.g. ``{"P2": ..., "P5": ...}``, in the model's layout.
"""

from __future__ import annotations

import os

from ._tf import keras, tf
from .backbone import RegNetBackbone
from .classifier import RegNetClassifier


def serving_spec(model) -> tf.TensorSpec:
    """The input signature: model layout, channels fixed, batch / height / width free."""
    backbone = model if isinstance(model, RegNetBackbone) else model.backbone
    c = backbone.in_chans
    shape = (None, c, None, None) if backbone.data_format == "channels_first" else (None, None, None, c)
    return tf.TensorSpec(shape, tf.float32, name="images")


def _serve_fn(model):
    if isinstance(model, RegNetClassifier):
        key = "logits" if model.num_classes else "pooler_output"
        return lambda images: {key: model(images, training=False)}
    if isinstance(model, RegNetBackbone):
        levels = [f.level for f in model.feature_info]

        def serve(images):
            out = model(images, training=False)
            return dict(zip(levels, out if isinstance(out, (list, tuple)) else [out]))
        return serve
    raise TypeError(f"expected a regnet_zoo_tf model (RegNetClassifier or RegNetBackbone), got {type(model).__name__}")


def export_saved_model(model, path: str | os.PathLike, *, jit_compile: bool | None = None) -> str:
    """Write ``model`` as a SavedModel at ``path`` with a ``serve`` signature accepting any spatial size.

    ``jit_compile``: compile the endpoint with XLA (default: the model's ``jit_compile``). Returns the path.
    """
    if jit_compile is None:
        jit_compile = bool(getattr(model, "jit_compile", False))
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = serving_spec(model)
    fn = tf.function(_serve_fn(model), input_signature=[spec], jit_compile=jit_compile)
    archive.add_endpoint("serve", fn)
    path = os.fspath(path)
    archive.write_out(path, verbose=False)
    return path
