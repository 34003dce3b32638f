"""RetinaNet (keras-hub) on a regnet-zoo RegNet backbone, TensorFlow / Keras 3.

The backbone `rz.create(..., framework="tf", features_only=True)` returns is a keras-hub
`FeaturePyramidBackbone` with `pyramid_outputs` P2..P5, so keras-hub's RetinaNet takes it unchanged:

    python examples/tf_retinanet.py                      # regnetx_002, random weights, synthetic boxes
    python examples/tf_retinanet.py --variant regnety_008 --pretrained --image-size 512

It trains one step on synthetic boxes, predicts, saves the detector as `.keras`, reloads it and checks the
reloaded detector gives the same raw outputs.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

import regnet_zoo as rz


def build_detector(variant: str = "regnetx_002", num_classes: int = 3, pretrained=False, frozen_stages: int = -1,
                   image_size: int | None = None):
    """A ``keras_hub.models.RetinaNetObjectDetector`` whose image encoder is a regnet-zoo RegNet backbone."""
    import keras_hub  # after rz.create: the plugin imports TensorFlow in a safe order and selects its backend

    backbone = rz.create(variant, framework="tf", pretrained=pretrained, features_only=True,
                         out_indices=(2, 3, 4), frozen_stages=frozen_stages)
    print(f"{variant}: pyramid levels {list(backbone.pyramid_outputs)}, "
          f"channels {[f.channels for f in backbone.feature_info]}")
    retina_backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=backbone, min_level=3, max_level=7, use_p5=False,
        image_shape=(image_size, image_size, backbone.in_chans))
    return keras_hub.models.RetinaNetObjectDetector(backbone=retina_backbone, num_classes=num_classes,
                                                    bounding_box_format="yxyx")


def synthetic_boxes(batch: int = 2, image_size: int = 128, num_classes: int = 3, max_boxes: int = 4, seed: int = 0):
    """Random images and 1..max_boxes random yxyx boxes per image; unused slots are -1 (keras-hub's padding)."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (batch, image_size, image_size, 3)).astype(np.float32)
    boxes = -np.ones((batch, max_boxes, 4), np.float32)
    labels = -np.ones((batch, max_boxes), np.int32)
    for i in range(batch):
        for j in range(rng.integers(1, max_boxes + 1)):
            y0, x0 = rng.uniform(0, image_size * 0.6, 2)
            h, w = rng.uniform(image_size * 0.15, image_size * 0.4, 2)
            boxes[i, j] = (y0, x0, min(y0 + h, image_size - 1), min(x0 + w, image_size - 1))
            labels[i, j] = rng.integers(0, num_classes)
    return images, {"boxes": boxes, "labels": labels}


def run(variant: str = "regnetx_002", image_size: int = 128, batch: int = 2, num_classes: int = 3,
        pretrained=False, save_dir: str | None = None) -> dict:
    """Fit one step, predict, save and reload; returns what happened (used by tests/tf/test_tf_detection.py)."""
    import keras

    detector = build_detector(variant, num_classes, pretrained)
    images, targets = synthetic_boxes(batch, image_size, num_classes)
    detector.compile(optimizer=keras.optimizers.SGD(1e-3))  # keras-hub defaults: Huber box loss, focal class loss
    history = detector.fit(images, targets, batch_size=batch, epochs=1, verbose=0)
    loss = float(history.history["loss"][-1])
    detections = detector.predict(images, verbose=0)
    print(f"one fit step: loss {loss:.4f}; predict: " +
          ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in detections.items()))

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(save_dir or tmp, f"retinanet_{variant}.keras")
        detector.save(path)
        reloaded = keras.saving.load_model(path)
        raw = detector(images, training=False)
        raw_reloaded = reloaded(images, training=False)
    max_diff = max(float(np.max(np.abs(np.asarray(raw[k]) - np.asarray(raw_reloaded[k])))) for k in raw)
    print(f"saved and reloaded {os.path.basename(path)}: max |diff| of raw outputs {max_diff:.3g}")
    return {"loss": loss, "detections": detections, "reload_max_diff": max_diff, "detector": detector,
            "reloaded": reloaded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="regnetx_002")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--num-classes", type=int, default=3)
    parser.add_argument("--pretrained", action="store_true", help="load the variant's default weights (needs them "
                                                                  "in the Hugging Face cache)")
    args = parser.parse_args()
    run(args.variant, args.image_size, args.batch, args.num_classes, args.pretrained)


if __name__ == "__main__":
    main()
