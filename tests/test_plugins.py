"""The pluggy host: built-in and third-party plugins, entry points, REGNET_ZOO_LOAD_PLUGINS, failures, clashes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import regnet_zoo as rz
from testdeps import PLUGINS_DIR
from regnet_zoo.errors import PluginError, RegistryError


def test_builtin_plugins_are_registered_by_module_name(fresh_host):
    host = fresh_host.get_host()
    names = {p.name: p for p in host.plugins()}
    for name in ("regnet_zoo.builtin_variants", "regnet_zoo_torch", "regnet_zoo_tf", "regnet_zoo_flax"):
        assert names[name].builtin and names[name].distribution == "regnet-zoo"
    assert names["regnet_zoo_torch"].hooks == ("register_frameworks",)
    assert [f.name for f in rz.list_frameworks()] == ["torch", "tf", "flax"]


def test_toy_plugins_add_a_framework_and_variants(toy_host):
    assert "toynet_y_tiny" in rz.list_variants()
    assert rz.get_variant("ToyNetY-Tiny").plugin == "toy_variants"
    assert rz.get_variant("toynet_y_tiny").source.endswith("toy_variants.yaml:3 (toy_variants)")
    info = {f.name: f for f in rz.list_frameworks()}
    assert info["toy"].installed and info["toy"].plugin == "toy_framework"
    assert not info["ghost"].installed


def test_a_backend_method_left_out_is_named_when_called(fresh_host, tmp_path):
    """A framework backend is an object; a method its plugin did not implement says which, and what cannot be done."""

    class Bare:
        @rz.hookimpl
        def register_frameworks(self, register):
            register(rz.Framework(name="bare", requires=("json",)))

    fresh_host.get_host().register(Bare(), "bare_plugin")
    with pytest.raises(PluginError, match=r"framework 'bare' \(plugin 'bare_plugin'\) does not implement build\(\), "
                                          r"so it cannot build models"):
        rz.create("regnetx_002", framework="bare")
    with pytest.raises(PluginError, match=r"does not implement export_weights\(\), so it cannot export canonical"):
        rz.weights.export_state(object(), framework="bare")


def test_misspelled_hook_fails_loudly(fresh_host):
    import misspelled_hook

    with pytest.raises(Exception, match="register_frameworkz"):
        fresh_host.get_host().register(misspelled_hook, "misspelled_hook")


def test_framework_name_clash_names_both_plugins(fresh_host):
    import clashing_framework

    host = fresh_host.get_host()
    host.register(clashing_framework, "clashing_framework")
    with pytest.raises(PluginError, match="framework name 'pytorch' registered by plugin 'clashing_framework' is "
                                          "already taken by framework 'torch' of plugin 'regnet_zoo_torch'"):
        rz.list_frameworks()


def test_variant_alias_clash_names_both_definitions(fresh_host):
    import clashing_variants

    fresh_host.get_host().register(clashing_variants, "clashing_variants")
    with pytest.raises(RegistryError, match=r"alias 'RegNetX-200MF' of variant 'my_regnet' is already used by "
                                            r"variant 'regnetx_002' \(.*registry.yaml:\d+ "
                                            r"\(regnet_zoo.builtin_variants\)\)"):
        rz.list_variants()


def _dist(tmp_path, name: str, entry_points: str):
    """A minimal installed distribution (``*.dist-info`` with entry_points.txt) on a path we control."""
    info = tmp_path / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def _run(code: str, tmp_path, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), PLUGINS_DIR]), **env}
    full_env.pop("REGNET_ZOO_LOAD_PLUGINS", None) if "REGNET_ZOO_LOAD_PLUGINS" not in env else None
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120)


PROBE = ("import json, warnings; warnings.simplefilter('ignore'); import regnet_zoo as rz; "
         "from regnet_zoo.plugins import get_host; h = get_host(); "
         "print(json.dumps({'variants': rz.list_variants('toy*'), 'frameworks': [f.name for f in rz.list_frameworks()],"
         " 'failed': [[f.name, f.distribution, f.error] for f in h.failures]}))")


@pytest.fixture
def third_party(tmp_path):
    _dist(tmp_path, "toy-regnet-plugins", """\
        [regnet_zoo]
        toy_variants = toy_variants
        toy_framework = toy_framework
        broken = module_that_does_not_exist_abc
    """)
    return tmp_path


def test_entry_point_plugins_load_and_a_broken_one_is_reported(third_party):
    proc = _run(PROBE, third_party)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["variants"] == ["toynet_y_tiny"]
    assert out["frameworks"] == ["torch", "tf", "flax", "toy", "ghost"] or \
        set(out["frameworks"]) == {"torch", "tf", "flax", "toy", "ghost"}
    assert out["failed"] == [["broken", "toy-regnet-plugins",
                              "ModuleNotFoundError: No module named 'module_that_does_not_exist_abc'"]]


@pytest.mark.parametrize("setting, variants, frameworks", [
    ("", [], {"torch", "tf", "flax"}),
    ("toy_framework", [], {"torch", "tf", "flax", "toy", "ghost"}),
    ("toy_variants,broken", ["toynet_y_tiny"], {"torch", "tf", "flax"}),
])
def test_load_plugins_env_selects_entry_points(third_party, setting, variants, frameworks):
    proc = _run(PROBE, third_party, REGNET_ZOO_LOAD_PLUGINS=setting)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["variants"] == variants and set(out["frameworks"]) == frameworks
    assert bool(out["failed"]) == ("broken" in setting)


def test_cli_plugins_lists_failures(third_party):
    proc = _run("import sys; from regnet_zoo.cli import main; sys.exit(main(['plugins']))", third_party)
    assert proc.returncode == 0
    assert "toy_framework" in proc.stdout and "third-party" in proc.stdout
    assert "failed to load: broken (toy-regnet-plugins): ModuleNotFoundError" in proc.stderr
