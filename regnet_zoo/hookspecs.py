"""The hooks a regnet-zoo plugin may implement (pluggy project ``regnet_zoo``).

A plugin is a module (or object) with functions decorated by ``regnet_zoo.hookimpl``. Third-party plugins are
found through the ``regnet_zoo`` entry-point group; the built-in ones use exactly the same hooks.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("regnet_zoo")
hookimpl = pluggy.HookimplMarker("regnet_zoo")


@hookspec
def register_variants(register):
    """Hand variant files to the registry: call ``register(path)`` once per YAML file (schema in
    ``regnet_zoo.registry_file``). Every file is validated; a name or alias already taken is an error naming
    both definitions."""


@hookspec
def register_frameworks(register):
    """Hand framework backends to the host: call ``register(MyFramework(name=...))`` once per framework, with
    ``MyFramework`` a subclass of ``regnet_zoo.Framework`` whose methods (build, run, load_weights, export_weights,
    ...) import the framework inside their bodies, so registering never imports it."""


@hookspec(firstresult=True)
def resolve_weights(variant, weight, pretrained):
    """Find weights for ``create(..., pretrained=...)``.

    ``variant`` is the ``Variant``; ``weight`` the selected ``WeightTag`` (or ``None`` when ``pretrained`` is a
    path); ``pretrained`` the user's value (a tag name or a ``pathlib.Path``). Return a ``WeightSource`` (see
    ``regnet_zoo.frameworks``) or ``None`` to let the next plugin try. The first non-``None`` answer wins."""
