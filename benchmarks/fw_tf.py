"""TensorFlow contenders: regnet-zoo tf (Keras 3) and HF TFRegNetForImageClassification (eager and tf.function).

Inference calls each model natively on a tensor made once: regnet-zoo in NHWC through the plugin's compiled
inference function (``regnet_zoo_tf.build.inference_function``, the path ``rz`` itself uses), HF in NCHW (its API;
it transposes inside, a cost its users pay too). A training step is forward (``training=True``), cross-entropy and
``GradientTape.gradient`` (gradients returned, so nothing is pruned; no optimiser update), in a ``tf.function``
(with the same ``jit_compile`` as that model's inference function) or eagerly for ``hf-tf-eager``.
"""

from __future__ import annotations

import time

from contenders import INFER, Unavailable
from prepared import Prepared, hf_config, seeded_input, seeded_labels

tf = None


def prepare(threads: int, device: str, contender: str) -> dict:
    global tf
    if contender.startswith("rz-"):
        try:
            import regnet_zoo_tf._tf  # noqa: F401  (the plugin's TF + Keras 3 import: triton first, TF backend)
        except ImportError:
            pass
    import tensorflow

    tf = tensorflow
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    if device == "cuda" and not tf.config.list_physical_devices("GPU"):
        raise Unavailable("TensorFlow sees no GPU (a CPU-only TensorFlow would be compared with CUDA torch)")
    versions = {"tensorflow": tf.__version__}
    if contender.startswith("rz-"):
        import keras

        versions["keras"] = keras.__version__
    else:
        import tf_keras

        versions["tf_keras"] = tf_keras.__version__
    return versions


# -- how each contender's model and inference call are made (adjust here when the plugin's API changes) ----------

def make_rz_tf(model: str):
    import regnet_zoo as rz

    return rz.create(model, framework="tf")


def make_rz_tf_fast(model: str):
    """The plugin's inference fast path (``fast=True``): a ``FrozenRegNet``, called directly."""
    import regnet_zoo as rz

    return rz.create(model, framework="tf", fast=True)


RZ_MAKERS = {"rz-tf": make_rz_tf, "rz-tf-fast": make_rz_tf_fast}


def rz_tf_inference(model):
    """The plugin's compiled inference path; a plain ``tf.function`` over ``model(x, training=False)`` otherwise."""
    try:
        from regnet_zoo_tf.build import inference_function
    except ImportError:
        return tf.function(lambda x: model(x, training=False))
    return inference_function(model)


def make_hf_tf(model: str):
    from transformers import TFRegNetForImageClassification

    m = TFRegNetForImageClassification(hf_config(model))
    m.build_in_name_scope()  # HF TF models create their variables lazily; count that as creation
    return m


def _sync(device: str) -> None:
    if device == "cuda":
        tf.test.experimental.sync_devices()


def build_tflite(contender: str, case, device: str) -> Prepared:
    """Export a random-weight classifier with ``rz.export`` (verified against the Keras model), time the TFLite /
    LiteRT interpreter on it; the int8 row calibrates on the export's fixed verification images."""
    import tempfile

    import regnet_zoo as rz
    from regnet_zoo.deploy import verification_images
    from regnet_zoo_tf.export import interpreter

    if device != "cpu":
        raise Unavailable("the TFLite interpreter runs on the CPU here")
    t0 = time.perf_counter()
    folder = tempfile.mkdtemp(prefix="rz-tflite-")
    model = rz.create(case.model, framework="tf")
    int8 = contender == "rz-tflite-int8"
    extra = dict(precision="int8", representative_data=verification_images((case.size, case.size))) if int8 else {}
    report = rz.export(model, f"{folder}/{case.model}.tflite", "tflite", input_size=case.size, batch=case.batch,
                       **extra)
    runner = interpreter(report.path).get_signature_runner("serving_default")
    create_s = time.perf_counter() - t0
    x = seeded_input(case.batch, case.size, "nhwc")
    step = lambda: runner(images=x)  # noqa: E731
    return Prepared(step=step, create_s=create_s, params=rz.plan(case.model).params(1000),
                    notes=[f"export cosine {report.outputs[0].cosine:.4f}"])


def build(contender: str, case, device: str) -> Prepared:
    if contender in ("rz-tflite", "rz-tflite-int8"):
        return build_tflite(contender, case, device)
    hf = contender.startswith("hf-")
    if hf:
        import transformers  # noqa: F401  (import outside the timed creation)
    else:
        import regnet_zoo_tf.build  # noqa: F401
    t0 = time.perf_counter()
    model = make_hf_tf(case.model) if hf else RZ_MAKERS[contender](case.model)
    create_s = time.perf_counter() - t0
    if contender == "rz-tf-fast":  # weights are graph constants, not variables
        import regnet_zoo as rz

        params = rz.plan(case.model).params(1000)
    else:
        params = int(sum(v.shape.num_elements() if hasattr(v.shape, "num_elements") else _numel(v.shape)
                         for v in model.trainable_variables))
    notes = []

    x = tf.constant(seeded_input(case.batch, case.size, "nchw" if hf else "nhwc"))
    if hf:
        def forward(t, training):
            return model(t, training=training).logits
    else:
        def forward(t, training):
            return model(t, training=training)
    jit = bool(getattr(model, "jit_compile", False))
    if jit:
        notes.append("jit_compile=True")

    if case.mode == INFER:
        if contender == "rz-tf":
            fn = rz_tf_inference(model)
        elif contender == "rz-tf-fast":
            fn = model
        elif contender == "hf-tf-function":
            fn = tf.function(lambda t: forward(t, False))
        else:
            fn = lambda t: forward(t, False)  # noqa: E731  (eager)

        def step():
            out = fn(x)
            _sync(device)
            return out
    else:
        y = tf.constant(seeded_labels(case.batch))
        variables = model.trainable_variables

        def train_step(t, labels):
            with tf.GradientTape() as tape:
                logits = forward(t, True)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            return loss, tape.gradient(loss, variables)

        fn = train_step if contender == "hf-tf-eager" else tf.function(train_step, jit_compile=jit)

        def step():
            out = fn(x, y)
            _sync(device)
            return out

    return Prepared(step=step, create_s=create_s, params=params, notes=notes)


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
