"""The ``tf`` framework hooks: ``build(request)`` and ``run(model, x)`` (see ``regnet_zoo.frameworks.Framework``)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from regnet_zoo.frameworks import BuildRequest
from regnet_zoo.loading import state_to_load
from regnet_zoo.pretrained_cfg import pretrained_cfg

from ._tf import keras, tf
from .backbone import RegNetBackbone, all_batch_norms
from .classifier import RegNetClassifier
from .fast import FrozenRegNet, check_freezable, optimize_for_inference
from .layers import GROUPED_CONV_IMPLS
from .weights import load_canonical


def check_options(options: dict[str, Any], shared) -> None:
    """Validate the tf framework's own option values (the shared ones were checked by the host)."""
    problems = []
    if options["sync_bn"] is not None and not isinstance(options["sync_bn"], bool):
        problems.append(f"sync_bn must be None, True or False, got {options['sync_bn']!r}")
    if options["grouped_conv"] not in GROUPED_CONV_IMPLS:
        problems.append(f"grouped_conv must be one of {GROUPED_CONV_IMPLS}, got {options['grouped_conv']!r}")
    jit = options["jit_compile"]
    if not (isinstance(jit, bool) or jit == "auto"):
        problems.append(f"jit_compile must be 'auto', True or False, got {jit!r}")
    size = options["image_size"]
    if size is not None:
        pair = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (tuple, list)) else ()
        if len(pair) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 32 for s in pair):
            problems.append(f"image_size must be an int or (height, width) of ints >= 32, got {size!r}")
    if options["name"] is not None and not isinstance(options["name"], str):
        problems.append(f"name must be a string, got {options['name']!r}")
    if shared.fast and (options["sync_bn"] or shared.dtype is not None):
        problems.append("fast=True / 'bf16' builds an inference-only float32 / bfloat16 model (BN folded into the "
                        "convolutions); sync_bn and dtype are training / precision options and cannot be combined "
                        "with it")
    if problems:
        raise ValueError("invalid option" + ("s" if len(problems) > 1 else "") + " for framework 'tf':\n  " +
                         "\n  ".join(problems))


def _sync_bn(requested: bool | None) -> bool:
    if requested is not None:
        return requested
    return tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1


def resolve_jit(jit_compile: Any) -> bool:
    """``"auto"``: XLA only when an accelerator is present. On CPU (TF 2.21, 2 cores, 224x224) XLA ran
    regnety_040 and regnetx_004 at 0.4-0.8x the speed of the plain graph (batch 1 and 8), whose grouped convs and fused
    conv + BN + ReLU run in oneDNN."""
    if jit_compile == "auto":
        return any(d.device_type != "CPU" for d in tf.config.list_physical_devices())
    return bool(jit_compile)


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(request: BuildRequest) -> None:
    """Refuse, with the numbers, a model whose float32 weights alone exceed the machine's physical memory (Keras
    has no shapes-only build; the OOM killer would otherwise end the process without a message). Only what can
    never fit is refused: free memory varies with other processes, so it is not a reason to refuse."""
    num_classes = 0 if request.features_only else request.num_classes
    needed = request.plan.params(num_classes, request.in_chans) * 4
    total = _physical_memory()
    if total is not None and needed > total:
        raise MemoryError(f"{request.variant.name} has {needed / 4e9:.2f}B parameters ({needed / 1e9:.1f} GB in "
                          f"float32) but this machine has {total / 1e9:.1f} GB of memory; Keras allocates every "
                          f"weight when it builds. Use a machine with more memory, or the torch framework "
                          f"(device='meta') to inspect it without weights.")


