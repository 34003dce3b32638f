"""transformers' TensorFlow (``tf_model.h5``) and Flax (``flax_model.msgpack``) RegNet files, read without TF or JAX.

Both are turned into the PyTorch names and layouts of the ``hf`` key space (conv kernels HWIO -> OIHW, dense
(in, out) -> (out, in), BN ``gamma/beta/moving_mean/moving_variance`` or ``scale/bias/mean/var`` -> PyTorch's), so
one converter takes all three to canonical names. Names were read off files that transformers 4.57 writes with
``TFRegNetForImageClassification`` / ``TFRegNetModel`` / ``FlaxRegNetForImageClassification.save_pretrained``,
sharded or not (see tests/weights/test_weights_hf.py).

* h5, whole model: ``<layer>/<model scope>/regnet/encoder/stages.0/layers.0/layer.1/convolution/kernel:0``
  (e.g. ``regnet/tf_reg_net_for_image_classification/regnet/...``, ``classifier.1/tf_reg_net_.../classifier.1/...``)
* h5, shard of a sharded save: ``regnet/encoder/stages.0/...`` (no model scope)
* msgpack: ``{"params": {"regnet": {"encoder": {"stages": {"0": ...}}}}, "batch_stats": {...}}`` (nested), or the
  same with ``/``-joined keys in the shards of a sharded save.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import WeightsError
from .safetensors_io import CorruptCheckpointError

_TF_LEAVES = {"kernel": "weight", "gamma": "weight", "beta": "bias", "bias": "bias",
              "moving_mean": "running_mean", "moving_variance": "running_var"}
_FLAX_LEAVES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def _to_torch_layout(leaf: str, arr):
    """HWIO conv kernels -> OIHW; (in, out) dense kernels -> (out, in); everything else unchanged."""
    import numpy as np

    if leaf != "kernel":
        return arr
    if arr.ndim == 4:
        return np.ascontiguousarray(arr.transpose(3, 2, 0, 1))
    if arr.ndim == 2:
        return np.ascontiguousarray(arr.T)
    raise WeightsError(f"unexpected {arr.ndim}-d kernel")


def _tf_name(name: str) -> tuple[str, str]:
    """(PyTorch-style module path, TF leaf) of an h5 dataset name."""
    parts = name.split(":")[0].split("/")
    if len(parts) > 2 and parts[1].startswith("tf_"):  # layer / model scope / path...
        parts = parts[2:]
    return ".".join(parts[:-1]), parts[-1]


def read_tf_h5(paths: list[Path]) -> dict[str, Any]:
    """HF PyTorch-named, PyTorch-layout arrays from one ``tf_model.h5`` or the shards of a sharded save."""
    try:
        import h5py
    except ImportError:
        raise WeightsError("reading tf_model.h5 needs h5py: pip install h5py") from None
    out: dict[str, Any] = {}
    for path in paths:
        try:
            with h5py.File(path, "r") as f:
                datasets: list[tuple[str, Any]] = []
                f.visititems(lambda n, o: datasets.append((n, o)) if isinstance(o, h5py.Dataset) else None)
                for name, ds in datasets:
                    module, leaf = _tf_name(name)
                    if leaf not in _TF_LEAVES:
                        raise WeightsError(f"{path}: unexpected variable {name!r} in a transformers RegNet h5 file")
                    out[f"{module}.{_TF_LEAVES[leaf]}"] = _to_torch_layout(leaf, ds[()])
        except OSError as e:
            raise CorruptCheckpointError(f"{path}: not a readable HDF5 file, or truncated ({e})") from None
    return out


def _ext_hook(code: int, data: bytes):
    """flax.serialization's msgpack extension types: 1 = ndarray, 2 = complex, 3 = numpy scalar."""
    import msgpack
    import numpy as np

    if code == 1:
        shape, dtype, buffer = msgpack.unpackb(data)
        if dtype == "bfloat16":  # numpy has no bfloat16: widen exactly
            return (np.frombuffer(buffer, "<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
        return np.frombuffer(buffer, dtype=np.dtype(dtype)).reshape(shape)
    if code == 3:
        dtype, buffer = msgpack.unpackb(data)
        return np.frombuffer(buffer, dtype=np.dtype(dtype))[0]
    raise WeightsError(f"unsupported msgpack extension type {code} in a Flax checkpoint")


def _flatten(tree: dict, prefix: tuple = ()) -> dict[tuple, Any]:
    out: dict[tuple, Any] = {}
    for key, value in tree.items():
        path = prefix + tuple(str(key).split("/"))
        if isinstance(value, dict):
            out.update(_flatten(value, path))
        else:
            out[path] = value
    return out


def read_flax_msgpack(paths: list[Path]) -> dict[str, Any]:
    """HF PyTorch-named, PyTorch-layout arrays from one ``flax_model.msgpack`` or the shards of a sharded save."""
    try:
        import msgpack
    except ImportError:
        raise WeightsError("reading flax_model.msgpack needs msgpack: pip install msgpack") from None
    out: dict[str, Any] = {}
    for path in paths:
        try:
            tree = msgpack.unpackb(Path(path).read_bytes(), ext_hook=_ext_hook, raw=False, strict_map_key=False)
        except (ValueError, msgpack.UnpackException, TypeError) as e:
            raise CorruptCheckpointError(f"{path}: not a readable Flax msgpack file, or truncated ({e})") from None
        if not isinstance(tree, dict):
            raise CorruptCheckpointError(f"{path}: not a Flax parameter tree")
        for keys, arr in _flatten(tree).items():
            if keys[0] in ("params", "batch_stats"):
                keys = keys[1:]
            leaf = keys[-1]
            if leaf not in _FLAX_LEAVES:
                raise WeightsError(f"{path}: unexpected variable {'/'.join(keys)!r} in a transformers RegNet "
                                   f"msgpack file")
            out[".".join(keys[:-1]) + "." + _FLAX_LEAVES[leaf]] = _to_torch_layout(leaf, arr)
    return out


def is_hdf5(path: str | os.PathLike) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"
