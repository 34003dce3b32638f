"""Faster R-CNN + FPN on a regnet-zoo RegNet backbone, with torchvision's detection heads.

    python examples/torch_fasterrcnn.py                       # from scratch, synthetic data, 2 steps
    python examples/torch_fasterrcnn.py --pretrained          # ImageNet backbone (HF Hub or its cache): frozen stem+s1,
                                                              # frozen BN, as detectors are usually fine-tuned
    python examples/torch_fasterrcnn.py --pretrained path/to/regnety_008.safetensors --variant regnety_008

The backbone is ``rz.create(..., features_only=True)``: a list of stride 4..32 maps whose channels are in
``backbone.feature_info`` (known from the registry before anything is built), wrapped with torchvision's
``FeaturePyramidNetwork`` by ``regnet_zoo_torch.detection.FPNBackbone`` into what ``FasterRCNN`` expects.
"""

from __future__ import annotations

import argparse
import time

import torch
from torchvision.models.detection import FasterRCNN

import regnet_zoo as rz
from regnet_zoo_torch.detection import FPNBackbone


def build_detector(variant: str = "regnetx_002", num_classes: int = 3, pretrained=False, image_size: int = 128,
                   **backbone_options) -> FasterRCNN:
    """A Faster R-CNN whose backbone is regnet-zoo's ``variant`` (s1..s4 -> 4 FPN levels + max-pool level).

    With pretrained weights the usual fine-tuning recipe applies: stem and s1 frozen, BatchNorm frozen. Without
    them the backbone trains from scratch with ordinary BatchNorm (frozen random statistics would be a bug).
    """
    if pretrained:
        backbone_options = {"frozen_stages": 1, "norm": "frozen_bn", **backbone_options}
    body = rz.create(variant, pretrained=pretrained, features_only=True, out_indices=(1, 2, 3, 4), **backbone_options)
    backbone = FPNBackbone(body, out_channels=64)
    # images are resized so that their short side is image_size (torchvision's GeneralizedRCNNTransform)
    return FasterRCNN(backbone, num_classes=num_classes, min_size=image_size, max_size=image_size,
                      rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=100,
                      rpn_post_nms_top_n_test=50, box_batch_size_per_image=64)


def synthetic_batch(batch: int = 2, size: int = 128, num_classes: int = 3, seed: int = 0):
    """Random images in [0, 1] with one or two random boxes each (torchvision's target format)."""
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(batch):
        images.append(torch.rand(3, size, size, generator=g))
        n = int(torch.randint(1, 3, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * size * 0.6
        wh = torch.rand(n, 2, generator=g) * size * 0.3 + 8
        targets.append({"boxes": torch.cat([xy, xy + wh], 1).clamp(max=size - 1),
                        "labels": torch.randint(1, num_classes, (n,), generator=g)})
    return images, targets


def train_step(model: FasterRCNN, optimizer: torch.optim.Optimizer, images, targets) -> dict[str, float]:
    model.train()
    losses = model(images, targets)
    loss = sum(losses.values())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {k: v.item() for k, v in losses.items()}


@torch.no_grad()
def eval_step(model: FasterRCNN, images):
    model.eval()
    return model(images)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="regnetx_002")
    parser.add_argument("--pretrained", nargs="?", const=True, default=False,
                        help="True (default weight tag), a tag or a checkpoint path")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = build_detector(args.variant, pretrained=args.pretrained)
    params = [p for p in model.parameters() if p.requires_grad]
    print(f"{args.variant} Faster R-CNN: {sum(p.numel() for p in params) / 1e6:.2f}M trainable parameters, "
          f"backbone maps {[f.as_dict() for f in model.backbone.body.feature_info]}")
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    images, targets = synthetic_batch()
    for step in range(args.steps):
        t = time.perf_counter()
        losses = train_step(model, optimizer, images, targets)
        print(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in losses.items()) +
              f" ({time.perf_counter() - t:.1f}s)")
    detections = eval_step(model, images)
    print("eval:", [{k: tuple(v.shape) for k, v in d.items()} for d in detections])


if __name__ == "__main__":
    main()
