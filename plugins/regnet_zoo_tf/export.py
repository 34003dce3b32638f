"""Export a regnet_zoo_tf model for deployment: a TensorFlow SavedModel for serving (TF Serving,
``tf.saved_model.load``) and a TFLite / LiteRT flatbuffer, plus their ``regnet_zoo.deploy`` writers.

The ``serve`` endpoint (also the ``serving_default`` signature) takes a float32 image batch in the model's layout
with any batch size, height and width (>= 32) and runs in inference mode. It returns a dict:

* classifier: ``{"logits": (N, K)}``, or ``{"pooler_output": (N, C)}`` for ``num_classes=0``;
* backbone: one entry per pyramid level, e.g. ``{"P2": ..., "P5": ...}``, in the model's layout.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from regnet_zoo.deploy import Artefact, ExportRequest, check_capacity, get_format

from ._tf import keras, tf
from .backbone import RegNetBackbone
from .classifier import RegNetClassifier
from .fast import FrozenRegNet, optimize_for_inference

# TFLite ops a grouped conv decomposes into when the converter cannot keep it as one CONV_2D (TF < 2.9)
SPLIT_OPS = ("SPLIT", "SPLIT_V", "CONCATENATION")


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


def _check_model(model) -> None:
    if isinstance(model, FrozenRegNet):
        return
    if not isinstance(model, (RegNetClassifier, RegNetBackbone)):
        raise TypeError(f"this format exports a TensorFlow model (rz.create(name, 'tf')); got {type(model).__name__}")
    backbone = model if isinstance(model, RegNetBackbone) else model.backbone
    used = [f"{k}={v!r}" for k, v, off in (("frozen_stages", backbone.frozen_stages, -1),
                                          ("norm_eval", backbone.norm_eval, False),
                                          ("sync_bn", backbone.sync_bn, False)) if v != off]
    if used:
        raise ValueError(f"{', '.join(used)}: training-only option{'s' if len(used) > 1 else ''}; an export is an "
                         f"inference graph. Export a model built without {'them' if len(used) > 1 else 'it'}: the "
                         f"weights are the same")


def _output_names(model) -> tuple[str, ...]:
    if isinstance(model, FrozenRegNet):
        if model.out_indices is not None:
            return tuple(f.level for f in model.feature_info)
        return ("logits",) if model.num_classes else ("pooler_output",)
    if isinstance(model, RegNetBackbone):
        return tuple(f.level for f in model.feature_info)
    return ("logits",) if model.num_classes else ("pooler_output",)


def _layout(model) -> tuple[str, int]:
    if isinstance(model, FrozenRegNet):
        return model.data_format, model.in_chans
    backbone = model if isinstance(model, RegNetBackbone) else model.backbone
    return backbone.data_format, backbone.in_chans


def _to_layout(x: np.ndarray, data_format: str) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x if data_format == "channels_first" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def _from_layout(out: dict, names: tuple[str, ...], data_format: str) -> list[np.ndarray]:
    arrays = [np.asarray(out[n]) for n in names]
    if data_format == "channels_first":
        return arrays
    return [a.transpose(0, 3, 1, 2) if a.ndim == 4 else a for a in arrays]


def write_saved_model(model, path: Path, request: ExportRequest) -> Artefact:
    """The ``saved_model`` writer: ``export_saved_model`` (any batch and spatial size), reloaded and served."""
    _check_model(model)
    if isinstance(model, FrozenRegNet):
        tf.saved_model.save(model, str(path), signatures=model.serve)
    else:
        export_saved_model(model, path)
    names, (data_format, in_chans) = _output_names(model), _layout(model)
    if isinstance(model, FrozenRegNet):
        loaded = tf.saved_model.load(str(path)).signatures["serving_default"]
        serve = lambda x: dict(zip(names, _flat(loaded(images=tf.constant(x)))))  # noqa: E731
    else:
        served = tf.saved_model.load(str(path))
        serve = lambda x: served.serve(tf.constant(x))  # noqa: E731
    return Artefact(run=lambda x: _from_layout(serve(_to_layout(x, data_format)), names, data_format),
                    output_names=names, in_chans=in_chans,
                    notes={"runtime": f"tensorflow {tf.__version__} (tf.saved_model.load)",
                           "signature": "serving_default: images, any batch and spatial size"})


def _flat(out: dict) -> list:
    """A ``tf.saved_model.save`` signature names list outputs ``output_0``..; in order."""
    return [out[k] for k in sorted(out, key=lambda k: int(k.rsplit("_", 1)[-1]) if k[-1].isdigit() else 0)]


def interpreter(path: str | os.PathLike):
    """The LiteRT interpreter (``ai_edge_litert``) when installed, else TensorFlow's ``tf.lite.Interpreter``."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice in favour of LiteRT
        return Interpreter(model_path=str(path))


