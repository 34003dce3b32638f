"""The regnet-zoo command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import regnet_zoo as rz
from regnet_zoo.cli import main
from regnet_zoo.preprocessing import SAMPLE_IMAGE
from testdeps import cli, require


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_table_and_json(capsys):
    code, out, _ = run(capsys, "list")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 38
    assert lines[0].split() == ["NAME", "BLOCK", "NORM", "PARAMS", "GFLOPS@224", "WIDTHS", "DEPTHS", "TAGS",
                                "FRAMEWORKS"]
    assert lines[3].split() == ["regnetx_002", "X", "bn", "2.7M", "0.20", "24,56,152,368", "1,1,4,7", "pycls_in1k",
                                "+1", "torch,tf,flax"]
    kinds = {line.split()[0]: line.split()[1:3] for line in lines[1:]}  # issue 13: block kind and norm
    assert kinds["regnetv_040"] == ["V", "bn"] and kinds["regnetz_040_h"] == ["Z", "bn"]
    assert kinds["regnety_040_sgn"] == ["Y", "gn/16ch"] and kinds["regnety_040"] == ["Y", "bn"]
    code, out, _ = run(capsys, "list", "regnety_04?", "--json")
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
    assert "s4     11110  28280  28280       1      2       1010     28      2778" in out
    assert "layers       relu, batchnorm, post-activation blocks, bottleneck x1, shape-changing shortcut conv1x1" in out
    assert "registry.yaml:" in out and "(regnet_zoo.builtin_variants)" in out
    code, out, _ = run(capsys, "show", "RegNetY-4.0GF", "--json", "--resolution", "288")
    rec = json.loads(out)
    assert rec["name"] == "regnety_040" and rec["complexity"]["resolution"] == 288
    assert rec["complexity"]["mflops"] * 1e6 == rz.plan("regnety_040").flops(288)
    assert [f["channels"] for f in rec["feature_info"]] == [32, 128, 192, 512, 1088]


def test_show_and_features_at_output_stride_16(capsys):
    """issue 13: --output-stride shows the dilated plan, and features builds it."""
    code, out, _ = run(capsys, "show", "regnetz_005", "--output-stride", "16")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("regnetz_005: ")
    assert "STAGE  IN   OUT  BOTTLENECK  DEPTH  STRIDE  DILATION" in out
    assert "s4     104  256  1024        7      1       2 " in out
    assert "4      s4      P5     256       16" in out and ", output stride 16" in out
    assert rz.plan("regnetz_005", 16).flops(224) / 1e9 == pytest.approx(float(out.split("flops")[1].split()[0]),
                                                                          abs=5e-4)
    code, out, _ = run(capsys, "features", "regnetx_002", "--output-stride", "8", "--size", "64", "--json")
    rec = json.loads(out)
    assert [(f["reduction"], f["shape"][2]) for f in rec["features"]] == [(2, 32), (4, 16), (8, 8), (8, 8), (8, 8)]


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


def test_show_and_check_a_users_file(capsys, tmp_path):
    """issue 13: show and check take a user's own variants file (FILE::NAME for one of several)."""
    from testdeps import PLUGINS_DIR

    path = tmp_path / "mine.yaml"
    text = open(f"{PLUGINS_DIR}/toy_variants.yaml").read()
    path.write_text(text + text.replace("toynet_y_tiny", "toynet_y_wide").replace("ToyNetY-Tiny", "ToyNetY-Wide")
                    .replace("[16, 32, 64, 128]", "[32, 64, 128, 256]").replace("schema: 1\nvariants:\n", ""))
    code, out, _ = run(capsys, "show", f"{path}::toynet_y_wide")
    lines = out.splitlines()
    assert code == 0 and lines[:2] == ["toynet_y_wide: a tiny third-party RegNetY", f"  defined at   {path}:12"]
    assert lines[8].split() == ["s1", "16", "32", "32", "1", "2", "8", "4", "4"]
    code, out, _ = run(capsys, "show", str(path), "--json")
    assert code == 0 and [r["name"] for r in json.loads(out)] == ["toynet_y_tiny", "toynet_y_wide"]
    code, out, _ = run(capsys, "check", str(path))
    assert code == 0 and out.splitlines()[0] == f"{path}: ok (2 variants)"
    assert [line.split(":")[0] for line in out.splitlines()[1:]] == ["  toynet_y_tiny", "  toynet_y_wide"]
    code, _, err = run(capsys, "show", f"{path}::toynet_y_wdie")
    assert code == 1 and err == f"regnet-zoo: error: {path} has no variant 'toynet_y_wdie'; did you mean " \
                               f"'{path}::toynet_y_wide'?\n"


