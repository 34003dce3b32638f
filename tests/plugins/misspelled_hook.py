"""A plugin with a misspelled hook implementation: check_pending() must refuse it."""

from regnet_zoo import hookimpl


@hookimpl
def register_frameworkz(register):
    pass
