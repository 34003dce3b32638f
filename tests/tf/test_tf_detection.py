"""keras-hub integration: config round trip, ImageClassifier, and RetinaNet (examples/tf_retinanet.py)."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import regnet_zoo as rz
from testdeps import require
from harness import random_input, random_state

require("tensorflow", "keras", "keras_hub")

from tf_helpers import ROOT, nhwc, tf_modules  # noqa: E402

tf, keras = tf_modules()
import keras_hub  # noqa: E402

from regnet_zoo_tf.backbone import RegNetBackbone  # noqa: E402
from regnet_zoo_tf.weights import export_canonical, load_canonical  # noqa: E402


def _example():
    path = os.path.join(ROOT, "examples", "tf_retinanet.py")
    spec = importlib.util.spec_from_file_location("tf_retinanet_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kwargs", [dict(features_only=True, out_indices=(1, 2, 3, 4), frozen_stages=1, force=True),
                                    dict(data_format="channels_first", grouped_conv="split"),
                                    dict(features_only=True, out_indices=(2, 3, 4), output_stride=8)])
def test_backbone_is_a_registered_feature_pyramid_backbone_with_config_round_trip(kwargs):
    model = rz.create("regnety_002", "tf", **kwargs)
    backbone = model if isinstance(model, RegNetBackbone) else model.backbone
    assert isinstance(backbone, keras_hub.models.FeaturePyramidBackbone)
    assert keras.saving.get_registered_name(RegNetBackbone) == "regnet_zoo>RegNetBackbone"
    config = backbone.get_config()
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(backbone))
    assert type(clone) is RegNetBackbone and clone.get_config() == config
    assert [f.as_dict() for f in clone.feature_info] == [f.as_dict() for f in backbone.feature_info]
    assert list(clone.pyramid_outputs) == list(backbone.pyramid_outputs)
    assert [layer.trainable for layer in clone.layers] == [layer.trainable for layer in backbone.layers]
    clone.set_weights(backbone.get_weights())
    x = random_input(size=64)
    x = x if backbone.data_format == "channels_first" else nhwc(x)
    for a, b in zip(keras.tree.flatten(clone(x)), keras.tree.flatten(backbone(x))):
        np.testing.assert_array_equal(a, b)


def test_classifier_saves_and_reloads_as_keras_file(tmp_path):
    state = random_state("regnetx_002", num_classes=6)
    model = rz.create("regnetx_002", "tf", num_classes=6)
    load_canonical(model, state)
    path = str(tmp_path / "regnetx_002.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded) is type(model)
    exported = export_canonical(reloaded)
    assert all(np.array_equal(exported[k], v) for k, v in state.items())
    x = nhwc(random_input(size=64))
    np.testing.assert_array_equal(reloaded(x), model(x))


def test_keras_hub_image_classifier_takes_the_backbone_unchanged():
    backbone = rz.create("regnetx_002", "tf", num_classes=0).backbone
    classifier = keras_hub.models.ImageClassifier(backbone=backbone, num_classes=4)
    classifier.compile(optimizer=keras.optimizers.SGD(0.01))
    x = nhwc(random_input(batch=4, size=64))
    history = classifier.fit(x, np.array([0, 1, 2, 3]), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert classifier.predict(x, verbose=0).shape == (4, 4)


def test_retinanet_example_fits_predicts_saves_and_reloads():
    result = _example().run("regnetx_002", image_size=64, batch=2, num_classes=3)
    assert np.isfinite(result["loss"])
    detections = result["detections"]
    assert {"boxes", "confidence", "labels", "num_detections"} <= set(detections)
    assert detections["boxes"].shape[0] == 2 and detections["boxes"].shape[-1] == 4
    assert result["reload_max_diff"] == 0.0
    encoder = result["reloaded"].backbone.image_encoder
    assert isinstance(encoder, RegNetBackbone) and list(encoder.pyramid_outputs) == ["P3", "P4", "P5"]
