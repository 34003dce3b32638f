"""Detection use: frozen stages, BN in inference mode, frozen / synchronised BN, and Faster R-CNN + FPN training."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from testdeps import require

require("torch", "timm", "torchvision")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from timm.layers import FrozenBatchNormAct2d, SyncBatchNormAct  # noqa: E402

import regnet_zoo as rz  # noqa: E402
from harness import random_state  # noqa: E402
from regnet_zoo_torch.weights import export_canonical, load_canonical  # noqa: E402

NAME = "regnetx_002"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "torch_fasterrcnn.py"


def bns(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def stats(module: nn.Module) -> list[torch.Tensor]:
    return [t.clone() for m in bns(module) for t in (m.running_mean, m.running_var)]


def train_once(model: nn.Module, size: int = 64) -> None:
    model.train()
    out = model(torch.randn(2, 3, size, size))
    (out if isinstance(out, torch.Tensor) else sum(o.mean() for o in out)).square().sum().backward()


@pytest.mark.parametrize("features_only", [False, True])
@pytest.mark.parametrize("frozen_stages", [0, 2])
def test_frozen_stages_get_no_gradient_and_keep_bn_stats(frozen_stages, features_only):
    model = rz.create(NAME, frozen_stages=frozen_stages, force=True, features_only=features_only)
    frozen = ["stem"] + [f"s{i}" for i in range(1, frozen_stages + 1)]
    live = [n for n in ("s1", "s2", "s3", "s4") if n not in frozen]
    before = {n: stats(getattr(model, n)) for n in frozen + live}
    train_once(model)
    for n in frozen:
        part = getattr(model, n)
        assert all(not p.requires_grad and p.grad is None for p in part.parameters()), n
        assert all(not m.training for m in bns(part)), n
        assert all(torch.equal(a, b) for a, b in zip(before[n], stats(part))), f"{n} BN statistics moved"
    for n in live:
        part = getattr(model, n)
        assert all(p.grad is not None for p in part.parameters()), n
        assert all(m.training for m in bns(part)), n
        assert not any(torch.equal(a, b) for a, b in zip(before[n], stats(part))), n
    model.train()  # .train() again: frozen BN stays in inference mode
    assert all(not m.training for n in frozen for m in bns(getattr(model, n)))


def test_frozen_stages_beyond_a_pruned_backbone_is_an_error():
    with pytest.raises(ValueError, match=r"frozen_stages must be an int in -1..2"):
        rz.create(NAME, features_only=True, out_indices=(1, 2), frozen_stages=3, force=True)


def test_norm_eval_keeps_stats_and_trains_affine():
    model = rz.create(NAME, num_classes=4, norm_eval=True, force=True)
    before = stats(model)
    train_once(model)
    assert all(not m.training for m in bns(model))
    assert all(torch.equal(a, b) for a, b in zip(before, stats(model)))
    assert all(m.weight.grad is not None for m in bns(model))
    assert model.head.fc.training  # only BN is held in inference mode


def test_frozen_bn_is_timms_and_has_nothing_to_train():
    state = random_state(NAME)
    ref = rz.create(NAME)
    load_canonical(ref, state)
    model = rz.create(NAME, norm="frozen_bn", force=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNormAct2d)]
    assert len(frozen) == len(bns(ref))
    load_canonical(model, state)  # same canonical names, BN as buffers
    exported = export_canonical(model)
    assert exported.keys() == state.keys() and all(np.array_equal(exported[k], state[k]) for k in state)
    bn_affine = 2 * sum(m.num_features for m in frozen)  # buffers now, not parameters
    assert sum(p.numel() for p in model.parameters()) == rz.plan(NAME).params() - bn_affine
    x = torch.randn(2, 3, 64, 64)
    model.train()
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref.eval()(x), rtol=1e-5, atol=1e-5)
    assert all(np.array_equal(v, state[k]) for k, v in export_canonical(model).items())


@pytest.mark.parametrize("kwargs, named", [({"norm": "frozen_bn"}, "norm='frozen_bn'"),
                                           ({"norm_eval": True}, "norm_eval=True"),
                                           ({"frozen_stages": 1}, "frozen_stages=1")])
def test_frozen_random_bn_is_refused_without_force(kwargs, named):
    with pytest.raises(ValueError, match=rf"{named} freezes BatchNorm statistics, but no pretrained weights.*"
                                         r"a frozen random BN is a bug.*force=True"):
        rz.create(NAME, **kwargs)


def test_pretrained_checkpoint_path_allows_frozen_bn(tmp_path):
    from safetensors.numpy import save_file

    state = random_state(NAME)
    path = tmp_path / "regnetx_002.safetensors"
    save_file(state, str(path))
    model = rz.create(NAME, pretrained=str(path), norm="frozen_bn", frozen_stages=1, features_only=True)
    assert np.array_equal(model.s2.b1.conv1.bn.running_var.numpy(), state["s2.b1.conv1.bn.running_var"])


def test_sync_bn_conversion():
    state = random_state(NAME)
    ref = rz.create(NAME)
    load_canonical(ref, state)
    model = rz.create(NAME, norm="sync_bn")
    norms = bns(model)
    assert norms and all(isinstance(m, nn.SyncBatchNorm) and isinstance(m, SyncBatchNormAct) for m in norms)
    load_canonical(model, state)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in ref.named_parameters()]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():  # PyTorch runs SyncBatchNorm's reduction on accelerators only; inference runs anywhere
        assert torch.equal(model.eval()(x), ref.eval()(x))
    frozen = rz.create(NAME, norm="sync_bn", frozen_stages=1, force=True).train()
    assert all(isinstance(m, nn.SyncBatchNorm) and not m.training for m in bns(frozen.s1))
    assert all(m.training for m in bns(frozen.s2))


def test_inference_mode_bn_survives_torchvision_layer_getter():
    """torchvision's IntermediateLayerGetter re-parents the stages; BN held in inference mode must stay so."""
    from torchvision.models.detection.backbone_utils import BackboneWithFPN

    body = rz.create(NAME, frozen_stages=1, force=True)
    fpn = BackboneWithFPN(body, {"s1": "0", "s2": "1", "s3": "2", "s4": "3"}, [24, 56, 152, 368], 32).train()
    assert all(not m.training for m in bns(fpn.body["s1"])) and all(m.training for m in bns(fpn.body["s2"]))
    out = fpn(torch.randn(1, 3, 64, 64))
    assert [tuple(v.shape) for v in out.values()] == [(1, 32, 16, 16), (1, 32, 8, 8), (1, 32, 4, 4), (1, 32, 2, 2),
                                                      (1, 32, 1, 1)]


