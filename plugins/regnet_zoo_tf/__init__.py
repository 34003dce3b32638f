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


@hookimpl
def register_frameworks(register):
    register(Framework(
        name="tf",
        aliases=("tensorflow", "keras"),
        requires=("tensorflow", "keras", "keras_hub"),
        builder="regnet_zoo_tf.build:build",
        runner="regnet_zoo_tf.build:run",
        loader="regnet_zoo_tf.weights:load_canonical",
        exporter="regnet_zoo_tf.weights:export_canonical",
        layout="NHWC",
        design_features=DESIGN_FEATURES,  # all of them, in the Keras model and the fast path (fast.py)
        install_hint="pip install 'regnet-zoo[tf]'",
        formats=(
            ExportFormat("tflite", "regnet_zoo_tf.export:write_tflite", suffix=".tflite",
                         precisions=("fp32", "fp16", "int8_dynamic", "int8"), max_bytes=2**31 - 2**26,
                         instead="onnx (weights in external data) or saved_model",
                         description="TFLite / LiteRT flatbuffer: BN folded, native grouped CONV_2D, fp16 / int8"),
            ExportFormat("saved_model", "regnet_zoo_tf.export:write_saved_model",
                         description="TensorFlow SavedModel directory, serving_default signature"),
        ),
        options=TfOptions,
        unsupported={"abstract": "Keras allocates every weight when it builds a model; use framework='flax' or "
                                 "'torch' with abstract=True for a shapes-only model"},
        limits={"global_pool": ("avg",), "norm": ("bn", "sync_bn"), "fast": (False, True)},
        description="keras.Model on the TensorFlow backend (NHWC; data_format='channels_first' for NCHW)",
    ))
