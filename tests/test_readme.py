"""The README's code is real: every ```python block runs as written, every public function and CLI subcommand is
shown in a code block, and every ``regnet-zoo`` command the console and bash blocks show parses.

The blocks run in order in one subprocess (the frameworks are imported once), each in a fresh namespace, so each
block stands alone as a reader would copy it. The subprocess runs in a temporary directory holding ``photo.jpg``
(the bundled sample), offline, against a Hugging Face hub cache holding the checkpoints the blocks name, written by
the real libraries here: timm's ``model.safetensors`` + ``config.json`` and transformers' ``save_pretrained``
directory with the image processor config (random weights: the blocks check that the code runs, not what it
predicts).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hubcache import use_hub_cache
from testdeps import PLUGINS_DIR, ROOT, TESTS_DIR, require

README = Path(ROOT) / "README.md"
SAMPLE = Path(ROOT) / "regnet_zoo" / "data" / "sample.png"
TIMM_REPOS = ("regnety_040.ra3_in1k", "regnetx_002.pycls_in1k")  # timm/<name>: what the blocks load
HF_REPO, HF_VARIANT = "facebook/regnet-y-040", dict(embedding_size=32, hidden_sizes=[128, 192, 512, 1088],
                                                    depths=[2, 6, 12, 2], groups_width=64, layer_type="y")
# options of create the README must show (the project standard names them)
DOCUMENTED_OPTIONS = ('device="meta"', 'abstract=True', "features_only=True", "pretrained=True")

RUNNER = r"""
import json, os, sys, time, traceback
for path, line, code in json.load(open(sys.argv[1])):
    first = code.strip().splitlines()[0]
    print(f"@@ README.md:{line}: {first}", flush=True)
    started = time.perf_counter()
    try:  # padded so that tracebacks give README line numbers
        exec(compile("\n" * (line - 1) + code, path, "exec"), {"__name__": "__readme__"})
    except BaseException:
        traceback.print_exc()
        print(f"@@ FAILED README.md:{line}: {first}", flush=True)
        sys.stderr.flush()
        os._exit(1)
    print(f"@@ ok {time.perf_counter() - started:.1f} s", flush=True)
os._exit(0)  # skip the frameworks' slow interpreter teardown
"""


def code_blocks(*languages: str) -> list[tuple[str, int, str]]:
    """``(language, line of the block's first code line, code)`` of the README's fenced blocks, in order."""
    blocks, lang, start, body = [], None, 0, []
    for number, text in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if lang is None and text.startswith("```"):
            lang, start, body = text[3:].strip(), number + 1, []
        elif lang is not None and text.strip() == "```":
            blocks.append((lang, start, "\n".join(body) + "\n"))
            lang = None
        elif lang is not None:
            body.append(text)
    assert lang is None, f"README.md: the block opened at line {start - 1} is never closed"
    return [b for b in blocks if not languages or b[0] in languages]


def shown_commands() -> list[tuple[int, list[str]]]:
    """``(README line, argv after 'regnet-zoo')`` of every regnet-zoo command in the console blocks (``$ `` lines;
    the others are output) and bash blocks."""
    out = []
    for lang, start, code in code_blocks("console", "bash"):
        for offset, line in enumerate(code.splitlines()):
            if lang == "console" and not line.startswith("$ "):
                continue
            for part in re.split(r"&&|;|\|", line.removeprefix("$ ")):
                words = shlex.split(part, comments=True)
                while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
                    words.pop(0)  # HF_HUB_OFFLINE=1 regnet-zoo ...
                if words and words[0] == "regnet-zoo":
                    out.append((start + offset, words[1:]))
    return out


@pytest.fixture
def readme_hub(tmp_path, monkeypatch):
    """An offline hub cache with what the README's blocks download, written by timm and transformers."""
    require("torch", "timm", "transformers", "safetensors", "tensorflow", "keras_hub", "flax", "ai_edge_litert")
    monkeypatch.syspath_prepend(os.path.join(TESTS_DIR, "weights"))
    from safetensors.torch import save_file
    from transformers import RegNetConfig, RegNetForImageClassification

    from test_transformers_api import PROCESSOR
    from harness import randomize
    from weights_helpers import timm_model

    cache = use_hub_cache(tmp_path / "hf_home" / "hub", monkeypatch)
    files = tmp_path / "files"
    for name in TIMM_REPOS:  # timm's hub layout: model.safetensors (timm names) + config.json
        arch = name.split(".")[0]
        (files / name).mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in timm_model(arch).state_dict().items()},
                  str(files / name / "model.safetensors"), metadata={"format": "pt"})
        (files / name / "config.json").write_text(json.dumps({"architecture": arch, "num_classes": 1000}))
        cache.add_dir(f"timm/{name}", files / name)
    hf = files / "hf"  # facebook/regnet-y-040: a transformers classifier directory + its image processor config
    randomize(RegNetForImageClassification(RegNetConfig(num_labels=1000, **HF_VARIANT))).save_pretrained(hf)
    (hf / "preprocessor_config.json").write_text(json.dumps({**PROCESSOR, "size": 224}))
    cache.add_dir(HF_REPO, hf)
    return cache


