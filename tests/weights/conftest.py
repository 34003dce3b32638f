"""Fixtures of the weights tests: an offline Hugging Face cache laid out like the real one, and small checkpoints
written by the real libraries (timm, transformers, torchvision) with random weights and randomised BN statistics."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from testdeps import require

REVISION = "0123456789abcdef0123456789abcdef01234567"


class HubCache:
    """A Hugging Face hub cache (``models--org--name/{blobs,snapshots/<rev>,refs/main}``) filled by hand."""

    def __init__(self, root: Path):
        self.root = root

    def repo_dir(self, repo_id: str) -> Path:
        return self.root / ("models--" + repo_id.replace("/", "--"))

    def add(self, repo_id: str, files: dict[str, Path | bytes | str], revision: str = REVISION) -> Path:
        """Put ``files`` (name -> source path or content) into the snapshot of ``repo_id``; return the snapshot."""
        repo = self.repo_dir(repo_id)
        snapshot = repo / "snapshots" / revision
        (repo / "blobs").mkdir(parents=True, exist_ok=True)
        snapshot.mkdir(parents=True, exist_ok=True)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(revision)
        for name, src in files.items():
            data = src.encode() if isinstance(src, str) else src if isinstance(src, bytes) else Path(src).read_bytes()
            blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
            blob.write_bytes(data)
            link = snapshot / name
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            os.symlink(os.path.relpath(blob, link.parent), link)  # what huggingface_hub does on POSIX
        return snapshot

    def add_dir(self, repo_id: str, directory: Path, revision: str = REVISION) -> Path:
        return self.add(repo_id, {p.name: p for p in sorted(directory.iterdir()) if p.is_file()}, revision)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> HubCache:
    """An empty hub cache with huggingface_hub pointed at it and offline mode on (read at call time)."""
    from huggingface_hub import constants

    root = tmp_path / "hf_home" / "hub"
    root.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(root.parent))
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return HubCache(root)


@pytest.fixture(scope="session")
def hf_dirs(tmp_path_factory):
    """Random RegNetY-200MF (10 classes) saved by transformers in every format it writes, sharded or not, and
    RegNetX-200MF in PT and TF (transformers' Flax RegNet cannot build X). ``{(name, fmt): (dir, PT logits)}``."""
    require("transformers", "tensorflow", "flax")
    from transformers import FlaxRegNetForImageClassification, TFRegNetForImageClassification, TFRegNetModel
    from weights_helpers import X, hf_model, run

    root = tmp_path_factory.mktemp("hf")
    out = {}
    for name in ("regnety_002", "regnetx_002"):
        pt = hf_model(name, num_labels=10)
        pt.save_pretrained(root / f"{name}-pt")
        logits = run(pt, X)
        tf = TFRegNetForImageClassification.from_pretrained(root / f"{name}-pt", from_pt=True)
        tf.save_pretrained(root / f"{name}-tf")
        formats = ["pt", "tf"]
        if name == "regnety_002":
            pt.save_pretrained(root / f"{name}-pt-sharded", max_shard_size="400KB")
            pt.save_pretrained(root / f"{name}-bin-sharded", max_shard_size="400KB", safe_serialization=False)
            tf.save_pretrained(root / f"{name}-tf-sharded", max_shard_size="400KB")
            headless = TFRegNetModel.from_pretrained(root / f"{name}-pt", from_pt=True)
            headless.save_pretrained(root / f"{name}-tf-headless")
            flax = FlaxRegNetForImageClassification.from_pretrained(root / f"{name}-pt", from_pt=True)
            flax.save_pretrained(root / f"{name}-flax")
            flax.save_pretrained(root / f"{name}-flax-sharded", max_shard_size="400KB")
            formats += ["pt-sharded", "bin-sharded", "tf-sharded", "tf-headless", "flax", "flax-sharded"]
        for fmt in formats:
            out[name, fmt] = root / f"{name}-{fmt}", logits
    return out
