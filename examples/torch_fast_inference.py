"""The torch inference fast path, checked and timed against timm eager on the same weights.

    python examples/torch_fast_inference.py regnety_040 --batch 8 --threads 2
    python examples/torch_fast_inference.py regnetx_004 --batch 1 --modes eager,fast,bf16

``rz.create(name, fast=True)`` (or ``model.optimize_for_inference()``) folds BatchNorm into the convolutions, uses
channels-last memory and AOTInductor (``torch.export``, inductor freezing, a shared library); ``fast="bf16"`` also casts to bfloat16 (for AMX
CPUs and GPUs). The first call per input shape compiles. Timing alternates timm and the candidate call by call and
reports the ratio of medians, which stays meaningful on a shared machine; the benchmark harness in benchmarks/ is
the reference for published numbers.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
import timm

import regnet_zoo as rz


def timm_with_random_bn(name: str) -> torch.nn.Module:
    """timm's model with BN affine parameters and statistics randomised (no zero-initialised branch)."""
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.running_var.data.uniform_(0.5, 1.5)
            m.running_mean.data.normal_(0, 0.1)
    return model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant", nargs="?", default="regnetx_004")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--modes", default="eager,fast,bf16")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)

    reference = timm_with_random_bn(args.variant)
    weights = rz.WeightSource({k: v.numpy() for k, v in reference.state_dict().items()}, "timm, random BN", 1000)
    model = rz.create(args.variant, pretrained=weights).eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    candidates = {"eager": lambda: model, "fast": lambda: model.optimize_for_inference(),
                  "bf16": lambda: model.optimize_for_inference("bf16")}
    with torch.inference_mode():
        want = reference(x)
        for mode in args.modes.split(","):
            t = time.perf_counter()
            run = candidates[mode]()
            got = run(x)
            warm = time.perf_counter() - t
            err = float((got.float() - want).abs().max() / want.abs().max())
            ref_t, cand_t = [], []
            for _ in range(args.pairs):
                t = time.perf_counter()
                reference(x)
                ref_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                run(x)
                cand_t.append(time.perf_counter() - t)
            r, c = statistics.median(ref_t), statistics.median(cand_t)
            print(f"{args.variant} batch {args.batch} {mode:5s}: timm eager {r * 1e3:7.1f} ms, "
                  f"regnet-zoo {c * 1e3:7.1f} ms, {r / c:4.2f}x; max|diff| / max|logit| = {err:.1e}; "
                  f"build + first call {warm:.0f}s")


if __name__ == "__main__":
    main()
