"""rz.export to onnx (run in ONNX Runtime) and torch_export (.pt2): regnetx_002, regnety_002 and a features_only
model, verified numbers, dynamic and fixed batch, and atomic failure. Artefacts are exported once per module."""

from __future__ import annotations

import numpy as np
import pytest

from testdeps import require

require("torch", "timm", "onnx", "onnxruntime", "onnxscript")

import torch  # noqa: E402

import regnet_zoo as rz  # noqa: E402
from harness import export_all, loaded_model, ops, random_input, rel_err  # noqa: E402
from regnet_zoo.cli import main  # noqa: E402

SIZE = 64
# (id, variant, create kwargs, export kwargs)
MODELS = [
    ("x_classifier", "regnetx_002", dict(num_classes=10), dict()),
    ("y_classifier_batch2", "regnety_002", dict(num_classes=10), dict(batch=2)),
    ("y_features", "regnety_002", dict(num_classes=0, features_only=True, out_indices=(0, 2, 4)), dict()),
]


@pytest.fixture(scope="module")
def models():
    return {key: loaded_model("torch", name, **kw).eval() for key, name, kw, _ in MODELS}


@pytest.fixture(scope="module")
def onnx_reports(models, tmp_path_factory):
    return export_all(models, MODELS, tmp_path_factory.mktemp("onnx"), "onnx", ".onnx", SIZE)


@pytest.fixture(scope="module")
def pt2_reports(models, tmp_path_factory):
    return export_all(models, MODELS, tmp_path_factory.mktemp("pt2"), "torch_export", ".pt2", SIZE)


@pytest.mark.parametrize("fixture", ["onnx_reports", "pt2_reports"])
def test_every_model_is_verified_within_1e4(request, fixture):
    reports = request.getfixturevalue(fixture)
    out = next(iter(reports.values())).path.parent
    for key, report in reports.items():
        assert report.passed, str(report)
        assert report.path.exists() and report.files == [report.path]
        names = [o.name for o in report.outputs]
        assert names == (["P1", "P3", "P5"] if key == "y_features" else ["logits"])
        assert all(o.max_rel <= 1e-4 and o.cosine > 0.999999 for o in report.outputs)
        assert report.outputs[0].shape[0] == 8
    assert sorted(p.name for p in out.iterdir()) == sorted(r.path.name for r in reports.values())  # no leftovers


def test_onnx_artefact_runs_in_onnxruntime_with_a_dynamic_batch(onnx_reports, models):
    reports = onnx_reports
    import onnx
    import onnxruntime as ort

    path = str(reports["x_classifier"].path)
    onnx.checker.check_model(path, full_check=True)
    proto = onnx.load(path)
    assert proto.opset_import[0].version == 18 and reports["x_classifier"].notes["opset"] == 18
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, SIZE, SIZE]
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = random_input(5, SIZE)
    (logits,) = session.run(None, {"images": x})
    assert rel_err(logits, ops("torch").run(models["x_classifier"], x)) <= 1e-4
    fixed = onnx.load(str(reports["y_classifier_batch2"].path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in fixed] == [2, 3, SIZE, SIZE]
    features = ort.InferenceSession(str(reports["y_features"].path))
    assert [o.name for o in features.get_outputs()] == ["P1", "P3", "P5"]


def test_torch_export_artefact_loads_with_torch_export(pt2_reports, models):
    program = torch.export.load(str(pt2_reports["y_features"].path))
    x = random_input(3, SIZE)
    maps = program.module()(torch.from_numpy(x))
    want = ops("torch").run(models["y_features"], x)
    assert all(rel_err(m.detach().numpy(), w) <= 1e-5 for m, w in zip(maps, want))


def test_a_failed_verification_writes_nothing(models, tmp_path):
    with pytest.raises(rz.ExportError, match=r"export not written.*max relative error .* > -1") as info:
        rz.export(models["x_classifier"], tmp_path / "m.pt2", "torch_export", input_size=SIZE,
                  tolerance=rz.Tolerance(max_rel=-1.0))
    assert info.value.report.outputs[0].max_rel <= 1e-4
    assert list(tmp_path.iterdir()) == []


def test_a_model_of_another_framework_or_built_for_training_is_refused(tmp_path):
    with pytest.raises(TypeError, match=r"exports a torch model \(rz.create\(name, 'torch'\)\); got dict"):
        rz.export({}, tmp_path / "m.onnx", "onnx")
    for options, match in ((dict(norm="sync_bn"), "norm='sync_bn': training-only option;"),
                           (dict(frozen_stages=1, force=True), "frozen_stages / norm_eval: training-only option;"),
                           (dict(drop_rate=0.2, drop_path_rate=0.1), "drop_path_rate, drop_rate: training-only "
                                                                      "options;")):
        with pytest.raises(ValueError, match=match):
            rz.export(rz.create("regnetx_002", **options), tmp_path / "m.pt2", "torch_export", input_size=SIZE)
    assert list(tmp_path.iterdir()) == []


def test_cli_export_by_name(tmp_path, capsys):
    out = tmp_path / "x.pt2"
    assert main(["export", "regnetx_002", str(out), "--format", "torch_export", "--input-size", "64",
                 "--features", "1,3", "--batch", "1"]) == 0
    text = capsys.readouterr().out
    assert "torch_export (fp32, batch 1, 64x64 input)" in text and "verified: ok" in text
    assert "P2 8x24x16x16: max relative error" in text and "weights: random" in text
    assert out.exists()
