"""rz.export's host side: the format registry, refusals before anything is built or written, verification numbers,
representative data, and the CLI's errors. The formats themselves are tested in tests/<framework>/test_*_export_*."""

from __future__ import annotations

import numpy as np
import pytest

import regnet_zoo as rz
from regnet_zoo import deploy as ex
from regnet_zoo.cli import main


def _nothing_written(tmp_path) -> None:
    assert list(tmp_path.iterdir()) == [], "a refused export must leave no file (not even a hidden one)"


def test_formats_are_declared_by_their_source_frameworks():
    owners = {name: fw.name for name, (fw, fmt) in ex.formats().items()}
    assert owners == {"onnx": "torch", "torch_export": "torch", "tflite": "tf", "saved_model": "tf",
                      "stablehlo": "flax"}
    assert ex.get_format("tflite")[1].precisions == ("fp32", "fp16", "int8_dynamic", "int8")


def test_registering_formats_imports_no_framework():
    import subprocess
    import sys

    code = ("import sys, regnet_zoo as rz; from regnet_zoo import deploy as ex; ex.formats(); "
            "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'onnx', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(format="onxx"), ValueError, r"unknown export format 'onxx'; did you mean 'onnx'\?"),
    (dict(format="tflite", precision="int8"), ValueError, r"'int8' quantizes the activations.*int8_dynamic"),
    (dict(format="onnx", precision="fp16"), ValueError, r"'onnx' supports precision fp32, not 'fp16'; formats with "
                                                        r"fp16: tflite"),
    (dict(format="onnx", precision="int4"), ValueError, r"unknown precision 'int4'"),
    (dict(format="tflite", precision="fp16", representative_data=np.zeros((1, 3, 64, 64))), ValueError,
     r"only used by precision 'int8'"),
    (dict(format="onnx", frozen_stages=1), ValueError, r"frozen_stages=1: training-only option"),
    (dict(format="onnx", drop_path_rate=0.1, norm_eval=True), ValueError, r"training-only options"),
    (dict(format="stablehlo", opset=17), ValueError, r"opset is an ONNX setting"),
    (dict(format="onnx", batch=0), ValueError, r"batch must be a positive int or None"),
])
def test_bad_requests_are_refused_before_anything_is_built(tmp_path, kwargs, error, match):
    fmt = kwargs["format"]
    suffix = ex.formats()[fmt][1].suffix if fmt in ex.formats() else ".x"
    with pytest.raises(error, match=match):
        rz.export("regnetx_002", tmp_path / f"m{suffix}", **kwargs)
    _nothing_written(tmp_path)


def test_destination_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"directory '.*missing' does not exist; create it first"):
        rz.export("regnetx_002", tmp_path / "missing" / "m.onnx", "onnx")
    with pytest.raises(ValueError, match=r"writes a \.onnx file; got path '.*m\.tflite' \(expected 'm\.onnx'\)"):
        rz.export("regnetx_002", tmp_path / "m.tflite", "onnx")
    (tmp_path / "sm").mkdir()
    with pytest.raises(FileExistsError, match="writes a directory and .* already exists"):
        rz.export("regnetx_002", tmp_path / "sm", "saved_model")
    assert [p.name for p in tmp_path.iterdir()] == ["sm"] and not any((tmp_path / "sm").iterdir())


def test_a_format_that_cannot_hold_the_model_says_what_to_use(tmp_path):
    with pytest.raises(ValueError, match=r"regnety_10b has 37\.\d+ GB of weights, but a tflite file holds at most "
                                         r"2\.1 GB.*use onnx \(weights in external data\) or saved_model"):
        rz.export("regnety_10b", tmp_path / "m.tflite", "tflite")  # refused from the plan: nothing is built
    _nothing_written(tmp_path)


def test_a_missing_runtime_gets_the_install_hint(tmp_path, monkeypatch):
    real = ex.importlib.util.find_spec
    monkeypatch.setattr(ex.importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else
                        real(name, *a))
    with pytest.raises(rz.FrameworkNotInstalledError, match=r"format 'onnx' needs onnxruntime, which is not "
                                                            r"installed; install it with: pip install "
                                                            r"'regnet-zoo\[export\]'"):
        rz.export("regnetx_002", tmp_path / "m.onnx", "onnx")
    _nothing_written(tmp_path)


def test_build_options_on_a_built_model_are_an_error(tmp_path):
    with pytest.raises(TypeError, match="build options apply when exporting by name"):
        rz.export(object(), tmp_path / "m.onnx", "onnx", num_classes=3)


