"""The image processor the ``facebook/regnet-*`` repositories configure (transformers' ``ConvNextImageProcessor``),
in Pillow + numpy, with the same output as transformers' own for uint8 / PIL images.

``preprocessor_config.json``: ``size`` (``{"shortest_edge": s}`` or an int), ``crop_pct``, ``resample`` (a PIL
filter number), ``do_resize``, ``do_rescale`` / ``rescale_factor``, ``do_normalize`` / ``image_mean`` /
``image_std``. With ``s < 384`` the shorter side is resized to ``int(s / crop_pct)`` (the longer one truncated to
keep the ratio) and the centre ``s x s`` is cropped; with ``s >= 384`` the image is warped to ``s x s``. Pixels are
then rescaled and normalised, and returned NCHW as ``pixel_values`` in a ``BatchFeature`` (numpy, torch, tf or jax
by ``return_tensors``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..plugins import get_host

PROCESSOR_NAME = "preprocessor_config.json"
IMAGENET_DEFAULT_MEAN = [0.485, 0.456, 0.406]
IMAGENET_DEFAULT_STD = [0.229, 0.224, 0.225]
SUPPORTED_TYPES = ("ConvNextImageProcessor", "ConvNextFeatureExtractor", "RegNetImageProcessor")


class BatchFeature(dict):
    """transformers' ``BatchFeature``: a dict (``model(**inputs)``) with attribute access."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _as_tensors(images: list[np.ndarray], return_tensors: str | None):
    if return_tensors is None:
        return images
    batch = np.stack(images)
    if return_tensors == "np":
        return batch
    backends = {fw.tensor_type: fw for fw in get_host().frameworks.values() if fw.tensor_type}
    if return_tensors in backends:
        return backends[return_tensors].as_tensor(batch)
    raise ValueError(f"return_tensors must be one of {', '.join(['np', *backends])} or None, got "
                     f"{return_tensors!r}")


def _to_hwc_uint8(image: Any) -> np.ndarray:
    from PIL import Image

    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim != 3:
        raise ValueError(f"expected an image of shape (H, W, 3) or (3, H, W), got shape {arr.shape}")
    if arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels (0..255) or a PIL image, got {arr.dtype}; resizing float images is "
                        f"not supported: convert them with (x * 255).round().astype('uint8')")
    return arr


class RegNetImageProcessor:
    """``processor(images, return_tensors="pt" | "tf" | "np" | "jax")`` -> ``BatchFeature(pixel_values=...)``."""

    model_input_names = ["pixel_values"]

    def __init__(self, do_resize: bool = True, size: dict | int | None = None, crop_pct: float | None = None,
                 resample: int = 3, do_rescale: bool = True, rescale_factor: float = 1 / 255,
                 do_normalize: bool = True, image_mean=None, image_std=None, **kwargs: Any):
        size = 384 if size is None else size
        self.size = {"shortest_edge": size} if isinstance(size, int) else dict(size)
        if "shortest_edge" not in self.size:
            raise ValueError(f"size must be an int or {{'shortest_edge': int}}, got {size!r}")
        self.do_resize, self.crop_pct, self.resample = do_resize, 224 / 256 if crop_pct is None else crop_pct, resample
        self.do_rescale, self.rescale_factor = do_rescale, rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = list(IMAGENET_DEFAULT_MEAN if image_mean is None else image_mean)
        self.image_std = list(IMAGENET_DEFAULT_STD if image_std is None else image_std)

    @classmethod
    def from_dict(cls, config: dict[str, Any], **kwargs: Any) -> "RegNetImageProcessor":
        kind = config.get("image_processor_type") or config.get("feature_extractor_type")
        if kind is not None and kind not in SUPPORTED_TYPES:
            raise ValueError(f"image processor type {kind!r} is not supported; the facebook/regnet-* repositories use "
                             f"{SUPPORTED_TYPES[0]} (supported: {', '.join(SUPPORTED_TYPES)})")
        fields = ("do_resize", "size", "crop_pct", "resample", "do_rescale", "rescale_factor", "do_normalize",
                  "image_mean", "image_std")
        return cls(**{k: v for k, v in {**config, **kwargs}.items() if k in fields})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *, revision: str | None = None,
                        **kwargs: Any) -> "RegNetImageProcessor":
        """From ``preprocessor_config.json`` of a local directory or hub repository (huggingface_hub's cache)."""
        from ..weights import hub

        path = Path(pretrained_model_name_or_path).expanduser()
        if path.is_dir():
            path = path / PROCESSOR_NAME
            if not path.is_file():
                raise OSError(f"{str(pretrained_model_name_or_path)!r} has no {PROCESSOR_NAME}")
        elif not path.is_file():
            path = hub.fetch(str(pretrained_model_name_or_path), revision, filename=PROCESSOR_NAME)
        return cls.from_dict(json.loads(Path(path).read_text()), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {"image_processor_type": "ConvNextImageProcessor", "do_resize": self.do_resize, "size": self.size,
                "crop_pct": self.crop_pct, "resample": self.resample, "do_rescale": self.do_rescale,
                "rescale_factor": self.rescale_factor, "do_normalize": self.do_normalize,
                "image_mean": self.image_mean, "image_std": self.image_std}

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        from ..weights.atomic import atomic_file

        with atomic_file(Path(save_directory) / PROCESSOR_NAME) as f:
            f.write((json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode())

    # --- the pipeline ----------------------------------------------------------------------------------------
    def resize(self, image: np.ndarray) -> np.ndarray:
        from PIL import Image

        edge = self.size["shortest_edge"]
        height, width = image.shape[:2]
        if edge >= 384:
            return np.asarray(Image.fromarray(image).resize((edge, edge), resample=self.resample))
        short = int(edge / self.crop_pct)
        if width <= height:
            new_w, new_h = short, int(short * height / width)
        else:
            new_w, new_h = int(short * width / height), short
        image = np.asarray(Image.fromarray(image).resize((new_w, new_h), resample=self.resample))
        top, left = (new_h - edge) // 2, (new_w - edge) // 2
        return image[top: top + edge, left: left + edge]

    def preprocess(self, images: Any, return_tensors: str | None = None, **kwargs: Any) -> BatchFeature:
        if kwargs:
            return type(self).from_dict({**self.to_dict(), **kwargs}).preprocess(images, return_tensors)
        if not isinstance(images, (list, tuple)):
            images = [images]
        out = []
        for image in images:
            arr = _to_hwc_uint8(image)
            if self.do_resize:
                arr = self.resize(arr)
            if self.do_rescale:
                arr = (arr.astype(np.float64) * self.rescale_factor).astype(np.float32)
            if self.do_normalize:
                arr = arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float32)
                arr = (arr - np.asarray(self.image_mean, arr.dtype)) / np.asarray(self.image_std, arr.dtype)
            out.append(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        return BatchFeature(pixel_values=_as_tensors(out, return_tensors))

    def __call__(self, images: Any = None, return_tensors: str | None = None, **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, return_tensors=return_tensors, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__} {json.dumps(self.to_dict(), sort_keys=True)}"


ConvNextImageProcessor = RegNetImageProcessor


class AutoImageProcessor:
    """``AutoImageProcessor.from_pretrained(repo or directory)``: the RegNet (ConvNeXt-style) image processor."""

    def __init__(self):
        raise TypeError("use AutoImageProcessor.from_pretrained(...)")

    @staticmethod
    def from_pretrained(pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> RegNetImageProcessor:
        return RegNetImageProcessor.from_pretrained(pretrained_model_name_or_path, **kwargs)
