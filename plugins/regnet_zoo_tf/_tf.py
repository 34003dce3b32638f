"""Import TensorFlow and Keras 3 safely, once: the one place this plugin imports them.

Two traps are handled here:

* TensorFlow imported before ``triton`` (which ``torch._dynamo`` pulls in, e.g. via timm or transformers) makes a
  later ``import triton`` segfault the process. ``triton`` imported first is harmless (about 0.2 s), so it is
  imported before TensorFlow whenever it is installed and TensorFlow is not loaded yet.
* Keras 3 picks its backend once, at import. This plugin needs the TensorFlow backend: ``KERAS_BACKEND`` is set to
  ``tensorflow`` when unset, and a different backend (set in the environment or already imported) is an error
  that says what to do, rather than a confusing failure deep inside a layer.
"""

from __future__ import annotations

import importlib.util
import os
import sys


def _preload_triton() -> None:
    if "tensorflow" in sys.modules or "triton" in sys.modules:
        return
    if importlib.util.find_spec("triton") is None:
        return
    try:
        import triton  # noqa: F401  (must precede TensorFlow, see module docstring)
    except Exception:  # a broken triton must not stop a TensorFlow user
        pass


def _check_backend() -> None:
    if "keras" in sys.modules:
        import keras

        backend = keras.backend.backend()
        if backend != "tensorflow":
            raise RuntimeError(
                f"regnet_zoo_tf builds Keras 3 models on the TensorFlow backend, but keras was already imported with "
                f"the {backend!r} backend. Set KERAS_BACKEND=tensorflow before anything imports keras (or use "
                f"framework='flax' / 'torch' for a {backend} model)."
            )
        return
    requested = os.environ.get("KERAS_BACKEND")
    if requested is None:
        os.environ["KERAS_BACKEND"] = "tensorflow"
    elif requested != "tensorflow":
        raise RuntimeError(
            f"KERAS_BACKEND={requested!r}, but regnet_zoo_tf needs the TensorFlow backend. Unset KERAS_BACKEND or set "
            f"it to 'tensorflow' before importing keras."
        )


_preload_triton()
_check_backend()

import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":  # e.g. ~/.keras/keras.json overriding an unset variable
    raise RuntimeError(f"keras is using the {keras.backend.backend()!r} backend; regnet_zoo_tf needs "
                       f"KERAS_BACKEND=tensorflow")

__all__ = ["tf", "keras"]
