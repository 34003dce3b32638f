"""The ``tf`` framework hooks: ``build(request)`` and ``run(model, x)`` (see ``regnet_zoo.frameworks.Framework``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from regnet_zoo.frameworks import BuildRequest
from regnet_zoo.freezing import refuse_frozen_random_bn
from regnet_zoo.loading import state_to_load
from regnet_zoo.pretrained_cfg import pretrained_cfg

from ._tf import keras, tf
from .backbone import DATA_FORMATS, RegNetBackbone
from .classifier import RegNetClassifier
from .fast import FrozenRegNet, check_freezable, optimize_for_inference
from .layers import GROUPED_CONV_IMPLS
from .weights import load_canonical


@dataclass(frozen=True)
class Options:
    """Keyword arguments ``rz.create(..., framework="tf", **options)`` accepts, with their defaults.

    * ``data_format``: ``"channels_last"`` (NHWC, native) or ``"channels_first"`` (takes and returns NCHW like HF's
      ``TFRegNetModel``; computed in NHWC inside).
    * ``frozen_stages``: -1 none, 0 stem, k stem + s1..sk (not trainable, BN in inference mode).
    * ``norm_eval``: every BN in inference mode while training.
    * ``force``: allow ``frozen_stages`` / ``norm_eval`` without pretrained weights (refused otherwise: a frozen
      random BN is a bug).
    * ``sync_bn``: synchronise BN statistics across ``tf.distribute`` replicas; ``None`` = on when built inside a
      strategy scope with more than one replica.
    * ``grouped_conv``: ``"auto"`` / ``"grouped"`` / ``"split"``: how grouped convs run (same weights, same result).
    * ``jit_compile``: XLA for the compiled inference path and ``predict``: ``"auto"`` (off on CPU, where it was
      measured slower, on for GPU/TPU), ``True`` or ``False``.
    * ``image_size``: fix the input height and width (int or (h, w)); default ``None`` accepts any size >= 32.
    * ``dtype``: a Keras dtype policy name, e.g. ``"mixed_bfloat16"`` (BN statistics stay float32).
    * ``name``: model name (default: the variant name).
    * ``fast``: ``True`` returns an inference-only ``FrozenRegNet`` (BN folded, weights frozen into the graph; see
      ``fast.py``) instead of the Keras model.
    """

    data_format: str = "channels_last"
    frozen_stages: int = -1
    norm_eval: bool = False
    force: bool = False
    sync_bn: bool | None = None
    grouped_conv: str = "auto"
    jit_compile: Any = "auto"
    image_size: Any = None
    dtype: Any = None
    name: str | None = None
    fast: bool = False


OPTION_NAMES = tuple(f.name for f in fields(Options))


def parse_options(options: dict[str, Any], num_stages: int = 4) -> Options:
    """Validate framework kwargs: unknown names are a ``TypeError``, bad values a ``ValueError``."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(f"unknown keyword argument{'s' if len(unknown) > 1 else ''} for framework 'tf': "
                        f"{', '.join(unknown)}; accepted: {', '.join(OPTION_NAMES)}")
    opts = Options(**options)
    problems = []
    if opts.data_format not in DATA_FORMATS:
        problems.append(f"data_format must be one of {DATA_FORMATS}, got {opts.data_format!r}")
    fs = opts.frozen_stages
    if isinstance(fs, bool) or not isinstance(fs, int) or not -1 <= fs <= num_stages:
        problems.append(f"frozen_stages must be an int in -1..{num_stages} (-1 none, 0 stem, k = stem + s1..sk), "
                        f"got {fs!r}")
    for flag in ("norm_eval", "force", "fast"):
        if not isinstance(getattr(opts, flag), bool):
            problems.append(f"{flag} must be True or False, got {getattr(opts, flag)!r}")
    if opts.sync_bn is not None and not isinstance(opts.sync_bn, bool):
        problems.append(f"sync_bn must be None, True or False, got {opts.sync_bn!r}")
    if opts.grouped_conv not in GROUPED_CONV_IMPLS:
        problems.append(f"grouped_conv must be one of {GROUPED_CONV_IMPLS}, got {opts.grouped_conv!r}")
    if not (isinstance(opts.jit_compile, bool) or opts.jit_compile == "auto"):
        problems.append(f"jit_compile must be 'auto', True or False, got {opts.jit_compile!r}")
    if opts.image_size is not None:
        size = opts.image_size
        pair = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (tuple, list)) else ()
        if len(pair) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 32 for s in pair):
            problems.append(f"image_size must be an int or (height, width) of ints >= 32, got {size!r}")
    if opts.name is not None and not isinstance(opts.name, str):
        problems.append(f"name must be a string, got {opts.name!r}")
    if opts.fast is True and (opts.frozen_stages >= 0 or opts.norm_eval or opts.sync_bn or opts.dtype is not None):
        problems.append("fast=True builds an inference-only float32 model (BN folded into the convolutions); "
                        "frozen_stages, norm_eval, sync_bn and dtype are training / precision options and cannot be "
                        "combined with it")
    if problems:
        raise ValueError("invalid option" + ("s" if len(problems) > 1 else "") + " for framework 'tf':\n  " +
                         "\n  ".join(problems))
    return opts


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
    opts = parse_options(dict(request.options), len(request.plan.stages))
    check_memory(request)
    if opts.fast:
        check_freezable(request.plan, 0 if request.features_only else request.num_classes, request.in_chans)
    refuse_frozen_random_bn(pretrained=request.weights is not None, force=opts.force,
                            frozen_stages=opts.frozen_stages, norm_eval=opts.norm_eval)
    size = opts.image_size
    h, w = (size, size) if isinstance(size, int) else (tuple(size) if size is not None else (None, None))
    c = request.in_chans
    image_shape = (c, h, w) if opts.data_format == "channels_first" else (h, w, c)
    name = opts.name or request.variant.name
    backbone = RegNetBackbone.from_plan(
        request.plan,
        out_indices=request.out_indices if request.features_only else None,
        image_shape=image_shape,
        data_format=opts.data_format,
        frozen_stages=opts.frozen_stages,
        norm_eval=opts.norm_eval,
        sync_bn=_sync_bn(opts.sync_bn),
        grouped_conv=opts.grouped_conv,
        dtype=opts.dtype,
        name=name if request.features_only else f"{name}_backbone",
    )
    model = backbone if request.features_only else RegNetClassifier(backbone, request.num_classes, name=name)
    model.jit_compile = resolve_jit(opts.jit_compile)
    state = state_to_load(request)
    if state is not None:
        load_canonical(model, state, strict=False, origin=request.weights.origin)
    model = optimize_for_inference(model) if opts.fast else model
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


def run(model: keras.Model, x: np.ndarray):
    """The ``tf`` runner hook: NCHW float32 numpy in; logits (N, K), or NCHW maps for ``features_only``, out."""
    x = np.asarray(x, dtype=np.float32)
    channels_last = getattr(model, "data_format", "channels_last") == "channels_last"
    if channels_last and x.ndim == 4:
        x = np.transpose(x, (0, 2, 3, 1))
    if isinstance(model, FrozenRegNet):
        out = model(x)
    else:
        (model if isinstance(model, RegNetBackbone) else model.backbone).check_input(x)
        out = inference_function(model)(tf.constant(x))
    if isinstance(out, (list, tuple)):
        maps = [np.asarray(m) for m in out]
        return [np.transpose(m, (0, 3, 1, 2)) for m in maps] if channels_last else maps
    out = np.asarray(out)
    if out.ndim == 4 and channels_last:
        out = np.transpose(out, (0, 3, 1, 2))
    return out
