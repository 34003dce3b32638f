"""TensorFlow contenders: regnet-zoo tf (Keras 3; default, fast, bf16), the Keras peers (kimm, tf_keras
applications), HF TFRegNetForImageClassification (eager, tf.function, and fed channels-last), and the roofline's
dense conv.

Inference calls each model natively on a tensor made once: regnet-zoo in NHWC through the plugin's compiled
inference function (``regnet_zoo_tf.build.inference_function``, the path ``rz`` itself uses), the Keras peers in
NHWC inside ``tf.function``, HF in NCHW (its API; it transposes inside, a cost its users pay too) and, in
``hf-tf-function-nhwc``, its own layers called on NHWC so no row wins by layout alone. A training step is forward
(``training=True``), cross-entropy, ``GradientTape.gradient`` and one plain SGD update of the trainable variables,
in a ``tf.function`` (with the same ``jit_compile`` as that model's inference function) or eagerly for
``hf-tf-eager``.
"""

from __future__ import annotations

import time

from contenders import INFER, REFERENCE_CONV, Unavailable
from prepared import LEARNING_RATE, NUM_CLASSES, Prepared, hf_config, rz_create, seeded_input, seeded_labels

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
    if contender.startswith("rz-") or contender == "kimm":
        import keras

        versions["keras"] = keras.__version__
    elif not contender.startswith("conv-"):
        import tf_keras

        versions["tf_keras"] = tf_keras.__version__
    return versions


# -- how each contender's model and inference call are made (adjust here when the plugin's API changes) ----------

def make_rz_tf(model: str):
    return rz_create(model, "tf")


def make_rz_tf_fast(model: str):
    """The plugin's inference fast path (``fast=True``): a ``FrozenRegNet``, called directly."""
    return rz_create(model, "tf", fast=True)


def make_rz_tf_bf16(model: str):
    """The fast path in bfloat16 (``fast="bf16"``): a ``FrozenRegNet`` with bf16 weights and activations."""
    return rz_create(model, "tf", fast="bf16")


def _keras_app_name(model: str) -> str:
    """regnety_040 -> RegNetY040: the class name kimm and tf_keras.applications share."""
    family, size = model.split("_")[0], model.split("_")[1]
    return f"RegNet{family[-1].upper()}{size}"


def make_kimm(model: str):
    import kimm

    cls = getattr(kimm.models, _keras_app_name(model), None)
    if cls is None:
        raise Unavailable(f"kimm has no {_keras_app_name(model)}")
    return cls(weights=None, input_shape=(None, None, 3), include_preprocessing=False, classes=NUM_CLASSES,
               classifier_activation=None)


def make_tf_keras_app(model: str):
    import tf_keras

    cls = getattr(tf_keras.applications, _keras_app_name(model), None)
    if cls is None:
        raise Unavailable(f"tf_keras.applications has no {_keras_app_name(model)}")
    return cls(weights=None, include_preprocessing=False, classes=NUM_CLASSES, classifier_activation=None)


RZ_MAKERS = {"rz-tf": make_rz_tf, "rz-tf-fast": make_rz_tf_fast, "rz-tf-bf16": make_rz_tf_bf16}
KERAS_PEERS = {"kimm": make_kimm, "tf-keras-app": make_tf_keras_app}


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
    """Export a classifier (``rz_create``'s weights) with ``rz.export`` (verified against the Keras model), time the
    TFLite / LiteRT interpreter on it; the int8 row calibrates on the export's fixed verification images."""
    import tempfile

    import regnet_zoo as rz
    from regnet_zoo.deploy import verification_images
    from regnet_zoo_tf.export import interpreter

    if device != "cpu":
        raise Unavailable("the TFLite interpreter runs on the CPU here")
    t0 = time.perf_counter()
    folder = tempfile.mkdtemp(prefix="rz-tflite-")
    model = rz_create(case.model, "tf")
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


def build_reference(contender: str, device: str) -> Prepared:
    """The roofline's dense 3x3 conv: ``tf.nn.conv2d`` on NHWC inside ``tf.function`` (oneDNN on CPU)."""
    c = REFERENCE_CONV
    dtype = tf.bfloat16 if contender.endswith("-bf16") else tf.float32
    x = tf.cast(tf.random.stateless_normal((c["batch"], c["size"], c["size"], c["channels"]), (0, 1)), dtype)
    w = tf.cast(tf.random.stateless_normal((3, 3, c["channels"], c["channels"]), (0, 2)) * 0.02, dtype)
    conv = tf.function(lambda: tf.nn.conv2d(x, w, 1, "SAME"))

    def step():
        out = conv()
        _sync(device)
        return out

    return Prepared(step=step, create_s=0.0, params=9 * c["channels"] ** 2)


def _hf_nhwc_forward(model):
    """HF's own layers on an NHWC tensor (what ``TFRegNetForImageClassification`` runs after its transpose)."""
    main = model.regnet

    def forward(t, training):
        h = main.embedder.embedder(t)
        h = main.encoder(h, return_dict=False)[0]
        return model.classifier[1](model.classifier[0](main.pooler(h)))

    return forward


def build(contender: str, case, device: str) -> Prepared:
    if contender.startswith("conv-"):
        return build_reference(contender, device)
    if contender in ("rz-tflite", "rz-tflite-int8"):
        return build_tflite(contender, case, device)
    hf = contender.startswith("hf-")
    if hf:
        import transformers  # noqa: F401  (import outside the timed creation)
    elif contender in KERAS_PEERS:
        import kimm  # noqa: F401
        import tf_keras  # noqa: F401
    else:
        import regnet_zoo_tf.build  # noqa: F401
    t0 = time.perf_counter()
    if hf:
        model = make_hf_tf(case.model)
    elif contender in KERAS_PEERS:
        model = KERAS_PEERS[contender](case.model)
    else:
        model = RZ_MAKERS[contender](case.model)
    create_s = time.perf_counter() - t0
    if contender in ("rz-tf-fast", "rz-tf-bf16"):  # weights are graph constants, not variables
        import regnet_zoo as rz

        params = rz.plan(case.model).params(1000)
    else:
        params = int(sum(v.shape.num_elements() if hasattr(v.shape, "num_elements") else _numel(v.shape)
                         for v in model.trainable_variables))
    notes = []

    nchw = hf and contender != "hf-tf-function-nhwc"
    x = tf.constant(seeded_input(case.batch, case.size, "nchw" if nchw else "nhwc"))
    if contender == "hf-tf-function-nhwc":
        forward = _hf_nhwc_forward(model)
    elif hf:
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
        elif contender in ("rz-tf-fast", "rz-tf-bf16"):
            fn = model
        elif contender in ("hf-tf-function", "hf-tf-function-nhwc") or contender in KERAS_PEERS:
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
            for v, g in zip(variables, tape.gradient(loss, variables)):
                v.assign_sub(LEARNING_RATE * g)
            return loss

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
