"""The input and output contract every framework's model applies, defined once (pure Python, shapes and dtype
names only, so plugins call it eagerly before any framework op runs).

Inputs: a rank-4 image batch in the model's layout, ``in_chans`` channels (a batch in the other layout gets a
transpose hint), height and width >= 32 (five stride-2 layers), a floating dtype. Integer images are refused with
the ``/ 255`` hint; every floating dtype (float16, bfloat16, float32, float64) is accepted and computed in the
model's dtype (a float64 batch runs in float32 on a float32 model, in every framework).

Loss (Hugging Face's rule for ``labels=``): MSE when the model has one output; cross-entropy for integer class
indices of shape (B,); BCE-with-logits for float multi-hot labels of shape (B, num_classes).
"""

from __future__ import annotations

from typing import Sequence

from .plan import MIN_INPUT_SIZE

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
LOSSES = ("mse", "cross_entropy", "bce")


def dtype_name(dtype) -> str:
    """``float32`` for numpy / jax / tf dtypes (``.name``) and torch dtypes (``torch.float32``)."""
    name = getattr(dtype, "name", None)
    if not isinstance(name, str):
        name = str(dtype)
    return name.rsplit(".", 1)[-1]


def _static(size):
    """``size`` as an int, or ``None`` when it is not known yet (``None`` or a symbolic dimension)."""
    try:
        return None if size is None else int(size)
    except Exception:  # a symbolic dimension refuses int(); what it is depends on the tracing library
        return None


def check_image_batch(shape: Sequence, dtype, *, in_chans: int, channels_first: bool,
                      min_size: int = MIN_INPUT_SIZE) -> None:
    """Raise ``ValueError`` (rank, channels, size) or ``TypeError`` (dtype) saying what to change.

    ``shape`` may hold ``None`` or symbolic sizes (``jax.export``'s batch) for sizes unknown while tracing; ``dtype``
    is a dtype object or its name.
    """
    shape = tuple(_static(s) for s in shape)
    layout = "NCHW" if channels_first else "NHWC"
    form = f"(N, {in_chans}, H, W)" if channels_first else f"(N, H, W, {in_chans})"
    if len(shape) != 4:
        hint = "; add a batch axis, e.g. x[None]" if len(shape) == 3 else ""
        raise ValueError(f"expected a 4-D {layout} image batch {form}, got shape {shape}{hint}")
    c_axis, other = (1, 3) if channels_first else (3, 1)
    if shape[c_axis] is not None and shape[c_axis] != in_chans:
        if shape[other] == in_chans:
            perm = "(0, 3, 1, 2)" if channels_first else "(0, 2, 3, 1)"
            hint = f"it looks like {'NHWC' if channels_first else 'NCHW'}: transpose it with axes {perm}"
        else:
            hint = f"build the model with in_chans={shape[c_axis]} to take {shape[c_axis]}-channel images"
        raise ValueError(f"expected an {layout} image batch {form} with {in_chans} channels on axis {c_axis}, got "
                         f"shape {shape}; {hint}")
    spatial = shape[2:] if channels_first else shape[1:3]
    if any(s is not None and s < min_size for s in spatial):
        raise ValueError(f"input of {spatial[0]}x{spatial[1]} pixels is too small: the five stride-2 layers need "
                         f"height and width >= {min_size}, got shape {shape}; resize or pad the images")
    name = dtype_name(dtype)
    if name not in FLOAT_DTYPES:
        raise TypeError(f"expected a floating-point image batch ({', '.join(FLOAT_DTYPES)}), got {name}; convert "
                        f"images to float, e.g. x.astype('float32') / 255, and normalise them with the weight tag's "
                        f"mean and std")


def loss_kind(logits_shape: Sequence[int], labels_shape: Sequence[int], labels_dtype) -> str:
    """Which loss ``labels`` call for (one of ``LOSSES``), or a ``ValueError`` / ``TypeError`` saying why none."""
    logits_shape, labels_shape = tuple(logits_shape), tuple(labels_shape)
    batch, k = logits_shape[0], logits_shape[-1]
    name = dtype_name(labels_dtype)
    integer = name.startswith(("int", "uint"))
    if not integer and name not in FLOAT_DTYPES:
        raise TypeError(f"labels must be integer class indices or float targets, got dtype {name}")
    if k == 1:
        if labels_shape not in ((batch,), (batch, 1)):
            raise ValueError(f"a one-output model regresses (MSE): labels must have shape ({batch},) or "
                             f"({batch}, 1), got {labels_shape}")
        return "mse"
    if integer:
        if labels_shape != (batch,):
            raise ValueError(f"integer labels are class indices for cross-entropy and need shape ({batch},), got "
                             f"{labels_shape}")
        return "cross_entropy"
    if labels_shape != (batch, k):
        raise ValueError(f"float labels are multi-hot targets for BCE-with-logits and need shape ({batch}, {k}), "
                         f"got {labels_shape}; pass class indices as an integer array for cross-entropy")
    return "bce"
