"""The benchmark harness's bookkeeping (no framework, nothing timed): the rows a quick run plans, the roofline
shares, and the target verdicts taken from them."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import cases  # noqa: E402
import report  # noqa: E402
import targets  # noqa: E402
from contenders import BY_NAME, INFER, REFERENCE_MODEL, TRAIN  # noqa: E402

MACHINE = {"device": "cpu", "amx_bf16": False, "avx512_bf16": True}


def _row(contender: str, model: str, ms: float, mode: str = INFER, batch: int = 8, **extra) -> dict:
    size = 56 if model == REFERENCE_MODEL else 224
    case = cases.Case(model, batch, mode, size)
    return {"kind": "speed", "contender": contender, "family": BY_NAME[contender].family, "case": case.as_dict(),
            "case_key": case.key, "status": "ok", "median_ms": ms, "p25_ms": ms * 0.98, "p75_ms": ms * 1.02,
            "noisy": False, **extra}


def test_quick_plan_starts_with_every_reference_and_times_the_target_rows():
    plan = cases.rows(quick=True)
    refs = [c.name for case, c in plan if c.reference]
    assert refs == ["conv-torch", "conv-torch-bf16", "conv-tf", "conv-tf-bf16", "conv-jax", "conv-jax-bf16"]
    assert all(c.reference for _, c in plan[:6])
    planned = {(case.model, case.mode, c.name) for case, c in plan}
    for model in targets.BOTH:
        for name in ("rz-torch-fast", "rz-torch-bf16", "rz-tf-fast", "rz-tf-bf16", "rz-flax", "rz-flax-bf16"):
            assert (model, INFER, name) in planned
    for name in ("rz-torch", "rz-tf", "rz-flax"):
        assert ("regnetx_004", TRAIN, name) in planned
    assert {case.batch for case, c in plan if not c.reference} == {8}


def test_gflop_counts_the_unfolded_network_and_three_passes_for_training():
    infer = cases.gflop(cases.Case("regnety_040", 8, INFER))
    assert infer == pytest.approx(2 * 3.973301344 * 8, rel=1e-6)
    assert cases.gflop(cases.Case("regnety_040", 8, TRAIN)) == pytest.approx(3 * infer)
    assert cases.gflop(cases.REFERENCE_CASE) == pytest.approx(2 * 8 * 56 * 56 * 256 * 256 * 9 / 1e9)


def test_shares_are_of_the_fastest_reference_of_the_same_precision():
    ref_ms = cases.gflop(cases.REFERENCE_CASE) / 200 * 1e3  # 200 GFLOP/s
    rows = [_row("conv-torch", REFERENCE_MODEL, ref_ms), _row("conv-jax", REFERENCE_MODEL, ref_ms * 2),
            _row("conv-tf-bf16", REFERENCE_MODEL, ref_ms / 4),
            _row("rz-torch-fast", "regnety_040", cases.gflop(cases.Case("regnety_040", 8, INFER)) / 150 * 1e3),
            _row("rz-torch-bf16", "regnety_040", cases.gflop(cases.Case("regnety_040", 8, INFER)) / 400 * 1e3)]
    refs = report.add_roofline(rows)
    assert refs["fp32"] == {"gflops": 200.0, "by": "conv-torch"}
    assert refs["bf16"]["by"] == "conv-tf-bf16"
    assert rows[1]["share"] == pytest.approx(0.5)
    assert rows[3]["share"] == pytest.approx(0.75, rel=1e-3)
    assert rows[4]["share"] == pytest.approx(0.5, rel=1e-3)  # of the bf16 reference, 800 GFLOP/s


def test_verdicts_read_shares_and_ratios_and_leave_out_targets_not_run():
    ref_ms = cases.gflop(cases.REFERENCE_CASE) / 200 * 1e3
    g = cases.gflop(cases.Case("regnety_040", 8, INFER))
    rows = [_row("conv-torch", REFERENCE_MODEL, ref_ms), _row("conv-torch-bf16", REFERENCE_MODEL, ref_ms / 4),
            _row("rz-torch", "regnety_040", g / 100 * 1e3), _row("rz-torch-fast", "regnety_040", g / 150 * 1e3),
            _row("rz-flax", "regnety_040", g / 100 * 1e3), _row("rz-torch-bf16", "regnety_040", g / 330 * 1e3)]
    report.add_ratios(rows)
    report.add_roofline(rows)
    out = {(t["target"], t.get("model")): t for t in targets.evaluate(rows, MACHINE)}
    torch_infer = out[(targets.SHARE_TARGETS[0].text, "regnety_040")]
    assert torch_infer["best"] == "rz-torch-fast" and torch_infer["verdict"] == "PASS"  # 75 % >= 70 %
    assert out[(targets.SHARE_TARGETS[2].text, "regnety_040")]["verdict"] == "FAIL"  # flax 50 %
    assert out[("rz-flax >= 0.8x rz-torch-fast", "regnety_040")]["verdict"] == "FAIL"  # 0.67x
    assert out[("rz-torch-bf16 >= 2x rz-torch-fast", "regnety_040")]["verdict"] == "PASS"  # 2.2x
    assert ("rz-tf-bf16 >= 2x rz-tf-fast", "regnety_040") not in out  # no tf row ran
    assert ("rz-flax >= 0.8x rz-torch-fast", "regnetx_004") not in out
    no_bf16 = targets.evaluate(rows, {**MACHINE, "avx512_bf16": False})
    assert [t["verdict"] for t in no_bf16 if t["target"].startswith("rz-torch-bf16")] == \
        ["n/a: this CPU has no native bf16 (avx512_bf16 / AMX)"]
    text = report.markdown({"machine": {"date": "d", "cpu": "c", "logical_cpus": 2, "cores_used": [0, 1], "ram_gb": 1,
                                        "amx_bf16": False, "device": "cpu", "versions": {}, "git_commit": "x",
                                        "git_dirty": False},
                            "quick": True, "settings": cases.QUICK.as_dict(), "threshold": 0.1, "rows": rows,
                            "targets": targets.evaluate(rows, MACHINE), "roofline": report.add_roofline(rows),
                            "command": "run.py", "wall_s": 1.0})
    assert "fp32 200 GFLOP/s (conv-torch)" in text and "| 75% |" in text
