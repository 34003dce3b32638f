"""A toy framework plugin: exercises create(), features and every host error path without a real framework.

The "model" records its BuildRequest; the runner returns zeros of the right shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from regnet_zoo import ExportFormat, Framework, hookimpl
from regnet_zoo.deploy import Artefact
from regnet_zoo.loading import state_to_load


class ToyModel:
    def __init__(self, request):
        self.request = request
        self.state = dict(state_to_load(request) or {})
        self.feature_info = request.plan.feature_info(request.out_indices) if request.features_only else None


@dataclass(frozen=True)
class ToyOptions:
    note: str = ""


def build(request):
    return ToyModel(request)


def run(model, x):
    n, _, h, w = x.shape
    req = model.request
    if req.features_only:
        return [np.zeros((n, f.channels, math.ceil(h / f.reduction), math.ceil(w / f.reduction)), np.float32)
                for f in model.feature_info]
    return np.zeros((n, req.num_classes or req.plan.num_features), np.float32)


def load(model, state, strict=True):
    model.state.update(state)


def export(model):
    return dict(model.state)


def write_toy(model, path, request):
    """A ``toyfmt`` writer: the file plus a sidecar; option ``note`` = "crash" fails mid-write, "off" makes the
    artefact disagree with the model."""
    (path.parent / f"{path.name}.data").write_bytes(b"weights")
    note = model.request.options.get("note")
    if note == "crash":
        raise RuntimeError("toy writer crashed")
    path.write_bytes(b"graph")
    offset = 1.0 if note == "off" else 0.0

    def run_artefact(x):
        out = run(model, x)
        return [o + offset for o in (out if isinstance(out, list) else [out])]

    names = tuple(f.level for f in model.feature_info) if model.feature_info else ("logits",)
    return Artefact(run=run_artefact, output_names=names, notes={"runtime": "toy"})


class ToyFramework(Framework):
    def build(self, request):
        return build(request)

    def run(self, model, x, labels=None):
        return run(model, x)

    def load_weights(self, model, state, strict=True):
        load(model, state, strict)

    def export_weights(self, model):
        return export(model)

    def write_artefact(self, format, model, path, request):
        return write_toy(model, path, request)


@hookimpl
def register_frameworks(register):
    register(ToyFramework(name="toy", aliases=("toyfw",), requires=("json",), install_hint="pip install toy",
                          description="a test double", options=ToyOptions, formats=(ExportFormat("toyfmt", suffix=".toy"),)))
    register(Framework(name="ghost", requires=("definitely_not_installed_xyz",),
                       install_hint="pip install 'regnet-zoo[ghost]'"))
