"""The builder and runner hooks of the torch framework: ``BuildRequest`` -> ``torch.nn.Module``, numpy in/out."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from timm.models import FeatureGraphNet

from regnet_zoo.frameworks import BuildRequest
from regnet_zoo.loading import state_to_load
from regnet_zoo.pretrained_cfg import pretrained_cfg

from . import detection
from .fast import optimize_for_inference
from .model import RegNet, RegNetFeatures
from .weights import load_canonical

FEATURE_CLASSES = (None, "list", "getter", "fx")
_DTYPES = {"float32": torch.float32, "float": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "half": torch.float16}


def torch_dtype(dtype):
    """The parameter dtype: None (float32), a floating ``torch.dtype`` or one of ``_DTYPES``' names."""
    if dtype is None or isinstance(dtype, torch.dtype):
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        return dtype
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(f"dtype must be a torch floating dtype or one of {', '.join(map(repr, _DTYPES))}, got {dtype!r}")


def torch_device(device, abstract: bool):
    if abstract:
        if device is not None and torch.device(device).type != "meta":
            raise ValueError(f"abstract=True builds on device='meta'; got device={device!r} as well")
        return torch.device("meta")
    if device is None:
        return None
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be a torch.device or a device string such as 'cpu', 'cuda:0' or "
                         f"'meta', got {device!r} ({e})") from None


def check_request(request: BuildRequest, feature_cls) -> None:
    """The torch options that depend on the model kind: ``feature_cls`` needs a backbone."""
    if feature_cls not in FEATURE_CLASSES:
        raise ValueError(f"feature_cls must be one of {', '.join(map(repr, FEATURE_CLASSES))}, got {feature_cls!r}")
    if request.shared.fast is not False and feature_cls == "fx":
        raise ValueError("fast= builds its own compiled model and cannot be combined with feature_cls='fx'")
    if feature_cls is not None and not request.features_only:
        raise ValueError(f"feature_cls={feature_cls!r} selects the form of a backbone and needs features_only=True")


def build(request: BuildRequest) -> nn.Module:
    """The ``builder`` hook: a timm-named RegNet classifier / headless model / feature backbone for ``request``."""
    opts = request.shared
    device, dtype = torch_device(request.options["device"], opts.abstract), torch_dtype(opts.dtype)
    global_pool, feature_cls = opts.global_pool, request.options["feature_cls"]
    check_request(request, feature_cls)
    state = state_to_load(request)
    if state is not None and device is not None and device.type == "meta":
        raise ValueError("device='meta' builds shapes only and cannot hold pretrained weights; build on a real device "
                         "(or build on meta, then model.to_empty(device=...) and load the weights)")
    if request.features_only:
        indices = tuple(range(max(request.out_indices) + 1)) if feature_cls == "fx" else request.out_indices
        model: nn.Module = RegNetFeatures(request.plan, indices, request.in_chans,
                                          drop_path_rate=opts.drop_path_rate, device=device, dtype=dtype)
    else:
        model = RegNet(request.plan, request.num_classes, request.in_chans, global_pool=global_pool,
                       drop_rate=opts.drop_rate, drop_path_rate=opts.drop_path_rate, device=device, dtype=dtype)
    model.variant_name = request.variant.name
    model.weight_tag = request.weight
    if state is not None:
        load_canonical(model, state, strict=False, origin=request.weights.origin)
    model = detection.convert_norm(model, opts.norm)
    if opts.frozen_stages >= 0:
        detection.freeze_stages(model, opts.frozen_stages)
    if opts.norm_eval:
        detection.lock_norm_eval(model)
    if opts.fast is not False:
        model = optimize_for_inference(model, "fp32" if opts.fast is True else opts.fast)
    elif feature_cls == "fx":  # the maps picked out of the traced graph of a backbone returning all of them
        model = FeatureGraphNet(model, out_indices=request.out_indices)
    model.pretrained_cfg = model.default_cfg = pretrained_cfg(request.variant, request.weight,
                                                              features_only=request.features_only)
    return model


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach()
    return (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).cpu().numpy()


def run(model: nn.Module, x: np.ndarray, labels: np.ndarray | None = None):
    """The ``runner`` hook: ``model`` in inference mode on float32 NCHW ``x``; numpy logits / pooled features or a
    list of numpy feature maps; with ``labels``, the loss (a float). The train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        xt = torch.from_numpy(np.ascontiguousarray(x))  # dtype as given: the model applies the input contract
        param = next(iter(model.parameters()), None)
        if param is not None:
            xt = xt.to(param.device)
        with torch.inference_mode():
            if labels is not None:
                return float(model(xt, labels=torch.from_numpy(np.asarray(labels)).to(xt.device)).loss)
            out = model(xt)
    finally:
        model.train(was_training)
    if isinstance(out, (list, tuple)):
        return [_to_numpy(t) for t in out]
    return _to_numpy(out)


__all__ = ["build", "run"]
