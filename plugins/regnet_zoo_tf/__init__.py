"""regnet-zoo plugin: RegNet X/Y as Keras 3 models on TensorFlow. Registers only; keras is imported on first build."""

from dataclasses import dataclass
from typing import Any

from regnet_zoo import ExportFormat, Framework, hookimpl
from regnet_zoo.plan import DESIGN_FEATURES

EXPORT_HINT = "pip install 'regnet-zoo[export]'"


@dataclass(frozen=True)
class TfOptions:
    """The tf framework's own options (the shared ones are ``regnet_zoo.options.SharedOptions``).

    * ``sync_bn``: synchronise BN statistics across ``tf.distribute`` replicas (``norm="sync_bn"`` too); ``None`` =
      on when built inside a strategy scope with more than one replica.
    * ``grouped_conv``: ``"auto"`` / ``"grouped"`` / ``"split"``: how grouped convs run (same weights, same result).
    * ``jit_compile``: XLA for the compiled inference path and ``predict``: ``"auto"`` (off on CPU, where it was
      measured slower, on for GPU/TPU), ``True`` or ``False``.
    * ``image_size``: fix the input height and width (int or (h, w)); default ``None`` accepts any size >= 32.
    * ``name``: model name (default: the variant name).

    Shared ``dtype`` is a Keras dtype policy name, e.g. ``"mixed_bfloat16"`` (BN statistics stay float32).
    """

    sync_bn: bool | None = None
    grouped_conv: str = "auto"
    jit_compile: Any = "auto"
    image_size: Any = None
    name: str | None = None


class TfFramework(Framework):
    """The tf backend; each method imports TensorFlow / Keras (through this package's modules) when first called."""

    def build(self, request):
        from .build import build

        return build(request)

    def run(self, model, x, labels=None):
        from .build import run

        return run(model, x, labels=labels)

    def load_weights(self, model, state, strict=True):
        from .weights import load_canonical

        load_canonical(model, state, strict=strict)

    def export_weights(self, model):
        from .weights import export_canonical

        return export_canonical(model)

    def native_weights(self, model):
        import numpy as np

        return {v.path: np.asarray(v) for v in model.weights}

    def save_native(self, model, path, metadata):
        """``*.weights.h5``: Keras' own ``save_weights`` file; else safetensors of the Keras variable paths."""
        if not path.name.endswith(".weights.h5"):
            return super().save_native(model, path, metadata)
        from regnet_zoo.weights.atomic import atomic_path

        with atomic_path(path, suffix=".weights.h5") as tmp:
            model.save_weights(str(tmp))
        return path

    def as_tensor(self, array):
        from ._tf import tf

        return tf.constant(array)

    def transformers_class(self, name):
        from . import transformers_classes

        return getattr(transformers_classes, name)

    def write_artefact(self, format, model, path, request):
        from . import export

        return {"tflite": export.write_tflite, "saved_model": export.write_saved_model}[format](model, path, request)


@hookimpl
def register_frameworks(register):
    register(TfFramework(
        name="tf",
        aliases=("tensorflow", "keras"),
        requires=("tensorflow", "keras", "keras_hub"),
        layout="NHWC",
        native_names="Keras variable paths",
        native_suffixes=(".weights.h5",),
        tensor_type="tf",
        transformers_classes=("TFRegNetModel", "TFRegNetForImageClassification", "TFRegNetPreTrainedModel"),
        design_features=DESIGN_FEATURES,  # all of them, in the Keras model and the fast path (fast.py)
        install_hint="pip install 'regnet-zoo[tf]'",
        formats=(
            ExportFormat("tflite", suffix=".tflite",
                         precisions=("fp32", "fp16", "int8_dynamic", "int8"), max_bytes=2**31 - 2**26,
                         instead="onnx (weights in external data) or saved_model",
                         description="TFLite / LiteRT flatbuffer: BN folded, native grouped CONV_2D, fp16 / int8"),
            ExportFormat("saved_model",
                         description="TensorFlow SavedModel directory, serving_default signature"),
        ),
        options=TfOptions,
        unsupported={"abstract": "Keras allocates every weight when it builds a model; use framework='flax' or "
                                 "'torch' with abstract=True for a shapes-only model"},
        limits={"global_pool": ("avg", "max", "avgmax")},
        description="keras.Model on the TensorFlow backend (NHWC; data_format='channels_first' for NCHW)",
    ))
