"""regnet-zoo plugin: RegNet X/Y as Keras 3 models on TensorFlow. Registers only; keras is imported on first build."""

from regnet_zoo import ExportFormat, Framework, hookimpl

EXPORT_HINT = "pip install 'regnet-zoo[export]'"


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
        install_hint="pip install 'regnet-zoo[tf]'",
        formats=(
            ExportFormat("tflite", "regnet_zoo_tf.export:write_tflite", suffix=".tflite",
                         precisions=("fp32", "fp16", "int8_dynamic", "int8"), max_bytes=2**31 - 2**26,
                         instead="onnx (weights in external data) or saved_model",
                         description="TFLite / LiteRT flatbuffer: BN folded, native grouped CONV_2D, fp16 / int8"),
            ExportFormat("saved_model", "regnet_zoo_tf.export:write_saved_model",
                         description="TensorFlow SavedModel directory, serving_default signature"),
        ),
        description="keras.Model on the TensorFlow backend (NHWC; data_format='channels_first' for NCHW)",
    ))
