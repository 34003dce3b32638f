"""Exceptions raised by regnet-zoo. Every message names what was wrong and what was expected."""

from __future__ import annotations


class RegNetZooError(Exception):
    """Base class of all regnet-zoo errors."""


class UnknownVariantError(RegNetZooError, KeyError):
    """A variant name, alias or weight tag that the registry does not know."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0] if self.args else ""


class UnknownFrameworkError(RegNetZooError, ValueError):
    """A framework name or alias that no plugin registered."""


class FrameworkNotInstalledError(RegNetZooError, ImportError):
    """A known framework whose modules are not importable; the message says which extra to install."""


class RegistryError(RegNetZooError, ValueError):
    """Invalid variant data. ``problems`` holds every ``file:line:col: message`` line found."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class PluginError(RegNetZooError):
    """A plugin that clashes with another or violates a hook contract."""


class WeightsError(RegNetZooError):
    """Weights that cannot be found, read or matched to a model."""


class ExportError(RegNetZooError):
    """An export whose artefact failed verification against its source model; ``report`` holds the numbers."""

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report
