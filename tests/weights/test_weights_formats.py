"""File formats: safetensors (memory-mapped, validated), pickles (restricted: a code payload is refused and never
runs), transformers PT / TF / Flax files, sharded or not, and the errors for truncated or corrupt input."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

import torch  # noqa: F401  (tests/conftest.py imported torch + torch._dynamo before TensorFlow)
from regnet_zoo.errors import WeightsError
from regnet_zoo.weights import pickle_io, safetensors_io
from regnet_zoo.weights.checkpoint import read_checkpoint
from regnet_zoo.weights.pickle_io import UnsafeCheckpointError
from regnet_zoo.weights.safetensors_io import CorruptCheckpointError
from weights_helpers import X, run, timm_model, timm_with


# -- safetensors -----------------------------------------------------------------------------------------------------
def _sample():
    return {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, -2], np.int64),
            "c": np.zeros((0, 3), np.float16), "d": np.array(True), "e": np.arange(3, dtype=">f4")}


def test_safetensors_round_trip_with_the_reference_library(tmp_path):
    import safetensors.numpy

    sample = _sample()
    safetensors_io.save(sample, tmp_path / "ours.safetensors", {"format": "pt"})
    theirs = safetensors.numpy.load_file(tmp_path / "ours.safetensors")
    safetensors.numpy.save_file({k: v.astype(v.dtype.newbyteorder("=")) for k, v in sample.items()},
                                tmp_path / "theirs.safetensors")
    ours = safetensors_io.load(tmp_path / "theirs.safetensors")
    for k, v in sample.items():
        assert theirs[k].shape == ours[k].shape == v.shape
        assert np.array_equal(theirs[k], v) and np.array_equal(ours[k], v)
    assert [p.name for p in tmp_path.iterdir()] != [] and not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_safetensors_is_memory_mapped_and_bf16_widened(tmp_path):
    import torch
    from safetensors.torch import save_file

    bf16 = torch.randn(4, 5).to(torch.bfloat16)
    save_file({"w": torch.randn(64, 64), "bf": bf16}, tmp_path / "m.safetensors")
    state = safetensors_io.load(tmp_path / "m.safetensors")
    base = state["w"]
    while getattr(base, "base", None) is not None:
        base = base.base
    assert isinstance(base, __import__("mmap").mmap)  # a view into the mapped file, not a copy
    assert state["w"].flags.writeable  # copy-on-write: writable for torch.from_numpy, the file stays untouched
    assert state["bf"].dtype == np.float32 and np.array_equal(state["bf"], bf16.float().numpy())


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:-10], "truncated"),
    (lambda raw: raw[:4], "too short"),
    (lambda raw: struct.pack("<Q", 10**12) + raw[8:], "header length"),
    (lambda raw: raw[:8] + b"X" + raw[9:], "corrupt safetensors header"),
    (lambda raw: b"", "empty|too short"),
])
def test_safetensors_damage(tmp_path, damage, message):
    safetensors_io.save({"w": np.ones((8, 8), np.float32), "b": np.ones(8, np.float32)}, tmp_path / "ok.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(damage((tmp_path / "ok.safetensors").read_bytes()))
    with pytest.raises(WeightsError, match=message):
        read_checkpoint(tmp_path / "bad.safetensors")


def test_safetensors_overlapping_offsets(tmp_path):
    header = (b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
              b'"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}')
    (tmp_path / "x.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(12))
    with pytest.raises(CorruptCheckpointError, match="overlap"):
        safetensors_io.load(tmp_path / "x.safetensors")


def test_safetensors_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "w.safetensors"
    safetensors_io.save({"old": np.ones(3, np.float32)}, target)

    class Boom:
        shape, dtype, size = (3,), np.dtype("f4"), 3

        def __array__(self, dtype=None, copy=None):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        safetensors_io.save({"new": np.zeros(3, np.float32), "bad": Boom()}, target)
    assert list(safetensors_io.load(target)) == ["old"]
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


# -- pickles ---------------------------------------------------------------------------------------------------------
class Payload:
    """Unpickling this runs a shell command: exactly what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("container", ["torch-zip", "torch-legacy", "raw-pickle"])
def test_pickle_code_payload_is_refused_and_never_runs(tmp_path, container):
    import torch

    marker = tmp_path / "pwned"
    evil = {"stem.conv.weight": torch.zeros(2), "x": Payload(marker)}
    path = tmp_path / "model.pth"
    if container.startswith("torch"):
        torch.save(evil, path, _use_new_zipfile_serialization=container == "torch-zip")
    else:
        path.write_bytes(pickle.dumps(evil))
    with pytest.raises(UnsafeCheckpointError, match=r"refused to load: the pickle references (posix|os)\.system.*"
                                                    r"nothing from it was run"):
        read_checkpoint(path)
    assert not marker.exists()