def build(request: BuildRequest) -> keras.Model:
    """The ``tf`` builder hook: a ``RegNetClassifier`` or, for ``features_only``, a ``RegNetBackbone``."""
    opts, shared = request.options, request.shared
    check_options(opts, shared)
    check_memory(request)
    precision = "fp32" if shared.fast is True else shared.fast  # False, "fp32" or "bf16"
    if precision:
        check_freezable(request.plan, 0 if request.features_only else request.num_classes, request.in_chans,
                        precision)
    size = opts["image_size"]
    h, w = (size, size) if isinstance(size, int) else (tuple(size) if size is not None else (None, None))
    c = request.in_chans
    data_format = shared.data_format or "channels_last"
    image_shape = (c, h, w) if data_format == "channels_first" else (h, w, c)
    name = opts["name"] or request.variant.name
    backbone = RegNetBackbone.from_plan(
        request.plan,
        out_indices=request.out_indices if request.features_only else None,
        image_shape=image_shape,
        data_format=data_format,
        frozen_stages=shared.frozen_stages,
        norm_eval=shared.norm_eval,
        sync_bn=shared.norm == "sync_bn" or _sync_bn(opts["sync_bn"]),
        grouped_conv=opts["grouped_conv"],
        dtype=shared.dtype,
        drop_path_rate=shared.drop_path_rate,
        name=name if request.features_only else f"{name}_backbone",
    )
    model = backbone if request.features_only else RegNetClassifier(
        backbone, request.num_classes, drop_rate=shared.drop_rate, global_pool=shared.global_pool, name=name)
    model.jit_compile = resolve_jit(opts["jit_compile"])
    if shared.norm == "frozen_bn":  # timm's freeze_batch_norm_2d: a Keras BN with trainable=False normalises with its
        for layer in all_batch_norms(backbone):  # running statistics in every mode, scale and offset constant
            layer.trainable = False
    state = state_to_load(request)
    if state is not None:
        load_canonical(model, state, strict=False, origin=request.weights.origin)
    model = optimize_for_inference(model, precision) if precision else model
    # timm's data / head config of the weight tag; set untracked, so Keras does not wrap the dict
    object.__setattr__(model, "pretrained_cfg", pretrained_cfg(request.variant, request.weight,
                                                               features_only=request.features_only))
    return model


def inference_function(model: keras.Model):
    """A cached ``tf.function`` running ``model`` in inference mode on any batch and spatial size.

    It is traced once per model (the signature leaves batch, height and width unknown) and uses XLA when the
    model's ``jit_compile`` is on.
    """
    fn = getattr(model, "_regnet_zoo_inference", None)
    if fn is None:
        spec = tf.TensorSpec(model.inputs[0].shape if isinstance(model, RegNetBackbone) else
                             model.backbone.inputs[0].shape, tf.float32, name="images")
        fn = tf.function(lambda x: model(x, training=False), input_signature=[spec],
                         jit_compile=bool(getattr(model, "jit_compile", False)), reduce_retracing=True)
        object.__setattr__(model, "_regnet_zoo_inference", fn)
    return fn


def run(model: keras.Model, x: np.ndarray, labels: np.ndarray | None = None):
    """The ``tf`` runner hook: NCHW float32 numpy in; logits (N, K), or NCHW maps for ``features_only``, out; with
    ``labels``, the loss (a float) in inference mode."""
    x = np.asarray(x)
    channels_last = getattr(model, "data_format", "channels_last") == "channels_last"
    if channels_last and x.ndim == 4:
        x = np.transpose(x, (0, 2, 3, 1))
    if labels is not None:
        return float(model(x, labels=np.asarray(labels), training=False).loss)
    if isinstance(model, FrozenRegNet):
        out = model(x)
    else:
        (model if isinstance(model, RegNetBackbone) else model.backbone).check_input(x)
        out = inference_function(model)(tf.constant(x, tf.float32))
    if isinstance(out, (list, tuple)):
        maps = [np.asarray(m) for m in out]
        return [np.transpose(m, (0, 3, 1, 2)) for m in maps] if channels_last else maps
    out = np.asarray(out)
    if out.ndim == 4 and channels_last:
        out = np.transpose(out, (0, 3, 1, 2))
    return out
