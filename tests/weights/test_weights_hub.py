"""Weight tags through huggingface_hub against a hub cache laid out by hand, offline: the code path a user with
internet runs (snapshot_download / hf_hub_download), with the cache and HF_HUB_OFFLINE honoured."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import torch  # noqa: F401  (tests/conftest.py imported torch + torch._dynamo before TensorFlow)
import regnet_zoo as rz
from regnet_zoo.errors import UnknownVariantError, WeightsError
from regnet_zoo.weights import hub, safetensors_io
from weights_helpers import X, hf_model, run, timm_model, torch_state

import timm  # noqa: F401,E402  (a test dependency: CI installs it)


@pytest.fixture(scope="module")
def timm_files(tmp_path_factory):
    """regnetx_002 as timm publishes it: model.safetensors (timm names) + pytorch_model.bin."""
    import torch

    root = tmp_path_factory.mktemp("timm")
    model = timm_model("regnetx_002")
    safetensors_io.save(torch_state(model), root / "model.safetensors", {"format": "pt"})
    torch.save(model.state_dict(), root / "pytorch_model.bin")
    (root / "config.json").write_text(json.dumps({"architecture": "regnetx_002", "num_classes": 1000}))
    return root, run(model, X)


def test_timm_tag_offline_from_cache(hub_cache, timm_files):
    root, logits = timm_files
    hub_cache.add("timm/regnetx_002.pycls_in1k", {n: root / n for n in ("model.safetensors", "config.json")})
    model = rz.create("regnetx_002.pycls_in1k", "torch", pretrained=True).eval()
    np.testing.assert_array_equal(run(model, X), logits)
    model = rz.create("regnetx_002", "torch", pretrained=True).eval()  # the default tag is pycls_in1k
    np.testing.assert_array_equal(run(model, X), logits)


def test_pickle_only_repo_and_safetensors_preference(hub_cache, timm_files, monkeypatch):
    root, logits = timm_files
    snapshot = hub_cache.add("timm/regnetx_002.pycls_in1k", {"pytorch_model.bin": root / "pytorch_model.bin"})
    assert hub.fetch("timm/regnetx_002.pycls_in1k") == snapshot
    np.testing.assert_array_equal(run(rz.create("regnetx_002", pretrained=True).eval(), X), logits)
    hub_cache.add("timm/regnetx_002.pycls_in1k", {"model.safetensors": root / "model.safetensors"})
    seen = []
    real = safetensors_io.load
    monkeypatch.setattr(safetensors_io, "load", lambda p: seen.append(os.path.basename(p)) or real(p))
    rz.create("regnetx_002", pretrained=True)
    assert seen == ["model.safetensors"]


def test_hf_tag_sharded_with_config(hub_cache, tmp_path):
    hf = hf_model("regnety_002")
    hf.save_pretrained(tmp_path / "hf", max_shard_size="400KB")
    hub_cache.add_dir("facebook/regnet-y-002", tmp_path / "hf")
    model = rz.create("regnety_002.hf_in1k", "torch", pretrained=True).eval()
    np.testing.assert_array_equal(run(model, X), run(hf, X))
    model = rz.create("facebook/regnet-y-002", pretrained=True).eval()  # the hub id selects the tag
    np.testing.assert_array_equal(run(model, X), run(hf, X))


def test_explicit_filename_through_hf_hub_download(hub_cache, timm_files):
    root, _ = timm_files
    snapshot = hub_cache.add("someone/regnet", {"weights/ema.safetensors": root / "model.safetensors"})
    assert hub.fetch("someone/regnet", filename="weights/ema.safetensors") == snapshot / "weights" / "ema.safetensors"
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE is set and someone/regnet.*not in the Hugging Face cache"):
        hub.fetch("someone/regnet", filename="other.safetensors")


def test_offline_and_not_cached(hub_cache):
    with pytest.raises(WeightsError) as e:
        rz.create("regnety_002.hf_in1k", pretrained=True)
    message = str(e.value)
    assert "HF_HUB_OFFLINE is set and facebook/regnet-y-002 is not in the Hugging Face cache" in message
    assert str(hub_cache.root) in message and "hf download facebook/regnet-y-002" in message
    assert "pretrained=<local path>" in message


def _chained(*errors):
    """``errors[0]`` raised from ``errors[1]`` raised from ... (as huggingface_hub, requests and urllib3 chain them)."""
    for outer, inner in zip(errors, errors[1:]):
        outer.__cause__ = inner
    return errors[0]


def test_download_failure_is_the_innermost_cause_in_one_line():
    import socket

    import requests
    from huggingface_hub.errors import LocalEntryNotFoundError

    hf = LocalEntryNotFoundError("An error happened while trying to locate the files on the Hub and we cannot find "
                                 "the appropriate snapshot folder. Please check your internet connection.")
    dns = _chained(hf, requests.ConnectionError(
        "HTTPSConnectionPool(host='huggingface.co', port=443): Max retries exceeded with url: /api/models/x (Caused "
        "by NameResolutionError(\"Failed to resolve 'huggingface.co' ([Errno -2] Name or service not known)\"))"),
        socket.gaierror(-2, "Name or service not known"))
    assert hub.download_failure(dns) == "cannot resolve huggingface.co: Name or service not known"
    refused = _chained(LocalEntryNotFoundError("..."),
                       requests.ConnectionError("HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded"),
                       ConnectionRefusedError(111, "Connection refused"))
    assert hub.download_failure(refused) == "127.0.0.1:9: Connection refused"
    response = requests.Response()
    response.status_code = 503
    http = requests.HTTPError("503 Server Error: Service Unavailable for url: https://huggingface.co/api/models/x",
                              response=response)
    assert hub.download_failure(http) == "HTTP 503"


def test_download_failure_reaches_the_message(monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    def no_network(*args, **kwargs):
        raise _chained(LocalEntryNotFoundError("Please check your internet connection."),
                       ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    with pytest.raises(WeightsError) as e:
        rz.create("regnety_002.hf_in1k", pretrained=True)
    assert str(e.value).startswith(f"facebook/regnet-y-002 could not be downloaded (Connection refused) and is not in "
                                   f"the Hugging Face cache ({tmp_path}). Download it once with network access")
    assert str(e.value).endswith(", or pass pretrained=<local path>.")  # the Python keyword, from Python


def test_cached_snapshot_without_weights(hub_cache):
    hub_cache.add("facebook/regnet-y-002", {"config.json": "{}"})
    with pytest.raises(WeightsError, match="not in the Hugging Face cache.*the cached snapshot holds no weights file"):
        rz.create("regnety_002.hf_in1k", pretrained=True)


def test_tag_errors_suggest():
    with pytest.raises(UnknownVariantError, match=r"unknown weight tag 'pycls_in1' for variant 'regnetx_002'; did you "
                                                  r"mean 'regnetx_002\.pycls_in1k'\?"):
        rz.create("regnetx_002.pycls_in1", pretrained=True)
    with pytest.raises(WeightsError, match="neither a weight tag of 'regnetx_002' nor an existing file.*did you mean "
                                           "tag 'pycls_in1k'"):
        rz.create("regnetx_002", pretrained="pycls_in1")


def test_from_pretrained_hub_repo_outside_the_registry(hub_cache, tmp_path):
    hf = hf_model("regnety_002", num_labels=7)
    hf.save_pretrained(tmp_path / "ft")
    hub_cache.add_dir("someone/regnety-002-flowers", tmp_path / "ft")
    model = rz.from_pretrained("someone/regnety-002-flowers").eval()
    np.testing.assert_array_equal(run(model, X), run(hf, X))


def test_real_environment_variables_in_a_fresh_process(hub_cache, timm_files, tmp_path):
    """HF_HOME / HF_HUB_OFFLINE read by huggingface_hub at import, as a user sets them, through the CLI."""
    root, _ = timm_files
    hub_cache.add("timm/regnetx_002.pycls_in1k", {"model.safetensors": root / "model.safetensors"})
    env = {**os.environ, "HF_HOME": str(hub_cache.root.parent), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    out = subprocess.run([sys.executable, "-m", "regnet_zoo", "convert", "regnetx_002.pycls_in1k",
                          str(tmp_path / "out.safetensors"), "--json"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["source"] == "timm/regnetx_002.pycls_in1k"
    a, b = safetensors_io.load(tmp_path / "out.safetensors"), safetensors_io.load(root / "model.safetensors")
    assert all(np.array_equal(a[k], b[k]) for k in a) and len(a) == len(b) - 44  # BN counters dropped
    out = subprocess.run([sys.executable, "-m", "regnet_zoo", "convert", "regnety_002.hf_in1k",
                          str(tmp_path / "y.safetensors")], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 1 and "HF_HUB_OFFLINE is set and facebook/regnet-y-002" in out.stderr
    assert not (tmp_path / "y.safetensors").exists()
