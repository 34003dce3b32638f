"""rz.export to stablehlo (jax.export): regnetx_002, regnety_002 and a features_only model with a symbolic batch,
verified numbers, and a serialized file that runs with JAX alone (regnet_zoo not importable)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import regnet_zoo as rz
from harness import loaded_model, ops, random_input, rel_err
from testdeps import require

require("jax", "flax")

SIZE = 64
MODELS = [
    ("x_classifier", "regnetx_002", dict(num_classes=10), dict()),
    ("y_classifier_batch2", "regnety_002", dict(num_classes=10), dict(batch=2)),
    ("y_features_linen", "regnety_002", dict(num_classes=0, features_only=True, out_indices=(1, 4), api="linen"),
     dict()),
]


@pytest.fixture(scope="module")
def models():
    return {key: loaded_model("flax", name, **kw) for key, name, kw, _ in MODELS}


@pytest.fixture(scope="module")
def reports(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("stablehlo")
    return {key: rz.export(models[key], out / f"{key}.stablehlo", "stablehlo", input_size=SIZE, **ekw)
            for key, _, _, ekw in MODELS}


def test_every_model_is_verified_within_1e4(reports):
    for key, report in reports.items():
        assert report.passed, str(report)
        assert [o.name for o in report.outputs] == (["P2", "P5"] if key == "y_features_linen" else ["logits"])
        assert all(o.max_rel <= 1e-4 and o.cosine > 0.999999 for o in report.outputs)
    assert reports["x_classifier"].notes["input"] == f"images NHWC batchx{SIZE}x{SIZE}x3"
    assert reports["y_classifier_batch2"].notes["input"] == f"images NHWC 2x{SIZE}x{SIZE}x3"


def test_the_file_runs_without_regnet_zoo(reports, models, tmp_path):
    x = random_input(3, SIZE)
    want = ops("flax").run(models["x_classifier"], x)
    np.save(tmp_path / "x.npy", np.transpose(x, (0, 2, 3, 1)))
    script = textwrap.dedent(f"""
        import sys
        sys.modules["regnet_zoo"] = None  # import regnet_zoo now raises ImportError
        try:
            import regnet_zoo
            raise SystemExit("regnet_zoo is importable")
        except ImportError:
            pass
        import jax, numpy as np
        exported = jax.export.deserialize(bytearray(open({str(reports["x_classifier"].path)!r}, "rb").read()))
        np.save({str(tmp_path / "out.npy")!r}, np.asarray(exported.call(np.load({str(tmp_path / "x.npy")!r}))))
        print(exported.in_avals)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "batch" in result.stdout
    assert rel_err(np.load(tmp_path / "out.npy"), want) <= 1e-4


def test_features_return_a_list_of_maps(reports, models):
    import jax

    exported = jax.export.deserialize(bytearray(reports["y_features_linen"].path.read_bytes()))
    x = random_input(5, SIZE)
    maps = exported.call(np.transpose(x, (0, 2, 3, 1)))
    want = ops("flax").run(models["y_features_linen"], x)
    assert [m.shape for m in maps] == [(5, 16, 16, 24), (5, 2, 2, 368)]
    assert all(rel_err(np.transpose(m, (0, 3, 1, 2)), w) <= 1e-4 for m, w in zip(maps, want))


def test_training_options_are_refused(tmp_path):
    frozen = rz.create("regnetx_002", "flax", norm_eval=True, force=True)
    with pytest.raises(ValueError, match=r"norm_eval=True: training-only option"):
        rz.export(frozen, tmp_path / "m.stablehlo", "stablehlo", input_size=SIZE)
    assert list(tmp_path.iterdir()) == []