def test_pickles_are_read_without_torch_memory_mapped(tmp_path, monkeypatch):
    """With torch installed too, the host's numpy reader reads torch's zip format: no torch.load, and contiguous
    tensors are copy-on-write maps of the file (writable; writes never reach the file)."""
    import mmap

    import torch

    torch.save({"w": torch.arange(6.0).reshape(2, 3), "t": torch.arange(6.0).reshape(2, 3).t()}, tmp_path / "a.pth")
    before = (tmp_path / "a.pth").read_bytes()
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    state = pickle_io.load(tmp_path / "a.pth")
    base = state["w"]
    while getattr(base, "base", None) is not None and not isinstance(base, mmap.mmap):
        base = base.base
    assert isinstance(base, mmap.mmap)
    assert np.array_equal(state["w"], np.arange(6.0).reshape(2, 3)) and np.array_equal(state["t"], state["w"].T)
    state["w"][0, 0] = 42.0
    assert (tmp_path / "a.pth").read_bytes() == before


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_numpy_unpickler_matches_torch(tmp_path, zip_format):
    """The host's own reader gives what torch.load gives, for torch's zip format and its legacy (pre-1.6) format
    (pycls's and early VISSL's checkpoints); views into a shared storage included."""
    import torch

    model = timm_model("regnety_002")
    sd = model.state_dict()
    sd["half"] = torch.randn(3, 4).half()
    sd["bf16"] = torch.randn(3, 4).to(torch.bfloat16)
    sd["strided"] = torch.randn(4, 6)[:, ::2]
    sd["base"] = torch.arange(10.0)
    sd["view"] = sd["base"][3:7]
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "m.pth", _use_new_zipfile_serialization=zip_format)
    a, b = torch.load(tmp_path / "m.pth", weights_only=True), pickle_io.load(tmp_path / "m.pth")
    assert list(a["state_dict"]) == list(b["state_dict"]) and a["epoch"] == b["epoch"]
    for k, v in a["state_dict"].items():
        want = (v.float() if v.dtype == torch.bfloat16 else v).numpy()  # bfloat16 widened exactly
        assert want.dtype == b["state_dict"][k].dtype and np.array_equal(want, b["state_dict"][k]), k


def test_numpy_unpickler_runs_without_torch(tmp_path):
    import torch

    model = timm_model("regnetx_002")
    torch.save(model.state_dict(), tmp_path / "m.pth")
    code = ("import sys; sys.modules['torch'] = None\n"  # torch unimportable in this process
            "from regnet_zoo.weights.checkpoint import read_checkpoint\n"
            f"ck = read_checkpoint({str(tmp_path / 'm.pth')!r})\n"
            "print(ck.key_space, ck.variant, len(ck.state), sys.modules.get('torch') is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["timm", "regnetx_002", "222", "False"]


def _rezipped(raw_zip: bytes, change) -> bytes:
    """A torch zip checkpoint with ``change(name, data)`` applied to each member (CRCs recomputed)."""
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw_zip)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, change(name, src.read(name)))
    return out.getvalue()


def _flip_in_data_pkl(raw: bytes) -> bytes:
    """One byte of data.pkl's stored bytes changed in place: the zip directory is intact, the CRC no longer fits."""
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        pkl = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    at = raw.index(pkl) + len(pkl) // 2
    return raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1:]


RANDOM_BYTES = np.random.default_rng(0).bytes(4096)  # what `head -c 4096 /dev/urandom > x.pth` gives a user
assert RANDOM_BYTES[:1] not in (b"P", b"\x80")
CUT = 1000  # bytes kept of a truncated file

# (name, how the file is made from torch.save's zip bytes and its legacy-format bytes, the message after "PATH: ")
DAMAGE = [
    ("random-bytes", lambda z, legacy: RANDOM_BYTES,
     "bad magic: the file starts with bytes " + " ".join(f"{b:02x}" for b in RANDOM_BYTES[:8]) + ", neither a zip "
     "archive ('PK', what torch.save writes) nor a pickle (byte 0x80); a damaged file, or a download that saved "
     "something else?"),
    ("zeros", lambda z, legacy: b"\x00" * 64,
     "bad magic: the file starts with bytes 00 00 00 00 00 00 00 00, neither a zip archive ('PK', what torch.save "
     "writes) nor a pickle (byte 0x80); a damaged file, or a download that saved something else?"),
    ("html", lambda z, legacy: b"<!DOCTYPE html><html>Not Found</html>\n",
     "bad magic: the file starts with bytes 3c 21 44 4f 43 54 59 50 (text: '<!DOCTYPE html><'...), neither a zip "
     "archive ('PK', what torch.save writes) nor a pickle (byte 0x80); a damaged file, or a download that saved "
     "something else?"),
    ("truncated-zip", lambda z, legacy: z[:CUT],
     f"truncated zip archive: it starts like torch.save's zip format, but its {CUT:,} bytes end before the archive's "
     f"directory (an interrupted download or copy?)"),
    ("crc", lambda z, legacy: _flip_in_data_pkl(z), "damaged zip archive: member ok/data.pkl fails its CRC check"),
    ("unknown-opcode", lambda z, legacy: _rezipped(z, lambda n, d: d[:2] + b"\xfe" + d[3:] if n.endswith("data.pkl")
                                                   else d),
     "corrupt pickle: unknown opcode 0xfe at byte 2 of ok/data.pkl"),
    ("truncated-pickle", lambda z, legacy: legacy[:40],
     "truncated pickle: the file ends at byte 40 in the middle of the pickle that starts at byte 21 (before its "
     "STOP opcode)"),
    ("legacy-without-pickles", lambda z, legacy: legacy[:21],
     "truncated: the file ends after 2 of the 5 pickles of torch's legacy format (before its system info), 21 bytes"),
    ("plain-pickle", lambda z, legacy: pickle.dumps({"a": [1.0, 2.0]}, protocol=2),
     "not a torch checkpoint: a pickle that does not start with torch's magic number (torch.save writes a zip "
     "archive, or a legacy pickle led by that number)"),
    ("zip-without-data-pkl", lambda z, legacy: _zip({"weights.npy": b"x"}),
     "not a torch checkpoint: a zip archive without data.pkl"),
]


