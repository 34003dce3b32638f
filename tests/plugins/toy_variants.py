"""A toy plugin that adds variants as data (a YAML file next to this module)."""

from pathlib import Path

from regnet_zoo import hookimpl


@hookimpl
def register_variants(register):
    register(Path(__file__).with_name("toy_variants.yaml"))
