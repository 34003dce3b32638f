"""``regnet-zoo convert`` and ``regnet-zoo predict``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from testdeps import require

import torch  # noqa: F401  (tests/conftest.py imported torch + torch._dynamo before TensorFlow)
import regnet_zoo as rz
from regnet_zoo.cli import main
from regnet_zoo.errors import WeightsError
from regnet_zoo.preprocessing import SAMPLE_IMAGE
from regnet_zoo.weights import safetensors_io
from weights_helpers import X, hf_model, run, timm_model, torch_state

import timm  # noqa: F401,E402  (a test dependency: CI installs it)


@pytest.fixture(scope="module")
def pth(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("cli")
    model = timm_model("regnety_002")
    torch.save(model.state_dict(), root / "regnety_002.pth")
    return root / "regnety_002.pth", model


def test_convert_round_trip_is_bit_exact(pth, tmp_path, capsys):
    src, model = pth
    assert main(["convert", str(src), str(tmp_path / "hf")]) == 0  # a directory: transformers format by default
    assert "transformers directory (config.json + model.safetensors), variant regnety_002, 1000 classes" in \
        capsys.readouterr().out
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "back.safetensors"), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert (rec["to"], rec["key_space"], rec["variant"]) == ("timm", "hf", "regnety_002")
    back = safetensors_io.load(tmp_path / "back.safetensors")
    expected = {k: v for k, v in torch_state(model).items() if "num_batches" not in k}
    assert list(back) == list(expected) and all(np.array_equal(back[k], expected[k]) for k in expected)


def test_convert_to_torch_native(pth, tmp_path):
    import torch
    from safetensors.torch import load_file

    src, model = pth
    assert main(["convert", str(src), str(tmp_path / "t.safetensors"), "--to", "torch"]) == 0
    fresh = rz.create("regnety_002", "torch")
    assert not fresh.load_state_dict(load_file(tmp_path / "t.safetensors"), strict=True).missing_keys
    with torch.no_grad():
        np.testing.assert_array_equal(fresh.eval()(torch.from_numpy(X)).numpy(), run(model, X))


def test_convert_to_keras_weights_file(pth, tmp_path):
    require("tensorflow", "keras")
    src, model = pth
    assert main(["convert", str(src), str(tmp_path / "m.weights.h5")]) == 0  # *.weights.h5: Keras' own format
    with pytest.raises(WeightsError, match="a tf-native weights file.*model.load_weights"):
        rz.read_checkpoint(tmp_path / "m.weights.h5")
    fresh = rz.create("regnety_002", "tf")
    fresh.load_weights(str(tmp_path / "m.weights.h5"))
    out = np.asarray(fresh(np.ascontiguousarray(X.transpose(0, 2, 3, 1)), training=False))
    ref = run(model, X)
    assert np.max(np.abs(out - ref)) <= 1e-4 * np.max(np.abs(ref))


def test_convert_to_flax_native(pth, tmp_path):
    require("jax", "flax")
    from flax import nnx
    from flax.traverse_util import unflatten_dict

    from regnet_zoo.plugins import get_host

    src, model = pth
    assert main(["convert", str(src), str(tmp_path / "f.safetensors"), "--to", "flax"]) == 0
    with pytest.raises(WeightsError, match="a flax-native weights file"):
        rz.read_checkpoint(tmp_path / "f.safetensors")
    fresh = rz.create("regnety_002", "flax")
    state = nnx.state(fresh)
    flat = safetensors_io.load(tmp_path / "f.safetensors")
    pure = unflatten_dict({tuple(int(p) if p.isdigit() else p for p in k.split("/")): v for k, v in flat.items()})
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(fresh, state)
    out = np.asarray(get_host().framework("flax").run(fresh, X))
    ref = run(model, X)
    assert np.max(np.abs(out - ref)) <= 1e-4 * np.max(np.abs(ref))


def test_convert_errors_leave_nothing(pth, tmp_path, capsys):
    src, _ = pth
    (tmp_path / "broken.pth").write_bytes(src.read_bytes()[:1000])
    assert main(["convert", str(tmp_path / "broken.pth"), str(tmp_path / "out.safetensors")]) == 1
    assert "broken.pth: truncated zip archive: it starts like torch.save's zip format, but its 1,000 bytes end " \
        "before the archive's directory" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "out.safetensors"), "--keys", "pycls"]) == 1
    assert "do not fit the pycls RegNet key space" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "out.safetensors"), "--variant", "regnetx_002"]) == 1
    assert "these weights fit variant 'regnety_002'" in capsys.readouterr().err
    assert main(["convert", "regnety_02.pycls_in1k", str(tmp_path / "out.safetensors")]) == 1
    assert "unknown variant 'regnety_02.pycls_in1k'; did you mean" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pth"]


def test_convert_of_random_bytes_says_what_is_wrong_never_weights_only(tmp_path):
    """head -c 4096 /dev/urandom > x.pth; regnet-zoo convert x.pth o.safetensors"""
    from testdeps import cli

    raw = np.random.default_rng(0).bytes(4096)
    (tmp_path / "x.pth").write_bytes(raw)
    proc = cli("convert", str(tmp_path / "x.pth"), str(tmp_path / "o.safetensors"), script=True)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == (f"regnet-zoo: error: {tmp_path / 'x.pth'}: bad magic: the file starts with bytes "
                           f"{' '.join(f'{b:02x}' for b in raw[:8])}, neither a zip archive ('PK', what torch.save "
                           f"writes) nor a pickle (byte 0x80); a damaged file, or a download that saved something "
                           f"else?\n")
    assert "weights_only" not in proc.stderr and not (tmp_path / "o.safetensors").exists()


def test_errors_name_the_options_of_the_command(pth, tmp_path):
    """The same mismatch, told in each interface's words: a command's options, Python's keywords."""
    from testdeps import cli

    src, _ = pth
    proc = cli("predict", str(SAMPLE_IMAGE), "-m", "regnetx_002", "-w", str(src))
    assert proc.returncode == 1 and proc.stderr.endswith("\n  these weights fit variant 'regnety_002': --model "
                                                         "regnety_002\n"), proc.stderr
    proc = cli("convert", str(src), str(tmp_path / "o.safetensors"), "--variant", "regnetx_002")
    assert proc.returncode == 1 and proc.stderr.endswith("\n  these weights fit variant 'regnety_002': --variant "
                                                         "regnety_002\n"), proc.stderr
    with pytest.raises(WeightsError) as e:
        rz.create("regnetx_002", pretrained=src)
    assert str(e.value).endswith("\n  these weights fit variant 'regnety_002': create('regnety_002', ...)")