def _zip(members: dict) -> bytes:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize("name, make, message", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_pickle_is_told_in_our_words(tmp_path, name, make, message):
    """What is wrong with the file, never torch's advice to re-run with weights_only=False (unsafe for an untrusted
    file, and no help for a damaged one)."""
    import torch

    torch.save({"a": torch.ones(1000)}, tmp_path / "ok.pth")
    torch.save({"a": torch.ones(1000)}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(make((tmp_path / "ok.pth").read_bytes(), (tmp_path / "legacy.pth").read_bytes()))
    with pytest.raises(CorruptCheckpointError) as e:
        read_checkpoint(bad)
    assert str(e.value) == f"{bad}: {message}"


def test_a_legacy_file_cut_in_its_tensor_data(tmp_path):
    import torch

    torch.save({"a": torch.ones(1000)}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    raw = (tmp_path / "legacy.pth").read_bytes()
    (tmp_path / "bad.pth").write_bytes(raw[:-100])
    with pytest.raises(CorruptCheckpointError) as e:
        read_checkpoint(tmp_path / "bad.pth")
    assert str(e.value) == (f"{tmp_path / 'bad.pth'}: truncated: the tensor data ends early (3,900 of a storage's "
                            f"4,000 bytes)")


def test_training_checkpoint_wrappers(tmp_path):
    import torch

    model = timm_model("regnetx_002")
    ddp = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": ddp, "optimizer": {}}, tmp_path / "train.pth.tar")
    ck = read_checkpoint(tmp_path / "train.pth.tar")
    assert ck.variant == "regnetx_002" and any("'state_dict'" in n for n in ck.notes)
    np.testing.assert_array_equal(run(timm_with("regnetx_002", ck.state), X), run(model, X))


def test_unknown_format(tmp_path):
    (tmp_path / "weights.dat").write_bytes(b"hello world, not weights")
    with pytest.raises(WeightsError, match="unknown checkpoint format"):
        read_checkpoint(tmp_path / "weights.dat")
    with pytest.raises(WeightsError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="no weights found"):
        read_checkpoint(tmp_path / "empty")


# -- transformers PT / TF / Flax, sharded ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, fmt, expected_format", [
    ("regnety_002", "pt", "safetensors"), ("regnety_002", "tf", "tf-h5"), ("regnety_002", "flax", "flax-msgpack"),
    ("regnety_002", "pt-sharded", "safetensors+sharded"), ("regnety_002", "bin-sharded", "pickle+sharded"),
    ("regnety_002", "tf-sharded", "tf-h5+sharded"), ("regnety_002", "flax-sharded", "flax-msgpack+sharded"),
    ("regnetx_002", "pt", "safetensors"), ("regnetx_002", "tf", "tf-h5"),
])
def test_transformers_directories(hf_dirs, name, fmt, expected_format):
    path, logits = hf_dirs[name, fmt]
    ck = read_checkpoint(path)
    assert (ck.key_space, ck.format, ck.variant, ck.num_classes) == ("hf", expected_format, name, 10)
    np.testing.assert_array_equal(run(timm_with(name, ck.state), X), logits)
    reference = read_checkpoint(hf_dirs[name, "pt"][0]).state
    assert all(np.array_equal(ck.state[k], reference[k]) for k in reference)


def test_transformers_headless_tf(hf_dirs):
    ck = read_checkpoint(hf_dirs["regnety_002", "tf-headless"][0])
    assert ck.num_classes == 0 and ck.variant == "regnety_002"


def test_missing_shard(hf_dirs, tmp_path):
    import shutil

    src = hf_dirs["regnety_002", "pt-sharded"][0]
    shutil.copytree(src, tmp_path / "d")
    shard = sorted((tmp_path / "d").glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(WeightsError, match=rf"1 of \d+ shards are missing: {shard.name}"):
        read_checkpoint(tmp_path / "d")


def test_forcing_another_key_space_on_transformers_files(hf_dirs):
    with pytest.raises(WeightsError, match="always in the 'hf' key space, not 'timm'"):
        read_checkpoint(hf_dirs["regnety_002", "tf"][0], keys="timm")
