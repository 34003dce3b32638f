"""A plugin whose variant takes an alias of a built-in variant."""

from pathlib import Path

from regnet_zoo import hookimpl


@hookimpl
def register_variants(register):
    register(Path(__file__).with_name("clashing_variants.yaml"))
