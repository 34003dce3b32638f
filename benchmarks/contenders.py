"""Who runs: every contender as a record (framework-free), and the baseline each one is compared with.

The code that builds and steps a contender lives in ``fw_torch.py`` / ``fw_tf.py`` / ``fw_flax.py`` (imported only
inside a worker of that family). A family is also the isolation unit for environment variables: a torch worker never
loads TensorFlow or JAX, and so on (transformers is told so through USE_TORCH / USE_TF / USE_FLAX).
"""

from __future__ import annotations

from dataclasses import dataclass

INFER, TRAIN = "infer", "train"

# The roofline reference: one dense 3x3 convolution (stride 1, same padding, no bias) at a RegNet-like width,
# batch x channels x size x size in, the same out, in the layout each framework runs fastest (channels-last).
REFERENCE_CONV = {"batch": 8, "channels": 256, "size": 56}
REFERENCE_MODEL = "dense-conv3x3-256"


class Unavailable(Exception):
    """A contender that cannot run here (not installed, not supported by that library, no such device...).

    It is reported as a table row ``unavailable: <reason>``, not as a crash."""


@dataclass(frozen=True)
class Contender:
    name: str
    family: str  # torch | tf | flax: which fw_<family>.py builds it, and the environment of its worker
    what: str  # one line for the table legend
    baseline: str | None  # the contender this one's ratio is taken against (None = it is a baseline)
    modes: tuple[str, ...] = (INFER, TRAIN)
    blocks: tuple[str, ...] = ("x", "y")  # RegNet block types it can build at all (others: "unavailable")
    quick: tuple[str, ...] = ()  # modes it runs in --quick
    precision: str = "fp32"  # fp32 | bf16: which roofline reference its share is taken of
    reference: bool = False  # a roofline reference (the dense conv of ``REFERENCE_CONV``), not a RegNet