def test_compare_reports_relative_error_cosine_and_top1():
    want = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    check = ex.compare("logits", want + [[0.0, 0.0, 0.3], [0.0, 3.0, 0.0]], want)
    assert check.max_rel == pytest.approx(1.0)
    assert check.top1 == 0.5
    b = want[1] + [0.0, 3.0, 0.0]
    assert check.cosine == pytest.approx(b @ want[1] / np.linalg.norm(b) / np.linalg.norm(want[1]))
    assert ex.compare("P2", np.ones((2, 3, 4, 4)), np.ones((2, 3, 4, 4))).top1 is None


def test_report_failures_follow_the_tolerance():
    check = ex.OutputCheck("logits", (8, 10), max_rel=0.05, cosine=0.99, top1=0.75)
    report = ex.ExportReport(path=None, format="tflite", framework="tf", precision="int8", batch=None,
                             input_shape=(None, 3, 64, 64), tolerance=ex.Tolerance(min_cosine=0.995, min_top1=0.8),
                             outputs=[check], files=[], seconds=0.0)
    assert report.failures() == ["logits: cosine similarity 0.990000 < 0.995", "logits: top-1 agreement 0.750 < 0.8"]
    report.tolerance = ex.Tolerance(max_rel=0.1, min_cosine=0.98)
    assert report.passed and "verified: ok" in str(report) and "top-1 agreement 0.750" in str(report)


def test_verification_images_are_fixed_natural_images():
    a, b = ex.verification_images((64, 48)), ex.verification_images((64, 48))
    assert a.shape == (8, 3, 64, 48) and a.dtype == np.float32 and np.array_equal(a, b)
    assert len({x.tobytes() for x in a}) == 8  # eight different views
    assert ex.verification_images((32, 32), in_chans=1).shape == (8, 1, 32, 32)


def test_representative_data_from_a_folder_or_an_array(tmp_path):
    from PIL import Image

    from regnet_zoo.preprocessing import SAMPLE_IMAGE

    for i in range(3):
        Image.open(SAMPLE_IMAGE).rotate(30 * i).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    batch = ex.load_representative(tmp_path, (64, 64), 3)
    assert batch.shape == (3, 3, 64, 64) and batch.dtype == np.float32
    nhwc = ex.load_representative(batch.transpose(0, 2, 3, 1), (64, 64), 3)
    assert np.array_equal(nhwc, batch)
    with pytest.raises(ValueError, match=r"expected \(N, 3, 64, 64\) or \(N, 64, 64, 3\)"):
        ex.load_representative(np.zeros((2, 3, 32, 32)), (64, 64), 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        ex.load_representative(empty, (64, 64), 3)


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert main(["export", "regnetx_002", str(tmp_path / "m.onnx"), "--format", "onxx"]) == 1
    assert "did you mean 'onnx'" in capsys.readouterr().err
    assert main(["export", "regnetx_002", str(tmp_path / "m.tflite"), "-F", "tflite", "--precision", "int8"]) == 1
    assert "--representative DIR" in capsys.readouterr().err
    assert main(["export", "regnetx_002", str(tmp_path / "m.onnx"), "-F", "onnx", "--features", "1,x"]) == 1
    assert "--features takes comma-separated feature indices" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "regnetx_002", str(tmp_path / "m.onnx"), "-F", "onnx", "--batch", "2", "--dynamic-batch"])
    _nothing_written(tmp_path)


def test_a_verified_export_is_published_with_its_sidecar_files(toy_host, tmp_path):
    report = rz.export("toynet_y_tiny", tmp_path / "m.toy", "toyfmt", num_classes=7, input_size=32)
    assert report.passed and report.framework == "toy" and report.notes == {"runtime": "toy"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.toy", "m.toy.data"]  # no staging directory left
    assert report.files == [tmp_path / "m.toy.data", tmp_path / "m.toy"]  # the main file is published last
    assert (tmp_path / "m.toy").read_bytes() == b"graph" and report.bytes == len(b"graph") + len(b"weights")
    assert [(o.name, o.shape) for o in report.outputs] == [("logits", (8, 7))]
    features = rz.export("toynet_y_tiny", tmp_path / "f.toy", "toyfmt", features_only=True, out_indices=(1, 3),
                         input_size=32, batch=3)
    assert [(o.name, o.shape) for o in features.outputs] == [("P2", (8, 16, 8, 8)), ("P4", (8, 64, 2, 2))]


@pytest.mark.parametrize("note, error, match", [
    ("crash", RuntimeError, "toy writer crashed"),
    ("off", rz.ExportError, r"export not written: the toyfmt artefact does not match .* max relative error 1e\+12"),
])
def test_a_failed_export_leaves_no_file(toy_host, tmp_path, note, error, match):
    (tmp_path / "m.toy").write_bytes(b"previous")
    with pytest.raises(error, match=match):
        rz.export("toynet_y_tiny", tmp_path / "m.toy", "toyfmt", input_size=32, note=note)
    assert [p.name for p in tmp_path.iterdir()] == ["m.toy"] and (tmp_path / "m.toy").read_bytes() == b"previous"