def load_example():
    spec = importlib.util.spec_from_file_location("torch_fasterrcnn_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_faster_rcnn_example_trains_and_evaluates():
    ex = load_example()
    torch.manual_seed(0)
    model = ex.build_detector(NAME, frozen_stages=1, force=True)
    body = model.backbone.body
    assert [f.reduction for f in body.feature_info] == [4, 8, 16, 32]
    images, targets = ex.synthetic_batch(batch=2, size=96)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01)
    frozen_before = body.s1.b1.conv2.conv.weight.clone()
    stats_before = stats(body.s1)
    live_before = body.s3.b1.conv3.bn.weight.clone()  # timm zero-inits it; it still gets a gradient
    losses = ex.train_step(model, optimizer, images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(np.isfinite(v) for v in losses.values())
    assert body.s1.b1.conv2.conv.weight.grad is None and torch.equal(body.s1.b1.conv2.conv.weight, frozen_before)
    assert all(torch.equal(a, b) for a, b in zip(stats_before, stats(body.s1)))
    assert body.s3.b1.conv2.conv.weight.grad is not None
    assert not torch.equal(body.s3.b1.conv3.bn.weight, live_before)
    detections = ex.eval_step(model, images)
    assert len(detections) == 2 and all(d["boxes"].shape[1] == 4 for d in detections)


def test_faster_rcnn_example_main_runs(capsys):
    load_example().main(["--steps", "1"])
    out = capsys.readouterr().out
    assert "step 0: loss_classifier" in out and "eval:" in out
