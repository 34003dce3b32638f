"""torch.compile, torch.export, channels_last, bf16 autocast, and the inference fast path (fp32 and bf16)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from testdeps import require

require("torch", "timm")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import regnet_zoo as rz  # noqa: E402
from harness import ops, random_input, random_state, rel_err  # noqa: E402
from regnet_zoo.cpu import cpu_has_native_bf16  # noqa: E402
from regnet_zoo_torch.fast import InferenceModel, fold_batchnorm  # noqa: E402

NAME = "regnety_002"  # Y: SE blocks included


@pytest.fixture(scope="module")
def model():
    m = rz.create(NAME, num_classes=10)
    ops("torch").load(m, random_state(NAME, num_classes=10))
    return m.eval()


@pytest.fixture(scope="module")
def x():
    return torch.from_numpy(random_input(2, 64))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return rel_err(a.detach().float().numpy(), b.detach().float().numpy())


def test_export_classifier_hidden_states_and_features(model, x):
    with torch.no_grad():
        ref = model(x)
        ref_out = model(x, output_hidden_states=True)
    ep = torch.export.export(model, (x,))
    assert torch.equal(ep.module()(x), ref)
    ep = torch.export.export(model, (x,), kwargs={"output_hidden_states": True})
    out = ep.module()(x, output_hidden_states=True)
    assert isinstance(out, rz.RegNetOutput) and len(out.hidden_states) == 5
    assert torch.equal(out.logits, ref_out.logits) and torch.equal(out.pooler_output, ref_out.pooler_output)
    backbone = rz.create(NAME, features_only=True, out_indices=(0, 2, 4)).eval()
    ep = torch.export.export(backbone, (x,))
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(ep.module()(x), backbone(x)))


def test_compile_matches_eager(model, x):
    compiled = torch.compile(model)
    with torch.no_grad():
        assert rel(compiled(x), model(x)) <= 1e-5


def test_channels_last(model, x):
    cl = rz.create(NAME, num_classes=10).to(memory_format=torch.channels_last)
    cl.load_state_dict(model.state_dict())
    with torch.no_grad():
        out = cl.eval()(x.contiguous(memory_format=torch.channels_last))
        assert rel(out, model(x)) <= 1e-5
        maps = model(x.contiguous(memory_format=torch.channels_last), output_hidden_states=True).hidden_states
    assert len(maps) == 5


def test_bf16_autocast_on_cpu(model, x):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, output_hidden_states=True)
    assert out.logits.dtype == torch.bfloat16
    with torch.no_grad():
        assert rel(out.logits, model(x)) <= 3e-2
    train = rz.create(NAME, num_classes=10).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = train(x, labels=torch.tensor([1, 2])).loss
    loss.backward()
    assert loss.dtype == torch.float32 and train.stem.conv.weight.grad.dtype == torch.float32


def test_fold_batchnorm_is_exact_enough(model, x):
    import copy

    folded = copy.deepcopy(model)
    assert fold_batchnorm(folded) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        assert rel(folded(x), model(x)) <= 1e-5


def test_fast_path_fp32_compiled(model, x):
    fast = model.optimize_for_inference()
    assert isinstance(fast, InferenceModel) and fast.compiled and fast.channels_last
    with torch.no_grad():
        assert rel(fast(x), model(x)) <= 1e-4
    assert model.stem.bn.running_var is not None and isinstance(model.stem.bn, nn.BatchNorm2d)  # original untouched
    with pytest.raises(RuntimeError, match="cannot be trained"):
        fast.train()
    with pytest.raises(ValueError, match="with 3 channels on axis 1"):
        fast(torch.randn(1, 4, 64, 64))


@pytest.mark.parametrize("name", ["regnetz_005",  # Z: SiLU, SE, linear-output blocks without a shortcut
                                  pytest.param("regnetv_040", marks=pytest.mark.slow),  # pre-activation
                                  pytest.param("regnety_040_sgn", marks=pytest.mark.slow)])  # GroupNorm: not folded
def test_fast_path_across_the_design_space(name):
    """AOTInductor compiles one library per input shape; each agrees with the eager model."""
    eager = rz.create(name, num_classes=10)
    ops("torch").load(eager, random_state(name, num_classes=10))
    fast = eager.eval().optimize_for_inference()
    for batch, size in [(1, 64), (2, 96)]:
        x = torch.from_numpy(random_input(batch, size))
        with torch.no_grad():
            assert rel(fast(x), eager(x)) <= 1e-4, (name, batch, size)
    assert len(fast._compiled) == 2


def test_fast_option_of_create_and_features(model, x):
    fast = ops("torch").create(NAME, features_only=True, out_indices=(1, 3), fast=True)
    assert isinstance(fast, InferenceModel) and [f.index for f in fast.feature_info] == [1, 3]
    maps = ops("torch").run(fast, random_input(2, 64))
    assert [m.shape for m in maps] == [(2, 24, 16, 16), (2, 152, 4, 4)] and maps[0].dtype == np.float32


def test_fast_path_bf16(model, x):
    with pytest.warns(UserWarning, match="emulated") if not cpu_has_native_bf16() else _no_warning():
        fast = model.optimize_for_inference("bf16", compile=False)
    with torch.no_grad():
        out = fast(x)
        assert out.dtype == torch.float32
        assert rel(out, model(x)) <= 1e-2
    assert all(p.dtype == torch.bfloat16 for p in fast.net.parameters())


class _no_warning:
    def __enter__(self):
        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("error")
        return self

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


def test_bf16_warning_on_cpus_without_native_bf16(model, monkeypatch):
    from regnet_zoo import cpu

    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    with pytest.warns(UserWarning, match=r"neither AMX nor AVX-512 BF16.*emulated.*fast=True") as caught:
        model.optimize_for_inference("bf16", compile=False)
    assert caught[0].filename == __file__  # attributed to the caller of model.optimize_for_inference
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"amx_bf16", "avx512_bf16"}))
    assert cpu.cpu_has_amx_bf16()
    with _no_warning():
        model.optimize_for_inference("bf16", compile=False)


def test_fast_inference_example_runs_on_public_api(capsys):
    """examples/torch_fast_inference.py (eager mode: no compile) loads timm's weights through ``rz.WeightSource``."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "torch_fast_inference.py"
    spec = importlib.util.spec_from_file_location("torch_fast_inference_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main(["regnetx_002", "--batch", "1", "--size", "64", "--pairs", "1", "--modes", "eager", "--threads",
                  str(torch.get_num_threads())])
    assert "max|diff| / max|logit| = 0.0e+00" in capsys.readouterr().out
