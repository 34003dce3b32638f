"""Exceptions raised by regnet-zoo. Every message names what was wrong and what was expected."""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator


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


# -- how a message shows a value and names an option ----------------------------------------------------------------
def describe(value: object, limit: int = 60) -> str:
    """A value for an error message: its repr when short, else its type and the start of its repr on one line.

    An error never prints a whole object (a model's repr runs to hundreds of lines): ``describe(model)`` is
    ``"a regnet_zoo_torch.model.RegNet: RegNet(..."``.
    """
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the error being reported
        text = object.__repr__(value)
    kind = type(value)
    if kind.__module__ == "builtins" and len(text) <= limit and "\n" not in text:  # 'regnety_04', (5,), None
        return text
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    lines = text.splitlines() or [""]
    head = lines[0][:limit]
    return f"a {name}: {head}{'...' if len(lines) > 1 or len(lines[0]) > limit else ''}"


# An error that tells the user what to pass names the option of the interface it was raised through: Python's
# keyword by default (``pretrained=<local path>``); the command line maps these spellings to its own options
# (``--weights PATH``) for the duration of a command with ``spelled``.
_SPELLINGS: ContextVar[dict[str, str]] = ContextVar("regnet_zoo_spellings", default={})


def spell(python: str, **values: object) -> str:
    """``python`` (an option or call as Python writes it, a ``str.format`` template such as ``"pretrained={value!r}"``
    or ``"pretrained=<local path>"``) as the interface in use spells it, with ``values`` filled in."""
    return _SPELLINGS.get().get(python, python).format(**values)


@contextmanager
def spelled(spellings: dict[str, str]) -> Iterator[None]:
    """Within the block, errors spell the given Python options and calls (``spell`` templates) as ``spellings``
    says."""
    token = _SPELLINGS.set({**_SPELLINGS.get(), **spellings})
    try:
        yield
    finally:
        _SPELLINGS.reset(token)
