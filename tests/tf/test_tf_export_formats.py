"""rz.export to tflite (fp32, fp16, int8 dynamic range, full int8 from a folder of images) and saved_model:
regnetx_002, regnety_002 and a features_only model, run in the TFLite / LiteRT interpreter and TensorFlow, with the
verified numbers; grouped convolutions stay native CONV_2D. Artefacts are exported once per module."""

from __future__ import annotations

import numpy as np
import pytest

import regnet_zoo as rz
from harness import export_all, loaded_model, ops, random_input, rel_err
from testdeps import require

require("tensorflow", "keras", "keras_hub")

from tf_helpers import nhwc, tf_modules  # noqa: E402

tf, keras = tf_modules()
from regnet_zoo_tf.export import SPLIT_OPS, interpreter, tflite_ops  # noqa: E402

SIZE = 64
MODELS = [
    ("x_classifier", "regnetx_002", dict(num_classes=10), dict()),
    ("y_classifier_batch2", "regnety_002", dict(num_classes=10), dict(batch=2)),
    ("x_features", "regnetx_002", dict(num_classes=0, features_only=True, out_indices=(1, 2, 3, 4)), dict()),
]


@pytest.fixture(scope="module")
def models():
    return {key: loaded_model("tf", name, **kw) for key, name, kw, _ in MODELS}


@pytest.fixture(scope="module")
def tflite_reports(models, tmp_path_factory):
    return export_all(models, MODELS, tmp_path_factory.mktemp("tflite"), "tflite", ".tflite", SIZE)


@pytest.fixture(scope="module")
def saved_model_reports(models, tmp_path_factory):
    return export_all(models, MODELS, tmp_path_factory.mktemp("saved_model"), "saved_model", "", SIZE)


@pytest.mark.parametrize("fixture", ["tflite_reports", "saved_model_reports"])
def test_every_model_is_verified_within_1e4(request, fixture):
    reports = request.getfixturevalue(fixture)
    for key, report in reports.items():
        assert report.passed, str(report)
        assert report.path.exists() and report.files == [report.path]
        names = [o.name for o in report.outputs]
        assert names == (["P2", "P3", "P4", "P5"] if key == "x_features" else ["logits"])
        assert all(o.max_rel <= 1e-4 and o.cosine > 0.999999 for o in report.outputs)
    out = report.path.parent
    assert sorted(p.name for p in out.iterdir()) == sorted(r.path.name for r in reports.values())


def test_tflite_keeps_grouped_convs_native_and_folds_bn(tflite_reports, models):
    path = tflite_reports["y_classifier_batch2"].path
    interp = interpreter(path)
    op_counts = tflite_ops(interp)
    convs = sum(1 + (1 if b.shortcut_conv else 0) + 2 for s in rz.plan("regnety_002").stages for b in s.blocks)
    assert op_counts["CONV_2D"] == convs + 1  # stem + every block conv: BN folded, no separate grouped pieces
    assert not set(op_counts) & set(SPLIT_OPS) and "DEPTHWISE_CONV_2D" not in op_counts
    assert interp.get_input_details()[0]["shape"].tolist() == [2, SIZE, SIZE, 3]
    assert "native CONV_2D" in tflite_reports["y_classifier_batch2"].notes["grouped convolutions"]
    dynamic = interpreter(tflite_reports["x_classifier"].path)
    assert dynamic.get_input_details()[0]["shape_signature"].tolist() == [-1, SIZE, SIZE, 3]
    runner = dynamic.get_signature_runner("serving_default")
    x = random_input(5, SIZE)
    assert rel_err(runner(images=nhwc(x))["logits"], ops("tf").run(models["x_classifier"], x)) <= 1e-4


def test_saved_model_serves_named_outputs(saved_model_reports, models):
    served = tf.saved_model.load(str(saved_model_reports["x_features"].path))
    x = random_input(3, 96)  # any spatial size
    out = served.signatures["serving_default"](images=tf.constant(nhwc(x)))
    want = ops("tf").run(models["x_features"], x)
    assert sorted(out) == ["P2", "P3", "P4", "P5"]
    assert all(rel_err(np.transpose(out[k], (0, 3, 1, 2)), w) <= 1e-4 for k, w in zip(("P2", "P3", "P4", "P5"), want))


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    from PIL import Image

    from regnet_zoo.preprocessing import SAMPLE_IMAGE

    folder = tmp_path_factory.mktemp("calibration")
    base = Image.open(SAMPLE_IMAGE).convert("RGB")
    for i in range(16):
        w, h = base.size
        base.rotate(22.5 * i).crop((i * w // 64, i * h // 64, w - i * w // 64, h)).save(folder / f"{i:02d}.png")
    return folder


@pytest.mark.parametrize("precision, max_rel, min_cosine, max_mb", [
    ("fp16", 5e-3, 0.99999, 6.0),
    ("int8_dynamic", 5e-2, 0.999, 3.5),
    ("int8", 0.2, 0.98, 3.5),
])
def test_quantized_tflite_reports_error_cosine_and_top1(models, tmp_path, image_folder, precision, max_rel,
                                                       min_cosine, max_mb):
    extra = dict(representative_data=image_folder) if precision == "int8" else {}
    report = rz.export(models["y_classifier_batch2"], tmp_path / "q.tflite", "tflite", input_size=SIZE,
                       precision=precision, **extra)
    (logits,) = report.outputs
    assert report.passed and report.precision == precision
    assert logits.max_rel <= max_rel and logits.cosine >= min_cosine and logits.top1 is not None
    assert logits.top1 >= 0.75, str(report)
    assert report.bytes / 1e6 < max_mb  # fp32 is 11.1 MB, int8 about 3.1 MB
    assert "top-1 agreement" in str(report)


def test_a_stricter_threshold_fails_the_quantized_export_and_writes_nothing(models, tmp_path):
    with pytest.raises(rz.ExportError, match=r"cosine similarity .* < 1\b") as info:
        rz.export(models["x_classifier"], tmp_path / "q.tflite", "tflite", input_size=SIZE,
                  precision="int8_dynamic", tolerance=rz.Tolerance(min_cosine=1.0 + 1e-9))
    assert 0.99 < info.value.report.outputs[0].cosine < 1.0
    assert list(tmp_path.iterdir()) == []


def test_training_options_and_foreign_models_are_refused(tmp_path):
    frozen = rz.create("regnetx_002", "tf", frozen_stages=1, force=True)
    with pytest.raises(ValueError, match=r"frozen_stages=1: training-only option"):
        rz.export(frozen, tmp_path / "m.tflite", "tflite", input_size=SIZE)
    with pytest.raises(TypeError, match=r"exports a TensorFlow model .* got list"):
        rz.export([], tmp_path / "m.tflite", "tflite")
    assert list(tmp_path.iterdir()) == []