def run_blocks(blocks: list[tuple[str, int, str]], cwd: Path, timeout: float = 900) -> tuple[str, float]:
    """Run ``blocks`` (``(file, line, code)``) in one subprocess in ``cwd`` on this checkout's code, offline; fail
    naming the first block that raises. Returns the runner's output and the wall time."""
    (cwd / "blocks.json").write_text(json.dumps(blocks))
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([ROOT, PLUGINS_DIR] + ([os.environ["PYTHONPATH"]]
                                                               if os.environ.get("PYTHONPATH") else []))}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", RUNNER, "blocks.json"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    seconds = time.perf_counter() - started
    failed = re.search(r"^@@ FAILED (.*)$", proc.stdout, re.M)
    if failed or proc.returncode:
        where = failed.group(1) if failed else (re.findall(r"^@@ (README.*)$", proc.stdout, re.M)[-1:] or
                                                ["before the first block"])[0]
        pytest.fail(f"README python block failed: {where}\n{proc.stderr[-6000:]}\n--- stdout ---\n"
                    f"{proc.stdout[-3000:]}", pytrace=False)
    return proc.stdout, seconds


def test_python_blocks_run(readme_hub, tmp_path):
    """Every ```python block runs, offline, in a fresh namespace; a failure names the block's README line."""
    from PIL import Image

    blocks = [(str(README), line, code) for _, line, code in code_blocks("python")]
    assert len(blocks) >= 8, "README.md lost its python blocks?"
    Image.open(SAMPLE).convert("RGB").save(tmp_path / "photo.jpg")
    out, seconds = run_blocks(blocks, tmp_path)
    print(f"{len(blocks)} README python blocks in {seconds:.1f} s\n{out}")


def test_a_failing_block_is_named(tmp_path):
    blocks = [("README.md", 10, "x = 1\n"), ("README.md", 20, "import regnet_zoo as rz\n\nrz.create('resnet50')\n"),
              ("README.md", 30, "raise SystemExit('never reached')\n")]
    with pytest.raises(pytest.fail.Exception) as e:
        run_blocks(blocks, tmp_path, timeout=120)
    message = str(e.value)
    assert "failed: README.md:20: import regnet_zoo as rz" in message
    assert 'README.md", line 22' in message and "UnknownVariantError" in message and "never reached" not in message


def test_every_public_function_and_documented_option_is_shown():
    import regnet_zoo as rz

    python = "".join(code for _, _, code in code_blocks("python"))
    functions = [n for n in rz.__all__ if inspect.isfunction(getattr(rz, n))]
    assert "create" in functions and "preprocess" in functions  # the lazy names count too
    missing = [n for n in functions if not re.search(rf"\brz\.{n}\(", python)]
    assert not missing, f"public functions without an example in a README python block: {missing}"
    missing = [o for o in DOCUMENTED_OPTIONS if o not in python]
    assert not missing, f"create options without an example in a README python block: {missing}"


def test_every_cli_subcommand_is_shown_and_every_shown_command_parses(capsys):
    import argparse

    from regnet_zoo.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    commands = shown_commands()
    assert len(commands) >= 10, commands
    shown = {argv[0] for _, argv in commands if argv and not argv[0].startswith("-")}
    missing = sorted(set(sub.choices) - shown)
    assert not missing, f"CLI subcommands without an example in a README console/bash block: {missing}"
    for line, argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit as e:
            error = capsys.readouterr().err.strip().splitlines()[-1:]
            assert e.code == 0, f"README.md:{line}: `regnet-zoo {shlex.join(argv)}` does not parse: {error}"


def test_registry_examples_load():
    """Every ```yaml block that is a variants file loads through the registry loader (issue 13: the schema-2
    example shows every field), and builds a plan."""
    import regnet_zoo as rz
    from regnet_zoo.registry_file import load_text

    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S) if b.startswith("schema:")]
    assert blocks
    for block in blocks:
        for variant in load_text(block, "README.md"):
            assert rz.plan(variant).params() > 0
