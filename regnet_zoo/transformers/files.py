"""The files of a transformers RegNet directory: where they are (local or hub), reading the weights, writing them.

A source is a local directory (or its ``config.json``) or a hub repository id, fetched through ``huggingface_hub``
(its cache and ``HF_HUB_OFFLINE`` honoured): ``config.json`` first, so a repository of another model type is refused
before any weights are downloaded. Weights in any of transformers' formats (``model.safetensors``,
``pytorch_model.bin``, ``tf_model.h5``, ``flax_model.msgpack``, sharded or not) are read into canonical names.

Writers produce what transformers writes: PyTorch names in ``model.safetensors``; ``tf_model.h5`` in tf-keras' h5
layout (layer groups ``regnet`` / ``classifier.1`` with ``weight_names``); ``flax_model.msgpack`` as
``{"params", "batch_stats"}`` in ``flax.serialization``'s msgpack encoding. A new directory appears complete or
not at all; in an existing one the weights file is replaced before ``config.json``, each atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from ..errors import WeightsError
from ..weights import hub, safetensors_io
from ..weights.atomic import atomic_directory, atomic_file, atomic_path
from ..weights.checkpoint import Checkpoint, read_checkpoint
from ..weights.keyspaces import canonical_to_hf
from ..weights.save import with_bn_counters
from .configuration import CONFIG_NAME

WEIGHTS_NAMES = {"pt": "model.safetensors", "tf": "tf_model.h5", "flax": "flax_model.msgpack"}
TF_SCOPES = {True: "tf_reg_net_for_image_classification", False: "tf_reg_net_model"}


def _is_repo_id(source: str) -> bool:
    return source.count("/") == 1 and not source.startswith((".", "/", "~")) and not source.endswith("/")


def config_file(source: str | os.PathLike, revision: str | None = None) -> Path:
    """``config.json`` of a local directory / file or of a hub repository."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise OSError(f"{str(path)!r} has no {CONFIG_NAME}; a transformers RegNet directory holds config.json "
                          f"and a weights file")
        return path / CONFIG_NAME
    if path.is_file():
        return path
    if not _is_repo_id(str(source)):
        raise OSError(f"{str(source)!r} is neither a local directory nor a hub repository id ('org/name')")
    return hub.fetch(str(source), revision, filename=CONFIG_NAME)


