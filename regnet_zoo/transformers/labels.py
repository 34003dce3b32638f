"""transformers' classification loss rules, as decisions on shapes and dtypes (the arithmetic is per framework).

``problem_type`` (``config.problem_type``, inferred when ``None`` as transformers does):
``num_labels == 1`` -> ``regression`` (MSE); integer labels (int32 / int64) -> ``single_label_classification``
(cross-entropy over class indices); anything else -> ``multi_label_classification`` (BCE with logits on multi-hot
targets). A ``labels`` shape that does not fit the problem type is an error saying what was expected.
"""

from __future__ import annotations

from typing import Sequence

from .configuration import PROBLEM_TYPES

INTEGER_DTYPES = ("int32", "int64")


def problem_type(config, dtype_name: str) -> str:
    """The problem type of ``config`` for labels of dtype ``dtype_name`` (e.g. ``"int64"``)."""
    if config.problem_type is not None:
        return config.problem_type
    if config.num_labels == 1:
        return "regression"
    return "single_label_classification" if dtype_name in INTEGER_DTYPES else "multi_label_classification"


def check_labels(problem: str, labels_shape: Sequence[int], logits_shape: Sequence[int], dtype_name: str) -> None:
    """Raise ``ValueError`` when labels of this shape / dtype cannot be used with ``problem``."""
    labels_shape, logits_shape = tuple(labels_shape), tuple(logits_shape)
    batch, num_labels = logits_shape
    size = 1
    for d in labels_shape:
        size *= d
    if problem not in PROBLEM_TYPES:
        raise ValueError(f"problem_type must be one of {', '.join(PROBLEM_TYPES)}, got {problem!r}")
    if problem == "single_label_classification":
        if not dtype_name.startswith(("int", "uint")):
            raise ValueError(f"single_label_classification needs integer class indices, got {dtype_name} labels")
        if size != batch or len(labels_shape) > 2:
            raise ValueError(f"single_label_classification needs one class index per image: labels of shape "
                             f"({batch},), got {labels_shape} for logits {logits_shape}")
    elif problem == "multi_label_classification" or num_labels > 1:
        if labels_shape != logits_shape:
            raise ValueError(f"{problem} needs labels of the logits' shape {logits_shape} (one target per class), "
                             f"got {labels_shape}" + ("; pass integer class indices (int64) for single-label "
                                                      "classification" if size == batch else ""))
    elif size != batch:
        raise ValueError(f"regression with num_labels=1 needs one target per image: labels of shape ({batch},) or "
                         f"({batch}, 1), got {labels_shape}")
