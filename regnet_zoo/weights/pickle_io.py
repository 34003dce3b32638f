"""Pickle-based checkpoints (``.pth``, ``.pt``, ``.bin``, ``.pyth``, ``.torch``) read as data, never as code.

A pickle can name any Python callable and have the loader call it, so a checkpoint from the internet is untrusted
input. The readers here need no torch (installed or not, it is never imported): ``RestrictedUnpickler`` reads
torch's zip format (written since 1.6) into numpy arrays memory-mapped from the file (copy-on-write, so the
checkpoint is never read twice into memory), and ``LegacyUnpickler`` the legacy (pre-1.6) format of pycls's and
early VISSL's checkpoints. Both allow only the globals a ``state_dict`` needs (``OrderedDict``,
``torch._utils._rebuild_tensor_v2``, the storage types) and refuse everything else with an
``UnsafeCheckpointError`` before anything runs.

A file that does not load gets an error in our words saying what is wrong with it (``diagnose``: bad magic,
truncated zip, CRC failure, unknown pickle opcode, truncated pickle, not a torch checkpoint), never a reader's own
text.
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


# -- what is wrong with a file that does not load, in our words ------------------------------------------------------
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of torch's legacy (pre-zip) format
_LEGACY_PICKLES = ("magic number", "protocol version", "system info", "object", "storage keys")


def _pickle_damage(stream, where: str, offset: int = 0) -> tuple[str, Any] | None:
    """Walk one pickle's opcodes (never executing them) from ``stream``'s position: ``None`` when it is
    well-formed, else what is wrong. Returns ``("ok", first_arg)`` for a well-formed pickle, with the argument of
    its first data opcode (the legacy format's magic number)."""
    import pickletools

    start = stream.seek(0, 1)
    first = None
    try:
        for op, arg, _ in pickletools.genops(stream):
            if first is None and op.name != "PROTO":
                first = (op.name, arg)
    except ValueError as e:  # pickletools reports every problem as ValueError
        m = re.match(r"at position (\d+), opcode b'(.*)' unknown", str(e))
        if m:
            code = bytes(m.group(2), "latin-1").decode("unicode_escape").encode("latin-1")
            return ("damaged", f"corrupt pickle: unknown opcode 0x{code[0]:02x} at byte {offset + int(m.group(1))} of "
                               f"{where}")
        end = stream.seek(0, 2)
        return ("damaged", f"truncated pickle: {where} ends at byte {offset + end} in the middle of the pickle that "
                           f"starts at byte {offset + start} (before its STOP opcode)" if "exhausted" in str(e) or
                "not enough data" in str(e) or "only" in str(e) or "no newline" in str(e) else
                f"corrupt pickle at byte {offset + start} of {where} ({e})")
    return ("ok", first)


def _printable(data: bytes) -> bool:
    return bool(data) and all(32 <= b < 127 or b in (9, 10, 13) for b in data)


def diagnose(path: str | os.PathLike) -> tuple[str, str] | None:
    """What is wrong with a pickle checkpoint, found by reading its structure (zip directory, CRCs, pickle opcodes),
    never by running it: ``("damaged", message)`` for a truncated or corrupt file, ``("foreign", message)`` for a
    well-formed file that is not a torch checkpoint, ``None`` when nothing is wrong with its structure."""
    import io
    import zlib

    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK"):
        if not zipfile.is_zipfile(path):
            return ("damaged", f"truncated zip archive: it starts like torch.save's zip format, but its {size:,} bytes "
                               f"end before the archive's directory (an interrupted download or copy?)")
        try:
            with zipfile.ZipFile(path) as archive:
                pkl = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
                if not pkl:
                    return ("foreign", "not a torch checkpoint: a zip archive without data.pkl")
                bad = archive.testzip()
                if bad is not None:
                    return ("damaged", f"damaged zip archive: member {bad} fails its CRC check")
                raw = archive.read(pkl[0])
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as e:
            return ("damaged", f"damaged zip archive ({type(e).__name__}: {e})")
        problem = _pickle_damage(io.BytesIO(raw), pkl[0])
        return problem if problem and problem[0] != "ok" else None
    if not head.startswith(b"\x80"):
        shown = " ".join(f"{b:02x}" for b in head[:8])
        text = f" (text: {head.decode('ascii', 'replace')!r}...)" if _printable(head) else ""
        return ("damaged", f"bad magic: the file starts with bytes {shown}{text}, neither a zip archive ('PK', what "
                           f"torch.save writes) nor a pickle (byte 0x80); a damaged file, or a download that saved "
                           f"something else?")
    if len(head) > 1 and head[1] > pickle.HIGHEST_PROTOCOL:
        return ("damaged", f"bad magic: pickle protocol {head[1]} (byte 1) does not exist")
    with open(path, "rb") as f:  # legacy format: five pickles (magic, protocol, sys info, object, keys), then data
        for i, part in enumerate(_LEGACY_PICKLES):
            if f.tell() == size:
                return ("damaged", f"truncated: the file ends after {i} of the {len(_LEGACY_PICKLES)} pickles of "
                                   f"torch's legacy format (before its {part}), {size:,} bytes")
            kind, info = _pickle_damage(f, "the file")
            if kind != "ok":
                return (kind, info)
            if i == 0 and info != ("LONG1", _TORCH_MAGIC):
                return ("foreign", "not a torch checkpoint: a pickle that does not start with torch's magic number "
                                   "(torch.save writes a zip archive, or a legacy pickle led by that number)")
    return None


def _diagnosed(path: Path) -> WeightsError | None:
    """What is wrong with a pickle checkpoint, found by reading it (damage first, then an unsafe global), if anything."""
    found = diagnose(path)
    if found is not None and found[0] == "damaged":
        return CorruptCheckpointError(f"{path}: {found[1]}")
    what = first_unsafe_global(path)
    if what is not None:
        return _refused(path, what)
    if found is not None:
        return CorruptCheckpointError(f"{path}: {found[1]}")
    return None


def _unreadable(path: Path, error: BaseException) -> WeightsError:
    """The error for a pickle checkpoint that did not load: what is wrong with the file, in our words."""
    diagnosed = _diagnosed(path)
    if diagnosed is not None:
        return diagnosed
    line = next((ln.strip() for ln in str(error).splitlines() if ln.strip()), "")
    reason = f"{type(error).__name__}: {line[:160]}" if line else type(error).__name__
    if re.search(r"EOF|end of (file|data)", line):
        return CorruptCheckpointError(f"{path}: truncated: the tensor data ends early ({reason})")
    return CorruptCheckpointError(f"{path}: not a readable torch checkpoint ({reason})")


# -- numpy-only reader of torch's zip format -------------------------------------------------------------------------
_STORAGE_DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "bf16",
                   "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
                   "ByteStorage": "u1", "BoolStorage": "?"}


