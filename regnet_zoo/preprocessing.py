"""Data configuration per weight tag and the matching image preprocessing (Pillow + numpy, no framework).

``data_config("regnety_040.ra3_in1k")`` gives timm's eval transform settings for that tag; ``preprocess`` applies
them: resize the shorter side to ``input_size / crop_pct`` with the tag's interpolation, centre-crop
``input_size``, scale to [0, 1], normalise by mean/std, and stack into a float32 batch in either layout.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .errors import describe
from .variant import IMAGENET_MEAN, IMAGENET_STD

DEFAULT_CONFIG = {"input_size": 224, "crop_pct": 0.875, "interpolation": "bicubic", "mean": IMAGENET_MEAN,
                  "std": IMAGENET_STD}
SAMPLE_IMAGE = Path(__file__).parent / "data" / "sample.png"
LAYOUTS = ("channels_first", "channels_last")


def data_config(name: Any, *, test: bool = False) -> dict[str, Any]:
    """Eval preprocessing of ``name`` (``name.tag``; a bare name uses its default tag, else ImageNet defaults), or of
    a model: its ``pretrained_cfg`` (timm's) when it has one, else the weight tag ``rz.create`` built it for.

    ``test=True`` uses the tag's larger test-time size and crop when it has one (timm's ``test_input_size``).
    """
    from .api import get_variant, resolve

    if isinstance(name, str):
        res = resolve(name)
        return _tag_config(res.variant, res.tag or res.variant.default_tag, test)
    cfg = getattr(name, "pretrained_cfg", None)
    if isinstance(cfg, Mapping) and "input_size" in cfg:
        return _pretrained_cfg_config(cfg, test)
    variant_name = getattr(name, "variant_name", None)
    if not isinstance(variant_name, str):
        raise TypeError(f"data_config takes a variant name ('regnety_040', 'regnety_040.ra3_in1k') or a model built "
                        f"by rz.create, got {describe(name)}")
    variant = get_variant(variant_name)
    weight = getattr(name, "weight_tag", None)
    tag = weight if isinstance(weight, str) else getattr(weight, "tag", None)
    return _tag_config(variant, tag if tag in variant.weights else variant.default_tag, test)


def _tag_config(variant, tag: str | None, test: bool) -> dict[str, Any]:
    if tag is None:
        return dict(DEFAULT_CONFIG)
    w = variant.weights[tag]
    size, crop = w.input_size, w.crop_pct
    if test and w.test_input_size:
        size, crop = w.test_input_size, w.test_crop_pct or crop
    return {"input_size": size, "crop_pct": crop, "interpolation": w.interpolation, "mean": w.mean, "std": w.std}


def _pretrained_cfg_config(cfg: Mapping[str, Any], test: bool) -> dict[str, Any]:
    """The same keys from timm's ``pretrained_cfg`` (sizes there are ``(channels, height, width)``)."""
    def side(size: Any) -> int:
        return int(size[-1]) if isinstance(size, (tuple, list)) else int(size)

    size, crop = side(cfg["input_size"]), cfg.get("crop_pct", DEFAULT_CONFIG["crop_pct"])
    if test and cfg.get("test_input_size"):
        size, crop = side(cfg["test_input_size"]), cfg.get("test_crop_pct") or crop
    return {"input_size": size, "crop_pct": crop,
            "interpolation": cfg.get("interpolation", DEFAULT_CONFIG["interpolation"]),
            "mean": tuple(cfg.get("mean", IMAGENET_MEAN)), "std": tuple(cfg.get("std", IMAGENET_STD))}


def _resample(name: str):
    from PIL import Image

    return {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST,
            "lanczos": Image.LANCZOS}[name]


def preprocess(images: Any | Iterable[Any], config: dict[str, Any] | None = None,
               data_format: str = "channels_first") -> np.ndarray:
    """Images (paths or PIL images; one or a list) -> float32 batch (N, 3, S, S) or (N, S, S, 3)."""
    from PIL import Image

    if data_format not in LAYOUTS:
        raise ValueError(f"data_format must be one of {', '.join(LAYOUTS)}, got {describe(data_format)}")
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    if isinstance(images, (str, os.PathLike, Image.Image)):
        images = [images]
    size = int(cfg["input_size"])
    scale = int(math.floor(size / float(cfg["crop_pct"])))
    mean = np.asarray(cfg["mean"], np.float32)
    std = np.asarray(cfg["std"], np.float32)
    batch = []
    for item in images:
        img = item if isinstance(item, Image.Image) else _open(item)
        img = img.convert("RGB")
        w, h = img.size
        if w <= h:
            new_w, new_h = scale, max(1, int(round(h * scale / w)))
        else:
            new_w, new_h = max(1, int(round(w * scale / h))), scale
        img = img.resize((new_w, new_h), _resample(cfg["interpolation"]))
        left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
        img = img.crop((left, top, left + size, top + size))
        arr = (np.asarray(img, np.float32) / 255.0 - mean) / std
        batch.append(arr)
    if not batch:
        raise ValueError("preprocess needs at least one image")
    out = np.stack(batch).astype(np.float32)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)) if data_format == "channels_first" else out


def _open(path: str | os.PathLike):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"image {str(path)!r} does not exist") from None
    except UnidentifiedImageError:
        raise ValueError(f"{str(path)!r} is not an image Pillow can read") from None
