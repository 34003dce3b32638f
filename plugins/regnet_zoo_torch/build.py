"""The builder and runner hooks of the torch framework: ``BuildRequest`` -> ``torch.nn.Module``, numpy in/out."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from timm.models import FeatureGraphNet

from regnet_zoo.frameworks import BuildRequest
from regnet_zoo.freezing import refuse_frozen_random_bn
from regnet_zoo.loading import state_to_load
from regnet_zoo.pretrained_cfg import pretrained_cfg

from . import detection
from .fast import PRECISIONS, optimize_for_inference
from .model import RegNet, RegNetFeatures
from .weights import load_canonical

GLOBAL_POOLS = ("avg", "max", "avgmax", "catavgmax", "")
FEATURE_CLASSES = (None, "list", "getter", "fx")
_DTYPES = {"float32": torch.float32, "float": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "half": torch.float16}


@dataclass(frozen=True)
class Options:
    """The keyword arguments ``rz.create(..., framework="torch", **options)`` accepts."""

    device: Any = None  # torch.device or str; "meta" builds shapes only (no storage), e.g. for regnety_10b
    dtype: Any = None  # parameter dtype: torch.float32 (default) / torch.bfloat16 / torch.float16 or their names
    drop_rate: float = 0.0  # dropout before the classifier (timm)
    drop_path_rate: float = 0.0  # stochastic depth, linearly increasing per stage (timm)
    frozen_stages: int = -1  # -1 none, 0 stem, k stem + s1..sk: no gradient, BN in inference mode
    norm_eval: bool = False  # every BN in inference mode, also under .train()
    norm: str = "bn"  # "bn" | "frozen_bn" | "sync_bn"
    force: bool = False  # allow frozen_bn / norm_eval / frozen_stages without pretrained weights
    fast: Any = False  # False | True ("fp32") | "bf16": an inference-only optimised model (see fast.py)
    global_pool: str = "avg"  # classifier pooling (timm): "avg" | "max" | "avgmax" | "catavgmax" | "" (none)
    feature_cls: Any = None  # features_only form (timm): None / "list" / "getter": RegNetFeatures; "fx": timm's
    # FeatureGraphNet (torchvision FX extraction of the backbone, state_dict names prefixed "graph_module.")

    @classmethod
    def parse(cls, options: dict[str, Any]) -> "Options":
        names = [f.name for f in fields(cls)]
        unknown = [k for k in options if k not in names]
        if unknown:
            hints = [f"{k!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(k, names, n=1))
                     else repr(k) for k in unknown]
            raise TypeError(f"unknown keyword argument{'s' if len(unknown) > 1 else ''} for framework 'torch': "
                            f"{', '.join(hints)}; accepted: {', '.join(names)}")
        opts = cls(**options)
        opts._validate()
        return opts

    def _validate(self) -> None:
        def check(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(what)

        for name in ("drop_rate", "drop_path_rate"):
            v = getattr(self, name)
            check(isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v < 1.0,
                  f"{name} must be a float in [0, 1), got {v!r}")
        check(isinstance(self.frozen_stages, int) and not isinstance(self.frozen_stages, bool)
              and -1 <= self.frozen_stages <= 4,
              "frozen_stages must be an int: -1 (none), 0 (stem) or 1..4 (stem and s1..sk), "
              f"got {self.frozen_stages!r}")
        for name in ("norm_eval", "force"):
            check(isinstance(getattr(self, name), bool), f"{name} must be a bool, got {getattr(self, name)!r}")
        check(self.norm in detection.NORMS,
              f"norm must be one of {', '.join(map(repr, detection.NORMS))}, got {self.norm!r}")
        check(self.fast is False or self.fast is True or self.fast in PRECISIONS,
              f"fast must be False, True (= 'fp32') or one of {', '.join(map(repr, PRECISIONS))}, got {self.fast!r}")
        check(self.fast is False or self.feature_cls != "fx",
              "fast= builds its own compiled model and cannot be combined with feature_cls='fx'")
        if self.fast is not False and (self.frozen_stages >= 0 or self.norm_eval or self.norm == "sync_bn"):
            raise ValueError("fast= builds an inference-only model (BN folded into the convolutions); frozen_stages, "
                             "norm_eval and norm='sync_bn' are training options and cannot be combined with it")
        check(self.global_pool in GLOBAL_POOLS,
              f"global_pool must be one of {', '.join(map(repr, GLOBAL_POOLS))}, got {self.global_pool!r}")
        check(self.feature_cls in FEATURE_CLASSES,
              f"feature_cls must be one of {', '.join(map(repr, FEATURE_CLASSES))}, got {self.feature_cls!r}")
        self.torch_dtype()
        self.torch_device()

    def check_request(self, request: BuildRequest) -> None:
        """The options that depend on the model kind: pooling needs a pooled model, ``feature_cls`` a backbone."""
        if request.features_only and self.global_pool != "avg":
            raise ValueError(f"global_pool={self.global_pool!r} has no effect with features_only=True (a backbone "
                             f"returns unpooled maps); leave it out")
        if self.global_pool == "" and request.num_classes:
            raise ValueError(f"global_pool='' (no pooling) needs num_classes=0: a classifier needs pooled features, "
                             f"got num_classes={request.num_classes}")
        if self.feature_cls is not None and not request.features_only:
            raise ValueError(f"feature_cls={self.feature_cls!r} selects the form of a backbone and needs "
                             f"features_only=True")

    def torch_dtype(self):
        if self.dtype is None or isinstance(self.dtype, torch.dtype):
            if self.dtype is not None and not self.dtype.is_floating_point:
                raise ValueError(f"dtype must be a floating-point dtype, got {self.dtype}")
            return self.dtype
        if isinstance(self.dtype, str) and self.dtype in _DTYPES:
            return _DTYPES[self.dtype]
        raise ValueError(f"dtype must be a torch floating dtype or one of {', '.join(map(repr, _DTYPES))}, "
                         f"got {self.dtype!r}")

    def torch_device(self):
        if self.device is None:
            return None
        try:
            return torch.device(self.device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device must be a torch.device or a device string such as 'cpu', 'cuda:0' or "
                             f"'meta', got {self.device!r} ({e})") from None


def build(request: BuildRequest) -> nn.Module:
    """The ``builder`` hook: a timm-named RegNet classifier / headless model / feature backbone for ``request``."""
    opts = Options.parse(request.options)
    opts.check_request(request)
    refuse_frozen_random_bn(pretrained=request.weights is not None, force=opts.force,
                            frozen_stages=opts.frozen_stages, norm_eval=opts.norm_eval,
                            frozen_bn=opts.norm == "frozen_bn")
    device, dtype = opts.torch_device(), opts.torch_dtype()
    state = state_to_load(request)
    if state is not None and device is not None and device.type == "meta":
        raise ValueError("device='meta' builds shapes only and cannot hold pretrained weights; build on a real device "
                         "(or build on meta, then model.to_empty(device=...) and load the weights)")
    if request.features_only:
        indices = tuple(range(max(request.out_indices) + 1)) if opts.feature_cls == "fx" else request.out_indices
        model: nn.Module = RegNetFeatures(request.plan, indices, request.in_chans,
                                          drop_path_rate=opts.drop_path_rate, device=device, dtype=dtype)
    else:
        model = RegNet(request.plan, request.num_classes, request.in_chans, global_pool=opts.global_pool,
                       drop_rate=opts.drop_rate, drop_path_rate=opts.drop_path_rate, device=device, dtype=dtype)
    model.variant_name = request.variant.name
    model.weight_tag = request.weight
    if state is not None:
        built = ("stem",) + model.stage_names + ("head",)
        state = {k: v for k, v in state.items() if k.split(".", 1)[0] in built}  # features_only prunes late stages
        load_canonical(model, state, strict=False, origin=request.weights.origin)
    model = detection.convert_norm(model, opts.norm)
    if opts.frozen_stages >= 0:
        detection.freeze_stages(model, opts.frozen_stages)
    if opts.norm_eval:
        detection.lock_norm_eval(model)
    if opts.fast is not False:
        model = optimize_for_inference(model, "fp32" if opts.fast is True else opts.fast)
    elif opts.feature_cls == "fx":  # the maps picked out of the traced graph of a backbone returning all of them
        model = FeatureGraphNet(model, out_indices=request.out_indices)
    model.pretrained_cfg = model.default_cfg = pretrained_cfg(request.variant, request.weight,
                                                              features_only=request.features_only)
    return model


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach()
    return (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).cpu().numpy()


def run(model: nn.Module, x: np.ndarray):
    """The ``runner`` hook: ``model`` in inference mode on float32 NCHW ``x``; numpy logits / pooled features or a
    list of numpy feature maps. The model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        param = next(iter(model.parameters()), None)
        if param is not None:
            xt = xt.to(param.device, param.dtype if param.is_floating_point() else None)
        with torch.inference_mode():
            out = model(xt)
    finally:
        model.train(was_training)
    if isinstance(out, (list, tuple)):
        return [_to_numpy(t) for t in out]
    return _to_numpy(out)


__all__ = ["Options", "build", "run"]
