"""A plugin registering a framework under an alias the torch plugin already uses."""

from regnet_zoo import Framework, hookimpl


@hookimpl
def register_frameworks(register):
    register(Framework(name="pytorch"))