def test_predict_prints_top5_imagenet_classes(pth, tmp_path, capsys):
    src, model = pth
    assert main(["predict", str(SAMPLE_IMAGE), "--model", "regnety_002.pycls_in1k", "--weights", str(src)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("sample.png: regnety_002 on torch") and lines[1].split() == ["RANK", "PROB", "CLASS",
                                                                                          "INDEX"]
    assert len(lines) == 7
    assert main(["predict", str(SAMPLE_IMAGE), "-m", "regnety_002", "-w", str(src), "--json", "--top", "3"]) == 0
    rec = json.loads(capsys.readouterr().out)
    x = rz.preprocess(SAMPLE_IMAGE, rz.data_config("regnety_002"))
    logits = run(model, x)[0]
    assert [r["index"] for r in rec["top"]] == list(np.argsort(-logits, kind="stable")[:3])
    names = rz.imagenet_classes()
    assert [r["label"] for r in rec["top"]] == [names[r["index"]] for r in rec["top"]]
    assert abs(sum(r["probability"] for r in rec["top"])) <= 1


def test_predict_uses_config_labels_and_refuses_trunks(tmp_path, capsys):
    hf_model("regnety_002", num_labels=4).save_pretrained(tmp_path / "four")
    assert main(["predict", str(SAMPLE_IMAGE), "-m", "regnety_002", "-w", str(tmp_path / "four"), "--json"]) == 0
    assert {r["label"] for r in json.loads(capsys.readouterr().out)["top"]} == {f"LABEL_{i}" for i in range(4)}
    hf_model("regnety_002", headless=True).save_pretrained(tmp_path / "trunk")
    assert main(["predict", str(SAMPLE_IMAGE), "-m", "regnety_002", "-w", str(tmp_path / "trunk")]) == 1
    assert "has no classifier" in capsys.readouterr().err


def test_imagenet_classes_match_torchvision():
    import torchvision
    names = rz.imagenet_classes()
    assert names == torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    assert len(names) == 1000 and names[0] == "tench"