class _StorageType:
    def __init__(self, name: str):
        self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """A view of ``storage`` when the tensor is C-contiguous (no copy of a memory-mapped file), else a copy."""
    import math

    import numpy as np

    size, stride = tuple(size), tuple(stride)
    numel = math.prod(size)
    contiguous = all(st == math.prod(size[i + 1:]) for i, (n, st) in enumerate(zip(size, stride)) if n > 1)
    if contiguous:
        return storage[offset:offset + numel].reshape(size)
    itemsize = storage.dtype.itemsize
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=tuple(s * itemsize for s in stride)).copy()


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles torch's ``data.pkl`` into numpy arrays; any global outside the allow-list is refused."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: Path):
        super().__init__(file)
        self.archive, self.prefix, self.path = archive, prefix, path
        self._storages: dict[str, Any] = {}
        self._file_map = None  # the whole file, mapped copy-on-write on the first stored member

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
            dtype = np.dtype("<u2" if storage_type.dtype == "bf16" else storage_type.dtype)
            arr = self._mapped(f"{self.prefix}/data/{key}", dtype)
            if storage_type.dtype == "bf16":
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            self._storages[key] = arr
        return self._storages[key]

    def _mapped(self, member: str, dtype):
        """The bytes of an archive member as a view of the file mapped copy-on-write (torch stores storages
        uncompressed), or read into memory when a member is compressed."""
        import numpy as np

        info = self.archive.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED or info.file_size < dtype.itemsize:
            return np.frombuffer(bytearray(self.archive.read(member)), dtype)
        if self._file_map is None:
            self._file_map = np.memmap(self.path, np.uint8, mode="c")
        data = self._file_map
        local = bytes(data[info.header_offset:info.header_offset + 30])
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise CorruptCheckpointError(f"{self.path}: damaged zip archive (no local header for {member})")
        start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
        size = info.file_size // dtype.itemsize * dtype.itemsize
        if start + info.file_size > len(data):
            raise CorruptCheckpointError(f"{self.path}: truncated: the tensor data ends early ({member})")
        return data[start:start + size].view(np.ndarray).view(dtype)


