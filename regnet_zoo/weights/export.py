"""A built model's framework and its canonical weights, through the framework's backend (no framework imported here).

The framework is the registered backend whose ``owns(model)`` accepts it (by default: the model's classes come from
the plugin's package or one of its ``requires`` modules), so any framework plugin, third-party too, works the same
way.
"""

from __future__ import annotations

from typing import Any

from ..errors import WeightsError
from ..frameworks import Framework, model_packages
from ..plugins import get_host


def framework_of(model: Any, framework: str | None = None) -> Framework:
    """The registered framework ``model`` belongs to (``framework`` names it explicitly)."""
    host = get_host()
    if framework is not None:
        return host.framework(framework)
    packages = model_packages(model)
    for fw in sorted(host.frameworks.values(), key=lambda fw: fw.plugin.split(".")[0] not in packages):
        if fw.owns(model):  # a plugin's own model classes first, then the frameworks they derive from
            return fw
    known = ", ".join(host.frameworks) or "none"
    raise WeightsError(f"cannot tell which framework a {type(model).__module__}.{type(model).__qualname__} belongs "
                       f"to (registered: {known}); pass framework=<name>, or pass canonical weights (a dict)")


def export_state(model: Any, framework: str | None = None) -> dict[str, Any]:
    """The model's weights as canonical (timm-named, PyTorch-layout) numpy arrays."""
    return dict(framework_of(model, framework).export_weights(model))


def load_state(model: Any, state: Any, framework: str | None = None, strict: bool = True) -> None:
    """Load canonical weights into a built model."""
    framework_of(model, framework).load_weights(model, state, strict=strict)
