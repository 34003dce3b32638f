"""An offline Hugging Face hub cache laid out like the real one (``models--org--name/{blobs,snapshots/<rev>,refs}``),
filled by hand, with huggingface_hub pointed at it and offline mode on."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest


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


def use_hub_cache(root: Path, monkeypatch) -> HubCache:
    """Point huggingface_hub at the cache ``root`` (``<HF_HOME>/hub``) with offline mode on (read at call time)."""
    from huggingface_hub import constants

    root.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HF_HOME", str(root.parent))
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return HubCache(root)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> HubCache:
    """An empty hub cache with huggingface_hub pointed at it and offline mode on."""
    return use_hub_cache(tmp_path / "hf_home" / "hub", monkeypatch)