class _LazyTensor:
    """A tensor of a legacy checkpoint, whose storage bytes follow the pickle that names it."""

    def __init__(self, storage: "_LegacyStorage", offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def materialize(self):
        return _rebuild_tensor_v2(self.storage.array(), self.offset, self.size, self.stride)


class _LegacyStorage:
    def __init__(self, dtype: str, numel: int, view_of: "_LegacyStorage | None" = None, view_offset: int = 0):
        self.dtype, self.numel, self.view_of, self.view_offset = dtype, numel, view_of, view_offset
        self.data = None  # numpy array, filled from the bytes after the pickles

    def array(self):
        if self.view_of is not None:
            return self.view_of.array()[self.view_offset:self.view_offset + self.numel]
        return self.data


class LegacyUnpickler(RestrictedUnpickler):
    """The main pickle of torch's legacy format: storages are persistent ids ``("storage", type, key, location,
    numel, view)`` whose bytes come after the pickles, so tensors stay ``_LazyTensor`` until they are read."""

    def __init__(self, file, path: Path):
        pickle.Unpickler.__init__(self, file)
        self.path = path
        self.storages: dict[str, _LegacyStorage] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return lambda storage, offset, size, stride, *rest: _LazyTensor(storage, offset, size, stride)
        return super().find_class(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise _refused(self.path, f"an unknown persistent object {pid!r}")
        storage_type, key, _location, numel, view = pid[1:]
        if not isinstance(storage_type, _StorageType):
            raise _refused(self.path, f"storage type {storage_type!r}")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _LegacyStorage(storage_type.dtype, int(numel))
        if view is None:
            return self.storages[key]
        view_key, offset, view_size = view
        return _LegacyStorage(storage_type.dtype, int(view_size), self.storages[key], int(offset))


class _PlainUnpickler(pickle.Unpickler):
    """For the small header pickles of the legacy format: numbers, strings and dicts only."""

    def __init__(self, file, path: Path):
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str):
        raise _refused(self.path, f"{module}.{name}")


def _legacy_load(path: Path) -> Any:
    """torch's legacy format: magic number, protocol version, system info, the object, the storage keys, then each
    storage as a little-endian int64 element count and its raw bytes."""
    import numpy as np

    with open(path, "rb") as f:
        if _PlainUnpickler(f, path).load() != _TORCH_MAGIC:
            raise CorruptCheckpointError(f"{path}: not a torch checkpoint (no legacy magic number)")
        _PlainUnpickler(f, path).load()  # protocol version
        info = _PlainUnpickler(f, path).load()
        if isinstance(info, dict) and not info.get("little_endian", True):
            raise WeightsError(f"{path}: a big-endian legacy torch checkpoint; convert it on the machine that wrote it")
        unpickler = LegacyUnpickler(f, path)
        obj = unpickler.load()
        keys = _PlainUnpickler(f, path).load()
        for key in keys:
            storage = unpickler.storages[str(key)]
            count = int(np.frombuffer(f.read(8), "<i8")[0])
            dtype = np.dtype("<u2" if storage.dtype == "bf16" else storage.dtype)
            left = os.fstat(f.fileno()).st_size - f.tell()
            if not 0 <= count * dtype.itemsize <= left:
                raise CorruptCheckpointError(f"{path}: truncated: the tensor data ends early ({max(left, 0):,} of a "
                                             f"storage's {count * dtype.itemsize:,} bytes)")
            arr = np.empty(count, dtype)  # read straight into a writable array
            got = f.readinto(memoryview(arr).cast("B")) if count else 0
            if got != count * dtype.itemsize:
                raise CorruptCheckpointError(f"{path}: truncated: the tensor data ends early ({got:,} of a "
                                             f"storage's {count * dtype.itemsize:,} bytes)")
            storage.data = (arr.astype(np.uint32) << 16).view(np.float32) if storage.dtype == "bf16" else arr
    return _materialized(obj)


def _materialized(obj: Any) -> Any:
    if isinstance(obj, _LazyTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        return type(obj)((k, _materialized(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialized(v) for v in obj)
    return obj


def _numpy_load(path: Path) -> Any:
    try:
        if not zipfile.is_zipfile(path):
            diagnosed = _diagnosed(path)
            if diagnosed is not None:
                raise diagnosed
            return _legacy_load(path)
        with zipfile.ZipFile(path) as archive:
            pkl = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pkl:
                raise CorruptCheckpointError(f"{path}: not a torch checkpoint: a zip archive without data.pkl")
            prefix = pkl[0].rpartition("/")[0]
            with archive.open(pkl[0]) as f:
                return RestrictedUnpickler(f, archive, prefix, path).load()
    except (WeightsError, MemoryError):
        raise
    except Exception as e:  # damaged data: BadZipFile, zlib.error, EOFError, UnpicklingError, KeyError, ...
        raise _unreadable(path, e) from None


def load(path: str | os.PathLike) -> Any:
    """The object in a pickle checkpoint, tensors as numpy arrays (memory-mapped for the zip format)."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise CorruptCheckpointError(f"{path}: empty file")
    return _numpy_load(path)
