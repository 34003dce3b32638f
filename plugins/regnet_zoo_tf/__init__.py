"""regnet-zoo plugin: RegNet X/Y as Keras 3 models on TensorFlow. Registers only; keras is imported on first build."""

from regnet_zoo import Framework, hookimpl


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
        description="keras.Model on the TensorFlow backend (NHWC; data_format='channels_first' for NCHW)",
    ))
