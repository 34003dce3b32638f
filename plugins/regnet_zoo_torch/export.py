"""Export writers of the torch plugin (the ``writer`` contract is in ``regnet_zoo.deploy``):

* ``onnx``: ``torch.onnx.export`` with the dynamo exporter at opset ``OPSET``, input ``images`` (NCHW, batch fixed or
  symbolic ``batch``), outputs named ``logits`` / ``pooler_output`` / the pyramid levels (``P2``..); weights go to a
  ``<name>.onnx.data`` file beside the model when they exceed protobuf's 2 GB. Checked with ``onnx.checker`` and run
  in ONNX Runtime (CPU).
* ``torch_export``: ``torch.export.export`` saved with ``torch.export.save`` (``.pt2``), run with
  ``torch.export.load(path).module()``.

The model is exported in inference mode (its train/eval mode is restored afterwards).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from regnet_zoo.deploy import Artefact, ExportRequest

from .detection import _EvalModeMixin
from .fast import InferenceModel

OPSET = 18


def _check_model(model) -> nn.Module:
    if isinstance(model, InferenceModel):
        raise TypeError("a fast=True model is compiled for this process and cannot be exported; export the model "
                        "built without fast= (the exporters fold what they need)")
    if not isinstance(model, nn.Module):
        raise TypeError(f"this format exports a torch model (rz.create(name, 'torch')); got {type(model).__name__}")
    used = _training_options(model)
    if used:
        raise ValueError(f"{', '.join(used)}: training-only option{'s' if len(used) > 1 else ''}; an export is an "
                         f"inference graph. Export a model built without {'them' if len(used) > 1 else 'it'}: the "
                         f"weights are the same")
    return model


def _training_options(model: nn.Module) -> list[str]:
    """The training-only build options ``model`` shows (by its modules)."""
    from timm.layers import DropPath

    mods = list(model.modules())
    used = []
    if any(isinstance(m, nn.SyncBatchNorm) for m in mods):
        used.append("norm='sync_bn'")
    if any(isinstance(m, _EvalModeMixin) for m in mods):
        used.append("frozen_stages / norm_eval")
    if any(isinstance(m, DropPath) and m.drop_prob > 0 for m in mods):
        used.append("drop_path_rate")
    if any(isinstance(m, nn.Dropout) and m.p > 0 for m in mods):
        used.append("drop_rate")
    return used


def output_names(model: nn.Module) -> tuple[str, ...]:
    """``logits`` / ``pooler_output`` for a classifier / headless model, the pyramid levels for a backbone."""
    info = getattr(model, "feature_info", None)
    if getattr(model, "out_indices", None) is not None and info is not None:
        return tuple(f.level for f in info)
    return ("logits",) if getattr(model, "num_classes", 1) else ("pooler_output",)


def _example(model: nn.Module, request: ExportRequest) -> tuple[torch.Tensor, dict | None]:
    in_chans = next(iter(model.parameters())).shape[1]  # the stem conv's weight (O, I, kH, kW) comes first
    batch = request.batch or 2
    x = torch.zeros(batch, in_chans, *request.input_size)
    dims = None if request.batch else ({0: torch.export.Dim("batch", min=1)},)
    return x, dims


@contextlib.contextmanager
def _eval(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _as_list(out) -> list[np.ndarray]:
    return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else [np.asarray(out)]


def write_onnx(model, path: Path, request: ExportRequest) -> Artefact:
    """The ``onnx`` writer."""
    import onnx
    import onnxruntime as ort

    model = _check_model(model)
    names = output_names(model)
    opset = request.opset or OPSET
    x, dims = _example(model, request)
    with _eval(model), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=dims, opset_version=opset,
                                    input_names=["images"], output_names=list(names), verbose=False)
    program.save(str(path))  # external data (<name>.data beside it) only above 2 GB
    onnx.checker.check_model(str(path), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    external = [p.name for p in path.parent.iterdir() if p != path]
    notes = {"opset": opset, "runtime": f"onnxruntime {ort.__version__} (CPUExecutionProvider)",
             "checker": "onnx.checker.check_model(full_check=True) passed"}
    if external:
        notes["external data"] = ", ".join(external)
    return Artefact(run=lambda a: session.run(list(names), {"images": np.asarray(a, np.float32)}),
                    output_names=names, in_chans=x.shape[1], notes=notes)


def write_torch_export(model, path: Path, request: ExportRequest) -> Artefact:
    """The ``torch_export`` writer (``.pt2``)."""
    model = _check_model(model)
    x, dims = _example(model, request)
    with _eval(model), torch.no_grad():
        program = torch.export.export(model, (x,), dynamic_shapes=dims)
    torch.export.save(program, str(path))
    loaded = torch.export.load(str(path)).module()

    def run(a):
        with torch.no_grad():
            return _as_list(loaded(torch.from_numpy(np.asarray(a, np.float32))))

    return Artefact(run=run, output_names=output_names(model), in_chans=x.shape[1],
                    notes={"runtime": f"torch {torch.__version__} (torch.export.load)"})
