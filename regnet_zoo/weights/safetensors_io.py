"""safetensors without copies: a validated, memory-mapped reader and a streaming, atomic writer.

Reading maps the file once (copy-on-write, so arrays are writable but the file is never modified) and returns
numpy views into it: no tensor is read until it is used, and a model loaded from it holds one copy of the
weights, not two. BF16 tensors (which numpy lacks) are widened to float32, exactly.

Writing streams one tensor at a time into a temporary file that replaces the destination only when complete, so
a 2.6 GB checkpoint is converted without a second in-memory copy and an error leaves no partial file. The
format is the one ``safetensors`` reads (8-byte little-endian header length, JSON header padded to 8 bytes,
tensor bytes in header order); tests check files both ways against the ``safetensors`` package.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any, Mapping

from ..errors import WeightsError
from .atomic import atomic_file

MAX_HEADER = 100_000_000  # the safetensors library's own limit
_NUMPY_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
                 "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4,
             "U16": 2, "U8": 1, "BOOL": 1}
_NAMES = {("f", 8): "F64", ("f", 4): "F32", ("f", 2): "F16", ("i", 8): "I64", ("i", 4): "I32", ("i", 2): "I16",
          ("i", 1): "I8", ("u", 8): "U64", ("u", 4): "U32", ("u", 2): "U16", ("u", 1): "U8", ("b", 1): "BOOL"}


class CorruptCheckpointError(WeightsError):
    """A file that is truncated or not in the format its name says."""


def read_header(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, str], int]:
    """(tensor entries, ``__metadata__``, offset of the data section), validated against the file size."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CorruptCheckpointError(f"{path}: not a safetensors file ({size} bytes, too short for a header)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or 8 + n > size:
            raise CorruptCheckpointError(f"{path}: not a safetensors file, or truncated: header length {n} does not "
                                         f"fit in {size} bytes")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptCheckpointError(f"{path}: corrupt safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise CorruptCheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    data_start, data_size = 8 + n, size - 8 - n
    spans = []
    for name, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], [int(d) for d in entry["shape"]], entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CorruptCheckpointError(f"{path}: corrupt safetensors header entry for {name!r}") from None
        if dtype not in _ITEMSIZE:
            raise WeightsError(f"{path}: tensor {name!r} has dtype {dtype}, which regnet-zoo cannot read "
                               f"(supported: {', '.join(sorted(_ITEMSIZE))})")
        if any(d < 0 for d in shape) or end - begin != math.prod(shape) * _ITEMSIZE[dtype] or begin < 0:
            raise CorruptCheckpointError(f"{path}: tensor {name!r}: offsets {begin}..{end} do not hold a {dtype} "
                                         f"array of shape {tuple(shape)}")
        if end > data_size:
            raise CorruptCheckpointError(f"{path}: truncated: tensor {name!r} ends at byte {data_start + end}, the "
                                         f"file has {size} bytes")
        spans.append((begin, end, name))
    spans.sort()
    for (b0, e0, n0), (b1, _, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise CorruptCheckpointError(f"{path}: corrupt: tensors {n0!r} and {n1!r} overlap")
    return header, metadata, data_start


def load(path: str | os.PathLike) -> dict[str, Any]:
    """``{name: numpy array}`` memory-mapped from a safetensors file (no tensor data is read here)."""
    import numpy as np

    header, _, data_start = read_header(path)
    if not header:
        return {}
    buf = np.memmap(path, dtype=np.uint8, mode="c").view(np.ndarray)  # plain arrays; the mapping stays alive
    out: dict[str, Any] = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        raw = buf[data_start + begin:data_start + end]
        dtype, shape = entry["dtype"], tuple(entry["shape"])
        if dtype == "BF16":
            out[name] = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
        else:
            out[name] = raw.view(_NUMPY_DTYPES[dtype]).reshape(shape)
    return out


def _dtype_name(arr) -> str:
    name = _NAMES.get((arr.dtype.kind, arr.dtype.itemsize))
    if name is None:
        raise WeightsError(f"cannot write a {arr.dtype} array to safetensors")
    return name


def save(state: Mapping[str, Any], path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``{name: array}`` (numpy, or anything ``numpy.asarray`` takes) to ``path`` atomically, streaming."""
    import numpy as np

    path = Path(path)
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    arrays = []
    offset = 0
    for name, value in state.items():
        arr = np.asarray(value)
        dtype = _dtype_name(arr)
        nbytes = arr.size * arr.dtype.itemsize
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + nbytes]}
        arrays.append(arr)
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-(8 + len(raw)) % 8)
    with atomic_file(path) as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for arr in arrays:
            little = arr.astype(arr.dtype.newbyteorder("<"), copy=False) if arr.dtype.byteorder == ">" else arr
            chunk = np.ascontiguousarray(little)
            if chunk.size:
                f.write(memoryview(chunk.reshape(-1)).cast("B"))
    return path
