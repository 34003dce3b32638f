"""Hugging Face Hub resolution through ``huggingface_hub`` (its cache, ``HF_HUB_OFFLINE`` and tokens honoured).

A repository is fetched with ``snapshot_download`` restricted to the files a RegNet needs, in preference order:
safetensors (single or sharded), then PyTorch pickles, then transformers' TF / Flax files. Online, only the first
format present is downloaded; offline, the cached snapshot is used as it is, and a repository that is not cached
is a clear error rather than a network attempt.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from ..errors import WeightsError, spell
from .readers import find_weights

FORMAT_PATTERNS = (
    ("safetensors", ["model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"]),
    ("pytorch", ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"]),
    ("tensorflow", ["tf_model.h5", "tf_model.h5.index.json", "tf_model-*-of-*.h5"]),
    ("flax", ["flax_model.msgpack", "flax_model.msgpack.index.json", "flax_model-*-of-*.msgpack"]),
)
CONFIG = "config.json"


def _cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def download_failure(error: BaseException) -> str:
    """Why a download failed, in one line: the innermost cause of ``error``'s chain (``huggingface.co: Name or
    service not known``, ``127.0.0.1:9: Connection refused``, an HTTP status), not huggingface_hub's generic
    "check your internet connection"."""
    chain: list[BaseException] = []
    seen = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    host = None
    for exc in chain:  # requests / urllib3 name the host in their messages
        m = re.search(r"host='([^']+)', port=(\d+)", str(exc))
        if m:
            host = m.group(1) if m.group(2) in ("443", "80") else f"{m.group(1)}:{m.group(2)}"
            break
    root = chain[-1]
    if isinstance(root, OSError) and root.strerror:
        text = root.strerror
        if isinstance(root, socket.gaierror):
            return f"cannot resolve {host or 'the host name'}: {text}"
        if root.filename:
            text = f"{root.filename}: {text}"
    else:
        response = next((getattr(exc, "response", None) for exc in chain if getattr(exc, "response", None) is not None),
                        None)
        status = getattr(response, "status_code", None)
        line = next((ln.strip() for ln in str(root).splitlines() if ln.strip()), "")
        text = f"HTTP {status}" if status else f"{type(root).__name__}" + (f": {line[:160]}" if line else "")
    return f"{host}: {text}" if host else text


def _not_available(repo_id: str, revision: str | None, cause: str = "") -> WeightsError:
    rev = f" (revision {revision})" if revision else ""
    if _offline():
        why = f"HF_HUB_OFFLINE is set and {repo_id}{rev} is not in the Hugging Face cache ({_cache_dir()})"
    else:
        why = (f"{repo_id}{rev} could not be downloaded{' (' + cause + ')' if cause else ''} and is not in the Hugging "
               f"Face cache ({_cache_dir()})")
        cause = ""
    return WeightsError(f"{why}{': ' + cause if cause else ''}. Download it once with network access "
                        f"(`hf download {repo_id}` or `huggingface-cli download {repo_id}`), point HF_HUB_CACHE / "
                        f"HF_HOME at a cache that has it, or pass {spell('pretrained=<local path>')}.")


def fetch(repo_id: str, revision: str | None = None, filename: str | None = None) -> Path:
    """Local path of the weights of ``repo_id``: its snapshot directory, or ``filename`` in it when given."""
    try:
        from huggingface_hub import hf_hub_download, snapshot_download
    except ImportError:
        raise WeightsError("downloading weights needs huggingface_hub: pip install huggingface_hub") from None
    try:
        from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, LocalEntryNotFoundError,
                                            RepositoryNotFoundError, RevisionNotFoundError)
    except ImportError:  # huggingface_hub < 0.24
        from huggingface_hub.utils import (EntryNotFoundError, GatedRepoError, LocalEntryNotFoundError,
                                           RepositoryNotFoundError, RevisionNotFoundError)
    try:
        if filename:
            path = Path(hf_hub_download(repo_id, filename, revision=revision))
            try:  # a transformers config beside it tells the variant; optional
                hf_hub_download(repo_id, CONFIG, revision=revision)
            except (EntryNotFoundError, LocalEntryNotFoundError):
                pass
            return path
        snapshot = None
        for _, patterns in FORMAT_PATTERNS:
            snapshot = Path(snapshot_download(repo_id, revision=revision, allow_patterns=[CONFIG, *patterns]))
            if find_weights(snapshot) is not None:
                return snapshot
        if _offline():
            raise _not_available(repo_id, revision, "the cached snapshot holds no weights file")
        raise WeightsError(f"{repo_id}: the repository has no weights regnet-zoo can read (looked for "
                           f"{', '.join(p[0] for _, p in FORMAT_PATTERNS)})")
    except LocalEntryNotFoundError as e:  # a subclass of EntryNotFoundError: must come first
        raise _not_available(repo_id, revision, "" if _offline() else download_failure(e)) from e
    except GatedRepoError:
        raise WeightsError(f"{repo_id} is gated: accept its terms on the hub and log in (`hf auth login`)") from None
    except RepositoryNotFoundError:
        raise WeightsError(f"{repo_id}: no such repository on the Hugging Face Hub (or it is private: log in with "
                           f"`hf auth login`)") from None
    except RevisionNotFoundError:
        raise WeightsError(f"{repo_id}: revision {revision!r} does not exist") from None
    except EntryNotFoundError:
        raise WeightsError(f"{repo_id}: has no file {filename!r}") from None
    except OSError as e:  # HTTP and network errors (requests' are OSErrors), permission problems, full disk...
        raise WeightsError(f"{repo_id}: could not be fetched into the cache ({_cache_dir()}): "
                           f"{download_failure(e)}") from e