def test_check(capsys, tmp_path):
    from testdeps import PLUGINS_DIR

    good = f"{PLUGINS_DIR}/toy_variants.yaml"
    code, out, _ = run(capsys, "check", good)
    assert code == 0 and out == (f"{good}: ok (1 variant)\n  toynet_y_tiny: Y, 0.2M params, 0.028 GFLOPs@224, widths "
                                 f"16,32,64,128, depths 1,1,2,1\n")
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


# -- what a new user meets first: the real entry point, in a subprocess ---------------------------------------------
FRAMEWORK_LOG = r"^([IWE]\d{4} \d\d:\d\d:\d+\.\d+ |WARNING: All log messages before absl::InitializeLog)"


def test_version():
    import re
    from pathlib import Path

    proc = cli("--version", script=True)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"regnet-zoo {rz.__version__}\n", "")
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert re.search(r'^version = "(.+)"$', pyproject, re.M).group(1) == rz.__version__


def test_list_orders_each_family_by_complexity():
    proc = cli("list", script=True)
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines()[1:]]
    assert names[-1] == "regnetz_040_h" and names.index("regnety_008_tv") + 1 == names.index("regnety_016")
    assert names[:2] == ["regnetv_040", "regnetv_064"]  # families in alphabetical order
    assert names[2:15] == [n for n in names if n.startswith("regnetx_")]
    for family in ("regnetx_", "regnety_", "regnetv_", "regnetz_"):
        flops = [rz.plan(n).flops(224) for n in names if n.startswith(family)]
        assert flops == sorted(flops)
    assert sorted(names) == sorted(rz.list_variants())
    # the Python listing keeps its documented natural sort (DESIGN.md: list_variants ... natural sort)
    api_names = rz.list_variants("regnety_*")
    assert api_names.index("regnety_10b") == api_names.index("regnety_008_tv") + 1


def test_unknown_name_without_a_close_one_lists_the_families():
    proc = cli("show", "resnet50")
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == ("regnet-zoo: error: unknown variant 'resnet50', and no variant has a close name; the "
                           "registry holds regnetx_* (13 variants), regnety_* (19 variants), regnetv_* (2 variants) "
                           "and regnetz_* (3 variants): see `regnet-zoo list`\n")


