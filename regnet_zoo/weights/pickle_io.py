"""Pickle-based checkpoints (``.pth``, ``.pt``, ``.bin``, ``.pyth``, ``.torch``) read as data, never as code.

A pickle can name any Python callable and have the loader call it, so a checkpoint from the internet is untrusted
input. Two readers, both allow-listing what a weights file legitimately contains and refusing everything else
with an ``UnsafeCheckpointError`` before anything runs:

* with torch installed: ``torch.load(..., weights_only=True)`` (torch's restricted unpickler), memory-mapped for
  the zip format torch has written since 1.6;
* without torch: ``RestrictedUnpickler`` below reads torch's zip format into numpy, allowing only the globals a
  ``state_dict`` needs (``OrderedDict``, ``torch._utils._rebuild_tensor_v2``, the storage types).
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

from ..errors import WeightsError
from .safetensors_io import CorruptCheckpointError

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".pyth", ".torch", ".ckpt", ".pkl")


class UnsafeCheckpointError(WeightsError):
    """A pickle that asks to run code (or to build objects a weights file has no business holding)."""


def _refused(path: Path, what: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"{path}: refused to load: the pickle references {what}, which a weights file never needs; nothing from it "
        f"was run. Checkpoints are untrusted input and regnet-zoo only unpickles tensors and plain containers. If "
        f"the file comes from a source you trust, re-save its state_dict as safetensors with the library that made it.")


_SAFE_GLOBALS = ("collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor",
                 "torch._utils._rebuild_parameter", "torch.device", "torch.Size")


def _pickle_streams(path: Path):
    """The pickle byte streams of a checkpoint: ``data.pkl`` of a zip file, else the whole file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return [archive.read(n) for n in archive.namelist() if n.endswith("data.pkl")]
    return [path.read_bytes()]


def first_unsafe_global(path: Path) -> str | None:
    """The ``module.name`` a pickle would import that no weights file needs (one outside torch first), found by
    reading the opcodes (``pickletools``), never by executing them. Consecutive pickles (torch's legacy format) are
    all scanned."""
    found = _unsafe_globals(path)
    return next((n for n in found if not n.startswith("torch.")), found[0] if found else None)


def _unsafe_globals(path: Path) -> list[str]:
    import io
    import pickletools

    found: list[str] = []
    for raw in _pickle_streams(path):
        stream = io.BytesIO(raw)
        while stream.tell() < len(raw):
            strings: list[str] = []
            try:
                for op, arg, _ in pickletools.genops(stream):
                    if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                        strings.append(arg)
                    name = (arg.replace(" ", ".") if op.name in ("GLOBAL", "INST") else
                            ".".join(strings[-2:]) if op.name == "STACK_GLOBAL" else None)
                    if name is not None and not (name in _SAFE_GLOBALS or name.startswith("torch.") and
                                                 name.endswith("Storage")) and name not in found:
                        found.append(name)
            except (ValueError, EOFError, UnicodeDecodeError):
                break  # raw tensor bytes after the last pickle of a legacy file
    return found


def _parses(path: Path) -> bool:
    """True when the (first) pickle stream is well-formed: an unsupported opcode in it is a refusal, not damage."""
    import io
    import pickletools

    try:
        for raw in _pickle_streams(path):
            for _ in pickletools.genops(io.BytesIO(raw)):
                pass
    except (ValueError, EOFError, UnicodeDecodeError, zipfile.BadZipFile):
        return False
    return True


# -- torch ------------------------------------------------------------------------------------------------------
def _to_numpy(obj: Any) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.dtype in (torch.bfloat16,) or t.dtype.is_floating_point and t.dtype.itemsize < 2:
            t = t.float()  # numpy has no bfloat16 / float8: widen exactly
        return t.numpy()
    if isinstance(obj, dict):
        return {k: _to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_numpy(v) for v in obj)
    return obj


def _torch_load(path: Path) -> Any:
    import torch

    mmap = zipfile.is_zipfile(path)  # only torch's zip format can be memory-mapped
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL (\S+)", str(e))
        what = m.group(1) if m else first_unsafe_global(path)
        if what is not None:
            raise _refused(path, what) from None
        if "Unsupported" in str(e) and _parses(path):
            raise _refused(path, "a Python object that is not a tensor") from None
        raise CorruptCheckpointError(f"{path}: corrupt or truncated pickle checkpoint ({e})") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as e:
        message = str(e).split("\n")[0]
        raise CorruptCheckpointError(f"{path}: corrupt or truncated checkpoint (torch.load: {message})") from None
    return _to_numpy(obj)


# -- numpy-only reader of torch's zip format -------------------------------------------------------------------------
_STORAGE_DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "bf16",
                   "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
                   "ByteStorage": "u1", "BoolStorage": "?"}


class _StorageType:
    def __init__(self, name: str):
        self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    import numpy as np

    if not size:
        return storage[offset:offset + 1].reshape(()).copy()
    itemsize = storage.dtype.itemsize
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * itemsize for s in stride)).copy()


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles torch's ``data.pkl`` into numpy arrays; any global outside the allow-list is refused."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: Path):
        super().__init__(file)
        self.archive, self.prefix, self.path = archive, prefix, path
        self._storages: dict[str, Any] = {}

    def find_class(self, module: str, name: str):
        import collections

        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return lambda data, requires_grad, backward_hooks: data
        raise _refused(self.path, f"{module}.{name}")

    def persistent_load(self, pid):
        import numpy as np

        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise _refused(self.path, f"an unknown persistent object {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if key not in self._storages:
            if not isinstance(storage_type, _StorageType):
                raise _refused(self.path, f"storage type {storage_type!r}")
            raw = self.archive.read(f"{self.prefix}/data/{key}")
            if storage_type.dtype == "bf16":
                arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                arr = np.frombuffer(raw, storage_type.dtype)
            self._storages[key] = arr
        return self._storages[key]


def _numpy_load(path: Path) -> Any:
    if not zipfile.is_zipfile(path):
        raise WeightsError(f"{path}: a legacy (pre-zip) torch pickle; reading it needs torch (pip install torch), "
                           f"or convert it to safetensors where torch is installed")
    try:
        with zipfile.ZipFile(path) as archive:
            pkl = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pkl:
                raise CorruptCheckpointError(f"{path}: a zip file without data.pkl: not a torch checkpoint")
            prefix = pkl[0].rpartition("/")[0]
            with archive.open(pkl[0]) as f:
                return RestrictedUnpickler(f, archive, prefix, path).load()
    except (zipfile.BadZipFile, EOFError, KeyError, pickle.UnpicklingError) as e:
        raise CorruptCheckpointError(f"{path}: corrupt or truncated checkpoint ({e})") from None


def load(path: str | os.PathLike, *, backend: str = "auto") -> Any:
    """The object in a pickle checkpoint, tensors as numpy arrays. ``backend``: ``auto`` | ``torch`` | ``numpy``."""
    import importlib.util

    path = Path(path)
    if backend not in ("auto", "torch", "numpy"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'numpy', got {backend!r}")
    if path.stat().st_size == 0:
        raise CorruptCheckpointError(f"{path}: empty file")
    use_torch = backend == "torch" or (backend == "auto" and importlib.util.find_spec("torch") is not None)
    return _torch_load(path) if use_torch else _numpy_load(path)