CONTENDERS: tuple[Contender, ...] = (
    # -- the roofline: what the machine does on a dense conv in each framework (the best one is the reference)
    Contender("conv-torch", "torch", "reference: dense 3x3 conv, torch channels_last (oneDNN), fp32", None,
              modes=(INFER,), quick=(INFER,), reference=True),
    Contender("conv-torch-bf16", "torch", "reference: the same conv in torch, bfloat16", None, modes=(INFER,),
              quick=(INFER,), precision="bf16", reference=True),
    Contender("conv-tf", "tf", "reference: the same conv, tf.nn.conv2d NHWC in tf.function, fp32", None,
              modes=(INFER,), quick=(INFER,), reference=True),
    Contender("conv-tf-bf16", "tf", "reference: the same conv in TensorFlow, bfloat16", None, modes=(INFER,),
              quick=(INFER,), precision="bf16", reference=True),
    Contender("conv-jax", "flax", "reference: the same conv, lax.conv_general_dilated NHWC under jax.jit, fp32",
              None, modes=(INFER,), quick=(INFER,), reference=True),
    Contender("conv-jax-bf16", "flax", "reference: the same conv in JAX, bfloat16", None, modes=(INFER,),
              quick=(INFER,), precision="bf16", reference=True),
    # -- PyTorch: baseline timm eager NCHW
    Contender("rz-torch", "torch", "regnet-zoo torch, default eager (inference_mode); training: eager NCHW",
              "timm", quick=(TRAIN,)),
    Contender("rz-torch-cl", "torch", "regnet-zoo torch, channels_last (model and input); the documented CPU "
              "training path", "timm", quick=(TRAIN,)),
    Contender("rz-torch-compile", "torch", "regnet-zoo torch, channels_last, the whole training step (forward, "
              "loss, backward, SGD) under torch.compile", "timm", modes=(TRAIN,)),
    Contender("rz-torch-fast", "torch", "regnet-zoo torch, fast=True (BN folded, channels_last, AOTInductor)",
              "timm", modes=(INFER,), quick=(INFER,)),
    Contender("rz-torch-bf16", "torch", "regnet-zoo torch, fast='bf16' (bfloat16 weights and activations)",
              "rz-torch-fast", modes=(INFER,), quick=(INFER,), precision="bf16"),
    Contender("timm", "torch", "timm.create_model, eager NCHW (inference_mode)", None),
    Contender("timm-cl", "torch", "timm.create_model, eager channels_last", "timm"),
    Contender("hf-pt", "torch", "transformers RegNetForImageClassification (PyTorch) eager", "timm"),
    # -- deployment runtimes, beside the framework they are exported from (rz.export, verified, then timed)
    Contender("rz-onnxruntime", "torch", "rz.export(format='onnx') run in ONNX Runtime (CPU provider)", "rz-torch",
              modes=(INFER,)),
    # -- TensorFlow: baseline HF TFRegNet inside tf.function
    Contender("rz-tf", "tf", "regnet-zoo tf (Keras 3), the plugin's compiled inference function; NHWC",
              "hf-tf-function", quick=(TRAIN,)),
    Contender("rz-tf-fast", "tf", "regnet-zoo tf, fast=True (BN folded, weights frozen into the graph); NHWC",
              "hf-tf-function", modes=(INFER,), quick=(INFER,)),
    Contender("rz-tf-bf16", "tf", "regnet-zoo tf, fast='bf16' (the fast path in bfloat16); NHWC", "rz-tf-fast",
              modes=(INFER,), quick=(INFER,), precision="bf16"),
    Contender("kimm", "tf", "kimm (Keras 3) RegNetX004 / RegNetY040, in tf.function; NHWC", "hf-tf-function",
              modes=(INFER,), quick=(INFER,)),
    Contender("tf-keras-app", "tf", "tf_keras.applications RegNetX004 / RegNetY040, in tf.function; NHWC",
              "hf-tf-function", modes=(INFER,)),
    Contender("rz-tflite", "tf", "rz.export(format='tflite') fp32 run in the TFLite / LiteRT interpreter; NHWC",
              "rz-tf", modes=(INFER,)),
    Contender("rz-tflite-int8", "tf", "rz.export(format='tflite', precision='int8') full integer, calibrated on "
              "the export's fixed images; NHWC", "rz-tf", modes=(INFER,)),
    Contender("hf-tf-eager", "tf", "transformers TFRegNetForImageClassification, eager (NCHW input)",
              "hf-tf-function"),
    Contender("hf-tf-function", "tf", "transformers TFRegNetForImageClassification inside tf.function (NCHW input)",
              None),
    Contender("hf-tf-function-nhwc", "tf", "the same HF TF model fed channels-last: its layers called on NHWC, "
              "skipping its input transpose", "hf-tf-function", modes=(INFER,)),
    # -- Flax: baseline HF FlaxRegNet under jax.jit
    Contender("rz-flax", "flax", "regnet-zoo flax (NNX), model.predict (jitted); NHWC", "hf-flax-jit",
              quick=(INFER, TRAIN)),
    Contender("rz-flax-bf16", "flax", "regnet-zoo flax, dtype='bfloat16' (bf16 compute, float32 parameters), "
              "model.predict", "rz-flax", modes=(INFER,), quick=(INFER,), precision="bf16"),
    Contender("hf-flax-jit", "flax", "transformers FlaxRegNetForImageClassification under jax.jit (NCHW input)",
              None, blocks=("y",)),
)

BY_NAME = {c.name: c for c in CONTENDERS}

# Ratios also reported against these rows of the same case ("ratio to the torch plugin").
TORCH_REFERENCES = ("rz-torch", "rz-torch-fast")

# transformers picks its backends from these; each family sees only its own framework.
FAMILY_ENV = {
    "torch": {"USE_TORCH": "1", "USE_TF": "0", "USE_FLAX": "0"},
    "tf": {"USE_TORCH": "0", "USE_TF": "1", "USE_FLAX": "0", "KERAS_BACKEND": "tensorflow"},
    "flax": {"USE_TORCH": "0", "USE_TF": "0", "USE_FLAX": "1"},
}


def baseline_of(name: str) -> str | None:
    return BY_NAME[name].baseline