def tflite_ops(interp) -> dict[str, int]:
    """Operator name -> count in a loaded TFLite model."""
    counts: dict[str, int] = {}
    for op in interp._get_ops_details():
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return counts


def _converter(frozen: FrozenRegNet, request: ExportRequest, names: tuple[str, ...]):
    h, w = request.input_size
    c = frozen.in_chans
    shape = (request.batch, c, h, w) if frozen.data_format == "channels_first" else (request.batch, h, w, c)

    def serve(images):
        out = frozen._graph(images, fused_add=False)
        return dict(zip(names, out if isinstance(out, (list, tuple)) else [out]))

    fn = tf.function(serve, input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], frozen)
    if request.precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif request.precision == "int8_dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif request.precision == "int8":
        data = _to_layout(request.representative, frozen.data_format)
        step = request.batch or 1  # a fixed-batch signature takes only batches of that size
        if len(data) < step:
            data = np.concatenate([data] * -(-step // len(data)))

        def representative():
            for i in range(0, len(data) - step + 1, step):
                yield {"images": data[i:i + step]}

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]  # float input / output
    return converter


def write_tflite(model, path: Path, request: ExportRequest) -> Artefact:
    """The ``tflite`` writer: BN folded (``FrozenRegNet``), grouped convs kept as native grouped ``CONV_2D``
    (checked: no split / concat), quantized as ``request.precision`` asks, run in the LiteRT / TFLite interpreter."""
    _check_model(model)
    if isinstance(model, FrozenRegNet) and model.precision != "fp32":
        raise ValueError(f"a fast={model.precision!r} model computes in bfloat16, which TFLite does not run; export "
                         f"the Keras model (fast=False) or a fast=True one, and choose the TFLite precision with "
                         f"precision= (fp32, fp16, int8_dynamic, int8)")
    plan = model.plan if isinstance(model, FrozenRegNet) else \
        (model if isinstance(model, RegNetBackbone) else model.backbone).plan
    names = _output_names(model)
    if not isinstance(model, FrozenRegNet):
        num_classes = 0 if isinstance(model, RegNetBackbone) else model.num_classes
        check_capacity(get_format("tflite")[1], plan.params(num_classes, _layout(model)[1]) * 4, plan.name)
        model = optimize_for_inference(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # int8 calibration runs tf.lite.Interpreter, which warns it is deprecated
        flatbuffer = _converter(model, request, names).convert()
    path.write_bytes(flatbuffer)
    interp = interpreter(path)
    ops = tflite_ops(interp)
    grouped = any(s.groups > 1 for s in plan.stages)
    split = {k: v for k, v in ops.items() if k in SPLIT_OPS}
    if grouped and split:
        raise RuntimeError(f"the TFLite converter decomposed the grouped convolutions ({split}); this TensorFlow "
                           f"({tf.__version__}) is too old for native grouped CONV_2D (needs >= 2.9)")
    runner = interp.get_signature_runner("serving_default")
    data_format = model.data_format
    return Artefact(run=lambda x: _from_layout(runner(images=_to_layout(x, data_format)), names, data_format),
                    output_names=names, in_chans=model.in_chans,
                    notes={"runtime": f"{type(interp).__module__}.{type(interp).__name__}",
                           "ops": ", ".join(f"{k} x{v}" for k, v in sorted(ops.items())),
                           "grouped convolutions": "native CONV_2D (no split / concat)" if grouped else "none"})
