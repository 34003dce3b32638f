"""Read any checkpoint file or model directory into flat ``{source name: numpy array}``, without a framework.

Formats are recognised by content where they can be (HDF5 signature, zip archive) and by name otherwise:
safetensors (memory-mapped), torch pickles (restricted, see ``pickle_io``), transformers ``tf_model.h5`` and
``flax_model.msgpack``, and sharded saves through their ``*.index.json``. A directory is read like
``transformers.from_pretrained`` reads one, preferring safetensors over pickles.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import WeightsError
from ..plugins import get_host
from . import hf_formats, pickle_io, safetensors_io
from .containers import unwrap
from .safetensors_io import CorruptCheckpointError

# in the order transformers prefers them (safetensors first)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json", "tf_model.h5", "tf_model.h5.index.json", "flax_model.msgpack",
                "flax_model.msgpack.index.json")
CHECKPOINT_SUFFIXES = (".safetensors", ".h5", ".msgpack") + pickle_io.PICKLE_SUFFIXES


@dataclass
class RawCheckpoint:
    """Tensors under their source names, plus where and how they were read."""

    state: dict[str, Any]
    format: str  # safetensors | pickle | tf-h5 | flax-msgpack, "+sharded" when read through an index
    files: list[Path]
    config: dict[str, Any] | None = None  # config.json beside the weights, when there is one
    wrapper: str | None = None  # the training-checkpoint entry the weights were found under
    key_space: str | None = None  # known from the format (transformers files are always "hf")
    notes: list[str] = field(default_factory=list)


def find_weights(directory: Path) -> Path | None:
    """The weights file (or index) transformers would load from ``directory``; a lone checkpoint file otherwise."""
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    candidates = sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(CHECKPOINT_SUFFIXES))
    safetensors = [p for p in candidates if p.suffix == ".safetensors"]
    if len(safetensors) == 1:
        return safetensors[0]
    if len(candidates) == 1:
        return candidates[0]
    return None


def read_config(directory: Path) -> dict[str, Any] | None:
    path = directory / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptCheckpointError(f"{path}: not valid JSON ({e})") from None
    return config if isinstance(config, dict) else None


def _kind(path: Path) -> str:
    name = path.name
    if name.endswith(".index.json"):
        return "index"
    if hf_formats.is_hdf5(path):
        return "tf-h5"
    if zipfile.is_zipfile(path):
        return "pickle"
    if name.endswith(".safetensors"):
        return "safetensors"
    if name.endswith(".msgpack"):
        return "flax-msgpack"
    if name.endswith(pickle_io.PICKLE_SUFFIXES):
        return "pickle"
    try:  # an unconventional name: safetensors is the one format with a self-describing header
        safetensors_io.read_header(path)
        return "safetensors"
    except WeightsError:
        raise WeightsError(f"{path}: unknown checkpoint format; regnet-zoo reads safetensors, torch pickles "
                           f"({', '.join(pickle_io.PICKLE_SUFFIXES)}), tf_model.h5, flax_model.msgpack, sharded "
                           f"*.index.json and transformers model directories") from None


def _refuse_native(path: Path, framework: str | None, how: str = "") -> None:
    """Framework-native files (``convert --to <framework>``) hold one framework's own variable names, unless that
    framework's are the canonical ones."""
    fw = get_host().frameworks.get(framework) if framework else None
    if framework is None or fw is not None and fw.native_is_canonical:
        return
    how = how or "the framework's own loading (see regnet_zoo.weights.convert)"
    raise WeightsError(f"{path}: a {framework}-native weights file (its variables under the framework's own "
                       f"names), not a checkpoint in a RegNet key space; load it into a model built with "
                       f"rz.create(..., framework={framework!r}) using {how}, or convert the original checkpoint")


def _read_files(kind: str, files: list[Path]) -> tuple[dict[str, Any], str | None, str | None]:
    """(flat state, wrapper, known key space) of files all of one kind."""
    if kind == "safetensors":
        state: dict[str, Any] = {}
        for f in files:
            _refuse_native(f, safetensors_io.read_header(f)[1].get("regnet_zoo_framework"))
            state.update(safetensors_io.load(f))
        return state, None, None
    if kind == "pickle":
        state, wrapper = {}, None
        for f in files:
            part, wrapper = unwrap(pickle_io.load(f), str(f))
            state.update(part)
        return state, wrapper, None
    if kind == "tf-h5":
        if files[0].name.endswith(".weights.h5"):
            _refuse_native(files[0], "tf", how="model.load_weights(path)")  # Keras' own weights file
        return hf_formats.read_tf_h5(files), None, "hf"
    if kind == "flax-msgpack":
        return hf_formats.read_flax_msgpack(files), None, "hf"
    raise AssertionError(kind)


def _read_index(index: Path) -> RawCheckpoint:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise CorruptCheckpointError(f"{index}: not a sharded-checkpoint index ({type(e).__name__}: {e})") from None
    files = [index.parent / s for s in shards]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise WeightsError(f"{index}: {len(missing)} of {len(files)} shards are missing: {', '.join(missing[:5])}"
                           f"{' ...' if len(missing) > 5 else ''} (an interrupted download? fetch the repository "
                           f"again)")
    kinds = {_kind(f) for f in files}
    if len(kinds) != 1:
        raise WeightsError(f"{index}: shards of different formats ({', '.join(sorted(kinds))})")
    kind = kinds.pop()
    state, wrapper, space = _read_files(kind, files)
    if kind in ("safetensors", "pickle"):
        absent = [k for k in weight_map if k not in state and not k.endswith("num_batches_tracked")]
        if absent:
            raise CorruptCheckpointError(f"{index}: {len(absent)} tensors listed in the index are in no shard "
                                         f"(e.g. {absent[0]})")
    return RawCheckpoint(state, kind + "+sharded", [index, *files], wrapper=wrapper, key_space=space)


def read(path: str | os.PathLike) -> RawCheckpoint:
    """Read a checkpoint file, a sharded index, or a model directory (with its ``config.json``)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsError(f"{str(path)!r} does not exist")
    config = None
    if path.is_dir():
        config = read_config(path)
        found = find_weights(path)
        if found is None:
            raise WeightsError(f"{path}: no weights found; a model directory holds one of {', '.join(WEIGHT_FILES)} "
                               f"(or a single checkpoint file)")
        path = found
    elif path.name == "config.json":
        raise WeightsError(f"{path}: a config holds no weights; pass its directory")
    kind = _kind(path)
    if kind == "index":
        raw = _read_index(path)
    else:
        state, wrapper, space = _read_files(kind, [path])
        raw = RawCheckpoint(state, kind, [path], wrapper=wrapper, key_space=space)
    if config is None and path.parent.joinpath("config.json").is_file() and path.name in WEIGHT_FILES:
        config = read_config(path.parent)
    raw.config = config
    if not raw.state:
        raise WeightsError(f"{path}: contains no tensors")
    return raw
