"""Fixtures of the weights tests: an offline Hugging Face cache laid out like the real one, and small checkpoints
written by the real libraries (timm, transformers, torchvision) with random weights and randomised BN statistics."""

from __future__ import annotations

import pytest

from hubcache import hub_cache  # noqa: F401  (the fixture, shared with other test folders)
from testdeps import require


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