def test_predict_with_random_weights_runs_offline_and_says_so(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home"), "HF_HUB_CACHE": None}
    proc = cli("predict", str(SAMPLE_IMAGE), "-m", "regnety_002", "--weights", "random", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == ("sample.png: regnety_002 on torch (RANDOM weights: a pipeline check, not a prediction), "
                        "input 224x224")
    assert lines[1].split() == ["RANK", "PROB", "CLASS", "INDEX"] and len(lines) == 8
    assert lines[-1] == ("note: random weights, so these classes mean nothing; for a real prediction leave out "
                         "--weights (the tag's hub weights) or pass --weights TAG (e.g. --weights pycls_in1k) or "
                         "--weights PATH (a checkpoint file or model directory)")
    proc = cli("predict", str(SAMPLE_IMAGE), "-m", "regnety_002", "-w", "random", "--json", "--top", "2", env=env)
    rec = json.loads(proc.stdout)
    assert rec["weights"] == "random" and len(rec["top"]) == 2


def test_offline_errors_name_the_command_line_option(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": None}
    cache = tmp_path / "hf" / "hub"
    advice = (f"HF_HUB_OFFLINE is set and timm/regnety_002.pycls_in1k is not in the Hugging Face cache ({cache}). "
              f"Download it once with network access (`hf download timm/regnety_002.pycls_in1k` or `huggingface-cli "
              f"download timm/regnety_002.pycls_in1k`), point HF_HUB_CACHE / HF_HOME at a cache that has it, or pass ")
    for argv in (["predict", str(SAMPLE_IMAGE), "-m", "regnety_002"], ["features", "regnety_002", "-w", "pycls_in1k"]):
        proc = cli(*argv, env=env)
        assert (proc.returncode, proc.stderr) == (1, f"regnet-zoo: error: {advice}--weights PATH.\n")
    proc = cli("convert", "regnety_002", str(tmp_path / "out.safetensors"), env=env)
    assert proc.stderr == f"regnet-zoo: error: {advice}a local checkpoint file or model directory as SRC.\n"
    proc = cli("features", "regnety_002", "--weights", "pycls_in", env=env)
    assert proc.stderr == ("regnet-zoo: error: --weights pycls_in is neither a weight tag of 'regnety_002' nor an "
                           "existing file or directory; did you mean tag 'pycls_in1k'?\n")
    proc = cli("predict", str(SAMPLE_IMAGE), "-m", "regnety_002", "-w", "pycls_in1k", env=env)
    assert proc.stderr.endswith("or pass --weights PATH.\n") and "pretrained" not in proc.stderr


def test_failed_download_shows_its_cause_in_one_line(tmp_path):
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"HF_HUB_OFFLINE": None, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_CACHE": None}
    proc = cli("predict", str(SAMPLE_IMAGE), "-m", "regnety_002", env=env, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"regnet-zoo: error: timm/regnety_002.pycls_in1k could not be downloaded (127.0.0.1:"
                                  f"{port}: Connection refused) and is not in the Hugging Face cache "
                                  f"({tmp_path / 'hf' / 'hub'}). Download it once")
    assert proc.stderr.count("\n") == 1 and proc.stderr.endswith("or pass --weights PATH.\n")


@pytest.mark.parametrize("framework", ["tf", "flax"])
def test_features_shows_the_framework_layout_and_keeps_framework_logs_quiet(framework):
    require(*{"tf": ("tensorflow", "keras", "keras_hub"), "flax": ("jax", "flax")}[framework])
    import re

    proc = cli("features", "regnetx_002", "--framework", framework)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"regnetx_002 on {framework} (random weights); input sample.png -> (1, 224, 224, 3) NHWC"
    assert lines[1].split()[:7] == ["INDEX", "MODULE", "LEVEL", "CHANNELS", "STRIDE", "SHAPE", "(NHWC)"]
    assert [line.split()[5] for line in lines[2:7]] == ["1x112x112x32", "1x56x56x24", "1x28x28x56",
                                                         "1x14x14x152", "1x7x7x368"]
    assert lines[7] == ("note: random weights, so these statistics mean nothing; load weights with --weights TAG "
                        "(e.g. --weights pycls_in1k) or --weights PATH (a checkpoint file or model directory)")
    assert not re.search(FRAMEWORK_LOG, proc.stderr, re.M) and "cuInit" not in proc.stderr, proc.stderr
    rec = json.loads(cli("features", "regnetx_002", "-f", framework, "--json").stdout)
    assert rec["layout"] == "NHWC" and rec["input_shape"] == [1, 224, 224, 3] and rec["weights"] is None
    assert rec["features"][4]["shape"] == [1, 7, 7, 368]


def test_verbose_lets_tensorflow_log():
    require("tensorflow", "keras", "keras_hub")
    import re

    proc = cli("features", "regnetx_002", "-f", "tf", "--size", "64", "--verbose", env={"TF_CPP_MIN_LOG_LEVEL": None})
    assert proc.returncode == 0 and re.search(FRAMEWORK_LOG, proc.stderr, re.M), proc.stderr


def test_framework_log_filter():
    from regnet_zoo.framework_logs import filtered

    noise = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
             b"I0000 00:00:1795965898.238414   11803 port.cc:153] oneDNN custom operations are on.\n"
             b"E0000 00:00:1795965909.643993   11803 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n"
             b"W0000 00:00:1795965909.643993   11803 computation_placer.cc:177] already registered\n"
             b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow\n")
    kept = b"F0000 00:00:1795965909.643993   11803 x.cc:1] a fatal error\nUserWarning: something of ours\n"
    assert filtered(noise + kept) == kept
