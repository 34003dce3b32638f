"""The regnet-zoo command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import regnet_zoo as rz
from regnet_zoo.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_table_and_json(capsys):
    code, out, _ = run(capsys, "list")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 32
    assert lines[0].split() == ["NAME", "BLOCK", "PARAMS", "GFLOPS@224", "WIDTHS", "DEPTHS", "TAGS", "FRAMEWORKS"]
    assert lines[1].split() == ["regnetx_002", "X", "2.7M", "0.20", "24,56,152,368", "1,1,4,7", "pycls_in1k", "+1",
                                "torch,tf,flax"]
    code, out, _ = run(capsys, "list", "regnety_04*", "--json")
    (rec,) = json.loads(out)
    assert rec["params"] == 20646656 and rec["tags"] == ["ra3_in1k", "pycls_in1k", "hf_in1k"]
    assert abs(rec["gflops"] - 3.973301344) < 1e-12


def test_list_pretrained(capsys):
    code, out, _ = run(capsys, "list", "regnety_10b", "--pretrained")
    assert code == 0 and "facebook/regnet-y-10b-seer-in1k" in out and len(out.splitlines()) == 3


def test_list_nothing_matches(capsys):
    code, _, err = run(capsys, "list", "resnet*")
    assert code == 1 and "no variant matches 'resnet*'" in err


def test_show_regnety_10b(capsys):
    code, out, _ = run(capsys, "show", "regnety_10b")
    assert code == 0
    assert "params       9,352,215,872 (1000 classes); 9,323,934,872 without head" in out
    assert "flops        1863.313 GFLOPs" in out
    assert "s4     11110  28280  1      2       1010     28      2778" in out
    assert "registry.yaml:" in out and "(regnet_zoo.builtin_variants)" in out
    code, out, _ = run(capsys, "show", "RegNetY-4.0GF", "--json", "--resolution", "288")
    rec = json.loads(out)
    assert rec["name"] == "regnety_040" and rec["complexity"]["resolution"] == 288
    assert rec["complexity"]["mflops"] * 1e6 == rz.plan("regnety_040").flops(288)
    assert [f["channels"] for f in rec["feature_info"]] == [32, 128, 192, 512, 1088]


def test_errors_go_to_stderr_without_traceback(capsys):
    code, out, err = run(capsys, "show", "regnety_04")
    assert (code, out) == (1, "")
    assert err == "regnet-zoo: error: unknown variant 'regnety_04'; did you mean 'regnety_040'?\n"
    with pytest.raises(Exception):
        main(["--traceback", "show", "regnety_04"])


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["lst"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2


def test_frameworks(capsys):
    code, out, _ = run(capsys, "frameworks", "--json")
    assert [f["name"] for f in json.loads(out)] == ["torch", "tf", "flax"]


def test_check(capsys, tmp_path):
    from testdeps import PLUGINS_DIR

    good = f"{PLUGINS_DIR}/toy_variants.yaml"
    code, out, _ = run(capsys, "check", good)
    assert code == 0 and out == f"{good}: ok (1 variant)\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: 1\nvariants:\n  x1:\n    block: x\n    stem_width: true\n")
    code, out, err = run(capsys, "check", good, str(bad))
    assert code == 1
    assert f"{bad}:5:17: x1.stem_width must be an int, got a bool ('true')" in err.splitlines()
    assert f"{bad}:3:3: variant 'x1' is missing required field 'widths'" in err.splitlines()
    clash = tmp_path / "clash.yaml"
    clash.write_text(open(f"{PLUGINS_DIR}/clashing_variants.yaml").read())
    code, _, err = run(capsys, "check", str(clash))
    assert code == 1 and "alias 'RegNetX-200MF' of variant 'my_regnet' is already used by variant 'regnetx_002'" in err
    code, _, err = run(capsys, "check", str(tmp_path / "missing.yaml"))
    assert code == 1 and "cannot read variants file" in err


def test_features_on_the_sample_image(capsys, toy_host):
    code, out, _ = run(capsys, "features", "regnetx_002", "--framework", "toy", "--json")
    rec = json.loads(out)
    assert code == 0 and rec["input_shape"] == [1, 3, 224, 224]
    assert [f["shape"] for f in rec["features"]] == [[1, 32, 112, 112], [1, 24, 56, 56], [1, 56, 28, 28],
                                                      [1, 152, 14, 14], [1, 368, 7, 7]]


def test_python_dash_m():
    proc = subprocess.run([sys.executable, "-m", "regnet_zoo", "show", "regnety_04"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and "did you mean 'regnety_040'" in proc.stderr and "Traceback" not in proc.stderr
