"""A built model's framework, its canonical weights, and its framework-native variables (no framework imported here).

The framework is found from the model's type: the top-level packages of its classes (``torch`` for a
``torch.nn.Module``, ``keras`` for a ``keras.Model``, ``flax`` for an NNX module, or the plugin's own package)
against each registered framework's ``requires`` and plugin name. Canonical weights come from the framework
record's ``exporter`` hook, so any framework plugin (third-party too) works the same way.
"""

from __future__ import annotations

from typing import Any

from ..errors import WeightsError
from ..frameworks import Framework, import_object
from ..plugins import get_host


def framework_of(model: Any, framework: str | None = None) -> Framework:
    """The registered framework ``model`` belongs to (``framework`` names it explicitly)."""
    host = get_host()
    if framework is not None:
        return host.framework(framework)
    packages = {c.__module__.split(".")[0] for c in type(model).__mro__}
    for fw in host.frameworks.values():
        if fw.plugin.split(".")[0] in packages:
            return fw
    for fw in host.frameworks.values():
        if packages & set(fw.requires):
            return fw
    known = ", ".join(host.frameworks) or "none"
    raise WeightsError(f"cannot tell which framework a {type(model).__module__}.{type(model).__qualname__} belongs "
                       f"to (registered: {known}); pass framework=<name>, or pass canonical weights (a dict)")


def export_state(model: Any, framework: str | None = None) -> dict[str, Any]:
    """The model's weights as canonical (timm-named, PyTorch-layout) numpy arrays, via the framework's exporter."""
    fw = framework_of(model, framework)
    if not fw.exporter:
        raise WeightsError(f"framework {fw.name!r} (plugin {fw.plugin!r}) has no exporter hook; it cannot export "
                           f"canonical weights")
    export = import_object(fw.exporter, f"framework {fw.name!r} (plugin {fw.plugin!r}) exporter")
    return dict(export(model))


def load_state(model: Any, state: Any, framework: str | None = None, strict: bool = True) -> None:
    """Load canonical weights into a built model through the framework's loader hook."""
    fw = framework_of(model, framework)
    if not fw.loader:
        raise WeightsError(f"framework {fw.name!r} (plugin {fw.plugin!r}) has no loader hook")
    import_object(fw.loader, f"framework {fw.name!r} (plugin {fw.plugin!r}) loader")(model, state, strict=strict)


def native_state(model: Any, framework: str) -> dict[str, Any]:
    """The model's own variables under the framework's own names and layouts, as numpy arrays.

    torch: ``model.state_dict()`` (what ``load_state_dict`` takes); tf: every ``model.weights`` variable by its
    Keras ``path``; flax: ``nnx.state(model)`` flattened to ``/``-joined paths.
    """
    import numpy as np

    if framework == "torch":
        out = {}
        for k, v in model.state_dict().items():
            v = v.detach().cpu()
            out[k] = (v.float() if str(v.dtype) == "torch.bfloat16" else v).numpy()
        return out
    if framework == "tf":
        return {v.path: np.asarray(v) for v in model.weights}
    if framework == "flax":
        from flax import nnx
        from flax.traverse_util import flatten_dict

        pure = nnx.state(model).to_pure_dict()
        return {"/".join(map(str, k)): np.asarray(v) for k, v in flatten_dict(pure).items()}
    raise WeightsError(f"no native format for framework {framework!r}; write canonical weights (--to timm) instead")
