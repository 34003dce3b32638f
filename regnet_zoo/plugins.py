"""The pluggy host: loads plugins, then collects their variants and frameworks.

Order: third-party plugins from the ``regnet_zoo`` entry-point group (filtered by ``REGNET_ZOO_LOAD_PLUGINS``:
unset = all, empty = none, ``a,b`` = only those), then the built-in plugins by module name, then
``check_pending()`` so a misspelled hook implementation fails loudly. A plugin whose import fails is recorded
(name, distribution, error), warned about, and skipped.
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, UnknownFrameworkError, describe
from .frameworks import Framework
from .registry import Registry
from .registry_file import load_file

PROJECT = "regnet_zoo"
ENTRY_POINT_GROUP = "regnet_zoo"
LOAD_PLUGINS_ENV = "REGNET_ZOO_LOAD_PLUGINS"
BUILTIN_PLUGINS = (
    "regnet_zoo.builtin_variants",
    "regnet_zoo.hub_weights",
    "regnet_zoo_torch",
    "regnet_zoo_tf",
    "regnet_zoo_flax",
)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded."""

    name: str
    distribution: str
    error: str


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    hooks: tuple[str, ...]
    builtin: bool


class Host:
    """One plugin manager and what its plugins registered (collected on first use)."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self._dists: dict[str, str] = {}
        self._builtin: set[str] = set()
        self._registry: Registry | None = None
        self._frameworks: dict[str, Framework] | None = None
        self._framework_index: dict[str, str] = {}
        self._lock = threading.RLock()

    # -- loading -------------------------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        from importlib.metadata import entry_points

        allowed = os.environ.get(LOAD_PLUGINS_ENV)
        only = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if only is not None and ep.name not in only:
                continue
            dist = ep.dist.name if ep.dist is not None else "?"
            try:
                plugin = ep.load()
            except Exception as e:  # a broken plugin must not take the host down
                self._fail(ep.name, dist, e)
                continue
            self.register(plugin, ep.name, dist)

    def load_builtins(self) -> None:
        for module_name in BUILTIN_PLUGINS:
            try:
                module = importlib.import_module(module_name)
            except Exception as e:
                self._fail(module_name, "regnet-zoo", e)
                continue
            self.register(module, module_name, "regnet-zoo", builtin=True)

    def _fail(self, name: str, dist: str, error: BaseException) -> None:
        failure = PluginFailure(name, dist, f"{type(error).__name__}: {error}")
        self.failures.append(failure)
        warnings.warn(f"regnet-zoo: plugin {name!r} (distribution {dist!r}) failed to load and was skipped: "
                      f"{failure.error}", RuntimeWarning, stacklevel=3)

    def register(self, plugin: Any, name: str | None = None, dist: str = "?", builtin: bool = False) -> str:
        """Register a plugin object; re-collect variants and frameworks on next use."""
        with self._lock:
            registered = self.pm.register(plugin, name=name)
            if registered is None:
                raise PluginError(f"plugin {name!r} is already registered (or blocked)")
            self.pm.check_pending()
            self._dists[registered] = dist
            if builtin:
                self._builtin.add(registered)
            self._registry = None
            self._frameworks = None
            return registered

    def unregister(self, name: str) -> None:
        with self._lock:
            self.pm.unregister(name=name)
            self._registry = None
            self._frameworks = None

    # -- collections ---------------------------------------------------------------------------------------
    @property
    def registry(self) -> Registry:
        with self._lock:
            if self._registry is None:
                registry = Registry()
                for plugin_name, path in self._calls("register_variants"):
                    registry.add(load_file(Path(path), plugin=plugin_name))
                self._registry = registry
            return self._registry

    @property
    def frameworks(self) -> dict[str, Framework]:
        with self._lock:
            if self._frameworks is None:
                frameworks: dict[str, Framework] = {}
                index: dict[str, str] = {}
                for plugin_name, fw in self._calls("register_frameworks"):
                    if not isinstance(fw, Framework):
                        raise PluginError(f"plugin {plugin_name!r} registered {fw!r}; expected a "
                                          f"regnet_zoo.Framework")
                    fw = _with_plugin(fw, plugin_name)
                    for key in (fw.name, *fw.aliases):
                        if key.lower() in index:
                            other = frameworks[index[key.lower()]]
                            raise PluginError(f"framework name {key!r} registered by plugin {plugin_name!r} is "
                                              f"already taken by framework {other.name!r} of plugin "
                                              f"{other.plugin!r}")
                        index[key.lower()] = fw.name
                    frameworks[fw.name] = fw
                self._frameworks, self._framework_index = frameworks, index
            return self._frameworks

    def framework(self, name: str) -> Framework:
        frameworks = self.frameworks
        key = self._framework_index.get(str(name).lower())
        if key is None:
            known = ", ".join(f"{f.name} ({', '.join(f.aliases)})" if f.aliases else f.name
                              for f in frameworks.values())
            raise UnknownFrameworkError(f"unknown framework {describe(name)}; known frameworks: {known or 'none'}")
        return frameworks[key]

    def _calls(self, hook_name: str) -> list[tuple[str, Any]]:
        """Call ``hook_name`` on every plugin with a ``register`` callback; return (plugin name, item) pairs."""
        items: list[tuple[str, Any]] = []
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        for impl in sorted(impls, key=lambda i: i.plugin_name not in self._builtin):  # built-ins first
            impl.function(register=lambda item, _p=impl.plugin_name: items.append((_p, item)))
        return items

    def plugins(self) -> list[PluginInfo]:
        out = []
        for name, plugin in self.pm.list_name_plugin():
            hooks = tuple(h.name for h in self.pm.get_hookcallers(plugin) or ())
            out.append(PluginInfo(name, self._dists.get(name, "?"), hooks, name in self._builtin))
        return out


def _with_plugin(fw: Framework, plugin: str) -> Framework:
    from dataclasses import replace

    return replace(fw, plugin=plugin)


_host: Host | None = None
_host_lock = threading.Lock()


def get_host() -> Host:
    """The process-wide host, created and loaded on first use."""
    global _host
    with _host_lock:
        if _host is None:
            host = Host()
            host.load_entry_points()
            host.load_builtins()
            _host = host
        return _host


def reset() -> None:
    """Forget the loaded plugins (the next call re-reads entry points and the environment)."""
    global _host
    with _host_lock:
        _host = None
