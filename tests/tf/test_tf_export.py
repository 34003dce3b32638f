"""SavedModel export (any spatial size), reloaded and compared; import order and backend selection."""

from __future__ import annotations

import pytest

import regnet_zoo as rz
from testdeps import require
from harness import random_input, random_state, rel_err

require("tensorflow", "keras", "keras_hub")

from tf_helpers import nhwc, run_script, tf_modules  # noqa: E402

tf, keras = tf_modules()
from regnet_zoo_tf.export import export_saved_model  # noqa: E402
from regnet_zoo_tf.weights import load_canonical  # noqa: E402


def test_saved_model_serves_any_spatial_size(tmp_path):
    state = random_state("regnety_002", num_classes=5)
    model = rz.create("regnety_002", "tf", num_classes=5)
    load_canonical(model, state)
    path = export_saved_model(model, tmp_path / "classifier")
    served = tf.saved_model.load(path)
    signature = served.signatures["serving_default"]
    assert signature.structured_input_signature[1]["images"].shape.as_list() == [None, None, None, 3]
    for batch, size in ((1, 64), (3, 96), (2, 72)):
        x = nhwc(random_input(batch=batch, size=size))
        want = model(x, training=False)
        assert rel_err(served.serve(x)["logits"], want) < 1e-5
        assert rel_err(signature(images=tf.constant(x))["logits"], want) < 1e-5
    with pytest.raises(Exception, match="at least 32 pixels"):
        served.serve(tf.zeros((1, 16, 64, 3)))


def test_saved_model_of_a_channels_first_backbone_returns_named_levels(tmp_path):
    state = {k: v for k, v in random_state("regnetx_002").items() if not k.startswith("head.")}
    backbone = rz.create("regnetx_002", "tf", features_only=True, out_indices=(2, 4), data_format="channels_first")
    load_canonical(backbone, state)
    served = tf.saved_model.load(export_saved_model(backbone, tmp_path / "backbone"))
    x = random_input(batch=2, size=80)
    out = served.serve(x)
    assert sorted(out) == ["P3", "P5"]
    want = backbone(x, training=False)
    assert rel_err(out["P3"], want[0]) < 1e-5 and rel_err(out["P5"], want[1]) < 1e-5
    assert tuple(out["P5"].shape) == (2, 368, 3, 3)


def test_tensorflow_after_torch_in_one_process():
    """torch first, then the tf plugin (TensorFlow), then torch._dynamo (triton): must not segfault."""
    result = run_script("""
        import torch
        import regnet_zoo as rz
        m = rz.create("regnetx_002", "tf", num_classes=0)
        import torch._dynamo, timm
        import numpy as np
        print(m(np.zeros((1, 32, 32, 3), np.float32)).shape)
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(1, 368)" in result.stdout


def test_another_keras_backend_is_a_clear_error():
    result = run_script("""
        import regnet_zoo as rz
        try:
            rz.create("regnetx_002", "tf")
        except RuntimeError as e:
            print("ERROR:", e)
    """, env={"KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ERROR: KERAS_BACKEND='jax', but regnet_zoo_tf needs the TensorFlow backend" in result.stdout


def test_registering_the_plugin_imports_no_framework():
    result = run_script("""
        import sys
        import regnet_zoo as rz, regnet_zoo_tf
        rz.list_frameworks(); rz.list_variants(framework="tf"); rz.feature_info("regnety_040")
        print(sorted(m for m in ("tensorflow", "keras", "keras_hub") if m in sys.modules))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
