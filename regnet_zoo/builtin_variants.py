"""Built-in plugin: the variants of ``registry.yaml`` (shipped inside the package)."""

from __future__ import annotations

from pathlib import Path

from .hookspecs import hookimpl

REGISTRY_FILE = Path(__file__).with_name("registry.yaml")


@hookimpl
def register_variants(register):
    register(REGISTRY_FILE)