def checkpoint_directory(source: str | os.PathLike, revision: str | None = None) -> Path:
    """The local directory holding the weights of ``source`` (the hub snapshot for a repository id)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    return hub.fetch(str(source), revision)


def read_weights(source: str | os.PathLike, revision: str | None = None) -> Checkpoint:
    """Canonical weights of ``source`` (any transformers format)."""
    directory = checkpoint_directory(source, revision)
    try:
        return read_checkpoint(directory)
    except WeightsError as e:
        raise WeightsError(f"{source}: no RegNet weights could be read ({e})") from None


# --- writers -------------------------------------------------------------------------------------------------
def _hf_names(state: Mapping[str, Any], has_head: bool) -> dict[str, Any]:
    return canonical_to_hf(state, prefix="regnet." if has_head else "")


def _modules(hf_state: Mapping[str, Any]) -> set[str]:
    """Module paths of the BN layers (the ones with running statistics)."""
    return {k[: -len(".running_mean")] for k in hf_state if k.endswith(".running_mean")}


def _scopes(module: str) -> list[str]:
    """``encoder.stages.0.layers.1.layer.2.attention.1`` -> TF / Keras scopes ``[encoder, stages.0, layers.1, ...]``."""
    out: list[str] = []
    for part in module.split("."):
        if part.isdigit() and out:
            out[-1] += "." + part
        else:
            out.append(part)
    return out


def _native(hf_state: Mapping[str, Any], bn_leaves: dict[str, str], dense_leaf: str):
    """(module path, leaf, array in TF / Flax layout, is a BN statistic) for each PyTorch-named tensor."""
    import numpy as np

    bn = _modules(hf_state)
    for key, value in hf_state.items():
        module, leaf = key.rsplit(".", 1)
        arr = np.asarray(value)
        if module in bn:
            yield module, bn_leaves[leaf], arr, leaf.startswith("running")
        elif leaf == "weight":
            arr = arr.transpose(2, 3, 1, 0) if arr.ndim == 4 else arr.T
            yield module, dense_leaf, np.ascontiguousarray(arr), False
        else:
            yield module, leaf, arr, False


def write_pt(directory: Path, state: Mapping[str, Any], has_head: bool) -> Path:
    path = directory / WEIGHTS_NAMES["pt"]
    safetensors_io.save(with_bn_counters(_hf_names(state, has_head)), path, metadata={"format": "pt"})
    return path


def write_tf(directory: Path, state: Mapping[str, Any], has_head: bool) -> Path:
    try:
        import h5py
    except ImportError:
        raise WeightsError("writing tf_model.h5 needs h5py: pip install h5py") from None
    import numpy as np

    hf_state = _hf_names(state, True)  # the TF main layer is always called "regnet", headless or not
    scope = TF_SCOPES[has_head]
    layers: dict[str, list[tuple[str, Any]]] = {}
    leaves = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
    for module, leaf, arr, _ in _native(hf_state, leaves, "kernel"):
        scopes = _scopes(module)
        layers.setdefault(scopes[0], []).append((f"{scope}/{'/'.join(scopes)}/{leaf}:0", arr))
    if has_head:  # transformers' classifier is Sequential(Flatten, Dense): an empty "flatten" layer comes first
        layers = {"regnet": layers["regnet"], "flatten": [], **{k: v for k, v in layers.items() if k != "regnet"}}
    path = directory / WEIGHTS_NAMES["tf"]
    with atomic_path(path, ".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["layer_names"] = np.array([n.encode() for n in layers], dtype="S")
            f.attrs["backend"] = b"tensorflow"
            f.attrs["keras_version"] = b"2.21.0"
            for layer, weights in layers.items():
                group = f.create_group(layer)
                group.attrs["weight_names"] = np.array([n.encode() for n, _ in weights], dtype="S")
                for name, arr in weights:
                    group.create_dataset(name, data=arr)
    return path


def write_flax(directory: Path, state: Mapping[str, Any], has_head: bool) -> Path:
    try:
        import msgpack
    except ImportError:
        raise WeightsError("writing flax_model.msgpack needs msgpack: pip install msgpack") from None
    tree: dict[str, Any] = {"params": {}, "batch_stats": {}}
    leaves = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
    for module, leaf, arr, is_stat in _native(_hf_names(state, has_head), leaves, "kernel"):
        node = tree["batch_stats" if is_stat else "params"]
        for part in module.split("."):
            node = node.setdefault(part, {})
        node[leaf] = arr

    def encode(obj):  # flax.serialization's ndarray extension (type 1)
        import numpy as np

        if isinstance(obj, np.ndarray):
            return msgpack.ExtType(1, msgpack.packb((obj.shape, obj.dtype.name, obj.tobytes("C")), use_bin_type=True))
        raise TypeError(f"cannot serialise {type(obj).__name__}")

    path = directory / WEIGHTS_NAMES["flax"]
    with atomic_file(path) as f:
        f.write(msgpack.packb(tree, default=encode, strict_types=True, use_bin_type=True))
    return path


WRITERS = {"pt": write_pt, "tf": write_tf, "flax": write_flax}


def save_directory(save_directory: str | os.PathLike, config, state: Mapping[str, Any], fmt: str,
                   has_head: bool) -> Path:
    """Write ``config.json`` and the ``fmt`` weights file; a new directory appears complete or not at all."""
    target = Path(save_directory)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"save_pretrained needs a directory; {str(target)!r} is a file")
    with atomic_directory(target) as directory:
        WRITERS[fmt](directory, state, has_head)
        config.to_json_file(directory / CONFIG_NAME)
    return target
