"""A small one-stage detector (FPN + FCOS-style heads) on a regnet-zoo Flax NNX backbone, trained with optax.

    python examples/flax_detection.py                       # random backbone, synthetic data, 30 steps
    python examples/flax_detection.py --variant regnety_040 --pretrained --steps 100

What it shows:

* ``rz.create(..., framework="flax", features_only=True, out_indices=(2, 3, 4))`` gives the P3-P5 maps (NHWC) and
  ``backbone.feature_info`` gives their channels and strides, so the neck is configured from metadata;
* with ``--pretrained``, ``frozen_stages=1`` freezes stem + s1 (no gradient, BN on running statistics), and
  ``backbone.trainable(prefix=("backbone",))`` keeps them out of the optimizer (so weight decay leaves them alone);
* one ``nnx.jit`` training step with ``nnx.Optimizer(optax.adamw)``, and a jitted prediction that decodes boxes.

The data is synthetic (one bright rectangle per image, its class = its colour channel), so the example runs anywhere
in seconds; swap ``synthetic_batch`` for a real loader to train on COCO-style data.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import regnet_zoo as rz

LEVELS = (2, 3, 4)  # s2..s4 = P3..P5, strides 8, 16, 32


class FPN(nnx.Module):
    """Feature pyramid: 1x1 laterals, top-down nearest upsampling, 3x3 smoothing; ``width`` channels per level."""

    def __init__(self, in_channels: list[int], width: int, *, rngs: nnx.Rngs):
        self.laterals = nnx.List([nnx.Conv(c, width, (1, 1), rngs=rngs) for c in in_channels])
        self.smooth = nnx.List([nnx.Conv(width, width, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)
                                for _ in in_channels])

    def __call__(self, features: list[jax.Array]) -> list[jax.Array]:
        laterals = [conv(f) for conv, f in zip(self.laterals, features)]
        for i in range(len(laterals) - 2, -1, -1):  # top-down
            up = jax.image.resize(laterals[i + 1], laterals[i].shape[:3] + laterals[i + 1].shape[3:], "nearest")
            laterals[i] = laterals[i] + up
        return [conv(p) for conv, p in zip(self.smooth, laterals)]


class Head(nnx.Module):
    """Shared across levels: a conv tower, then per-location class logits and (l, t, r, b) box distances."""

    def __init__(self, width: int, num_classes: int, *, rngs: nnx.Rngs):
        pad = ((1, 1), (1, 1))
        self.tower = nnx.List([nnx.Conv(width, width, (3, 3), padding=pad, rngs=rngs) for _ in range(2)])
        prior = -np.log((1 - 0.01) / 0.01)  # start with ~1 % foreground probability (RetinaNet / FCOS)
        self.cls = nnx.Conv(width, num_classes, (3, 3), padding=pad, bias_init=nnx.initializers.constant(prior),
                            rngs=rngs)
        self.box = nnx.Conv(width, 4, (3, 3), padding=pad, rngs=rngs)

    def __call__(self, p: jax.Array) -> tuple[jax.Array, jax.Array]:
        for conv in self.tower:
            p = jax.nn.relu(conv(p))
        return self.cls(p), jax.nn.softplus(self.box(p))  # distances in units of the level's stride


class Detector(nnx.Module):
    def __init__(self, backbone, num_classes: int, width: int = 64, *, rngs: nnx.Rngs):
        self.backbone = backbone
        self.strides = tuple(f.reduction for f in backbone.feature_info)
        self.fpn = FPN([f.channels for f in backbone.feature_info], width, rngs=rngs)
        self.head = Head(width, num_classes, rngs=rngs)

    def __call__(self, images: jax.Array):
        return [self.head(p) for p in self.fpn(self.backbone(images))]


def make_detector(variant: str = "regnetx_002", num_classes: int = 3, pretrained: bool = False, seed: int = 0,
                  **backbone_options):
    """With pretrained weights the usual fine-tuning recipe applies (stem + s1 frozen); without them the backbone
    trains from scratch (frozen random BatchNorm statistics would be a bug, and regnet-zoo refuses them)."""
    if pretrained:
        backbone_options = {"frozen_stages": 1, **backbone_options}
    backbone = rz.create(variant, framework="flax", features_only=True, out_indices=LEVELS, pretrained=pretrained,
                         **backbone_options)
    return Detector(backbone, num_classes, rngs=nnx.Rngs(seed))


# -- targets, loss, training step, prediction ---------------------------------------------------------------------

def centers(shape, stride: int) -> jax.Array:
    """(H, W, 2) pixel coordinates (x, y) of the locations of a level."""
    h, w = shape
    ys, xs = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
    return (jnp.stack([xs, ys], -1) + 0.5) * stride


def level_targets(boxes: jax.Array, classes: jax.Array, shape, stride: int, num_classes: int):
    """FCOS-style: a location is positive when its centre lies in the (single) box of its image."""
    c = centers(shape, stride)[None]  # (1, H, W, 2)
    b = boxes[:, None, None, :]  # (N, 1, 1, 4) x0, y0, x1, y1
    ltrb = jnp.concatenate([c - b[..., :2], b[..., 2:] - c], -1)  # (N, H, W, 4)
    positive = jnp.all(ltrb > 0, -1)
    cls = jax.nn.one_hot(classes, num_classes)[:, None, None, :] * positive[..., None]
    return cls, ltrb / stride, positive


def loss_fn(model: Detector, images, boxes, classes):
    total_cls, total_box, n_pos = 0.0, 0.0, 0.0
    for (cls_logits, box), stride in zip(model(images), model.strides):
        cls_t, box_t, pos = level_targets(boxes, classes, cls_logits.shape[1:3], stride, cls_logits.shape[-1])
        total_cls += jnp.sum(optax.sigmoid_focal_loss(cls_logits, cls_t))
        total_box += jnp.sum(jnp.abs(box - box_t).sum(-1) * pos)
        n_pos += jnp.sum(pos)
    n_pos = jnp.maximum(n_pos, 1.0)
    return (total_cls + total_box) / n_pos


@nnx.jit
def train_step(model: Detector, optimizer: nnx.Optimizer, images, boxes, classes):
    trainable = nnx.DiffState(0, optimizer.wrt)
    loss, grads = nnx.value_and_grad(loss_fn, argnums=trainable)(model, images, boxes, classes)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def predict(model: Detector, images, top_k: int = 10):
    """Top-``top_k`` (score, class, box) per image over all levels; boxes as x0, y0, x1, y1 pixels."""
    scores, labels, boxes = [], [], []
    for (cls_logits, box), stride in zip(model(images), model.strides):
        n, h, w, k = cls_logits.shape
        c = centers((h, w), stride)[None]
        xyxy = jnp.concatenate([c - box[..., :2] * stride, c + box[..., 2:] * stride], -1)
        prob = jax.nn.sigmoid(cls_logits)
        scores.append(prob.max(-1).reshape(n, -1))
        labels.append(prob.argmax(-1).reshape(n, -1))
        boxes.append(xyxy.reshape(n, -1, 4))
    scores, labels, boxes = (jnp.concatenate(a, 1) for a in (scores, labels, boxes))
    top, idx = jax.lax.top_k(scores, top_k)
    return top, jnp.take_along_axis(labels, idx, 1), jnp.take_along_axis(boxes, idx[..., None], 1)


def synthetic_batch(rng: np.random.Generator, batch: int = 4, size: int = 128, num_classes: int = 3):
    """Images with one bright axis-aligned rectangle each; class = the colour channel it is drawn in."""
    images = rng.normal(0, 0.1, (batch, size, size, 3)).astype(np.float32)
    boxes = np.zeros((batch, 4), np.float32)
    classes = rng.integers(0, num_classes, batch)
    for i in range(batch):
        w, h = rng.integers(size // 4, size // 2, 2)
        x0, y0 = rng.integers(0, size - w), rng.integers(0, size - h)
        images[i, y0:y0 + h, x0:x0 + w, classes[i] % 3] += 2.0
        boxes[i] = (x0, y0, x0 + w, y0 + h)
    return images, boxes, classes.astype(np.int32)


def make_optimizer(model: Detector, lr: float = 1e-3) -> nnx.Optimizer:
    return nnx.Optimizer(model, optax.adamw(lr, weight_decay=1e-4),
                         wrt=model.backbone.trainable(prefix=("backbone",)))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", default="regnetx_002")
    p.add_argument("--pretrained", action="store_true", help="load the variant's default weights (needs the hub)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=128)
    a = p.parse_args(argv)

    model = make_detector(a.variant, pretrained=a.pretrained)
    model.train()
    optimizer = make_optimizer(model)
    rng = np.random.default_rng(0)
    for step in range(1, a.steps + 1):
        t0 = time.perf_counter()
        loss = float(train_step(model, optimizer, *synthetic_batch(rng, a.batch, a.size)))
        if step == 1 or step % 10 == 0 or step == a.steps:
            print(f"step {step:4d}  loss {loss:.4f}  {time.perf_counter() - t0:.2f}s", flush=True)
    model.eval()
    images, boxes, classes = synthetic_batch(rng, 2, a.size)
    scores, labels, pred = predict(model, images)
    for i in range(2):
        print(f"image {i}: true class {classes[i]} box {boxes[i].round().tolist()}; best: class {int(labels[i, 0])} "
              f"score {float(scores[i, 0]):.2f} box {np.asarray(pred[i, 0]).round().tolist()}")


if __name__ == "__main__":
    main()
