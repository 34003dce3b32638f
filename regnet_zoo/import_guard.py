"""Keep ``triton`` out of a process that has already loaded TensorFlow (the import-order segfault).

Loading triton's native extension (``triton._C.libtriton``) after TensorFlow's shared libraries kills the process
with a segmentation fault and no message (both bundle LLVM). timm and ``torch._dynamo`` import triton, so
``import tensorflow`` (or ``keras`` / ``keras_hub``) followed by ``rz.create(name)`` (torch) died with exit 139.

Installed when ``regnet_zoo`` is imported, this meta-path finder refuses ``import triton`` with a
``ModuleNotFoundError`` *only* while TensorFlow is in ``sys.modules`` and triton is not loaded yet; torch then runs
as if triton were not installed (eager mode and ``torch.compile``'s CPU inductor do not need it; only GPU inductor
kernels do). The refusal comes from the spec's loader, at import time: ``importlib.util.find_spec("triton")``, which
libraries call to probe for optional packages (transformers does on import), still answers without raising. Triton loaded first (any order in which torch's compiler stack precedes TensorFlow) is harmless and
untouched. ``REGNET_ZOO_ALLOW_TRITON=1`` turns the guard off.

What it cannot cover: ``import tensorflow; import timm`` with regnet_zoo not imported yet crashes inside timm,
before any regnet_zoo code runs.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

MESSAGE = ("regnet_zoo keeps triton out of a process that has already imported TensorFlow (loading it after "
           "TensorFlow segfaults); torch runs without it on CPU. Import torch._dynamo before TensorFlow to keep "
           "triton, or set REGNET_ZOO_ALLOW_TRITON=1 to disable this guard")


class _RefusingLoader(importlib.abc.Loader):
    """Fails the import itself (``ModuleNotFoundError``, which torch's triton probes catch)."""

    def create_module(self, spec):
        raise ModuleNotFoundError(MESSAGE, name=spec.name)

    def exec_module(self, module):  # never reached: create_module raises
        raise ModuleNotFoundError(MESSAGE, name=module.__name__)


class TritonAfterTensorFlowBlocker:
    """A ``sys.meta_path`` finder that refuses ``triton`` once TensorFlow is loaded (see the module docstring)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] != "triton" or "tensorflow" not in sys.modules or "triton" in sys.modules:
            return None
        return importlib.machinery.ModuleSpec(fullname, _RefusingLoader())


def install() -> None:
    """Put the blocker first on ``sys.meta_path`` (once per process)."""
    if os.environ.get("REGNET_ZOO_ALLOW_TRITON", "") not in ("", "0"):
        return
    if not any(isinstance(f, TritonAfterTensorFlowBlocker) for f in sys.meta_path):
        sys.meta_path.insert(0, TritonAfterTensorFlowBlocker())
