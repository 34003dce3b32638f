"""transformers' RegNet output classes (same names, fields and order), framework-free.

Like transformers' ``ModelOutput``: attribute access, ``out["logits"]``, ``out[0]`` and ``to_tuple()`` over the
fields that are not ``None``, in declaration order (what ``return_dict=False`` returns), and ``keys()``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


class ModelOutput:
    """Base of the output dataclasses: a read-only ordered mapping of its non-``None`` fields."""

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def values(self) -> list[Any]:
        return [getattr(self, k) for k in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def to_tuple(self) -> tuple:
        return tuple(self.values())

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(f"{key!r} is not set in this {type(self).__name__} (set: {', '.join(self.keys())})")
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


@dataclass
class BaseModelOutputWithPoolingAndNoAttention(ModelOutput):
    """``RegNetModel``: ``last_hidden_state`` (B, C, h, w), ``pooler_output`` (B, C, 1, 1), ``hidden_states``
    (stem, s1..s4), all NCHW."""

    last_hidden_state: Any = None
    pooler_output: Any = None
    hidden_states: tuple | None = None


@dataclass
class ImageClassifierOutputWithNoAttention(ModelOutput):
    """``RegNetForImageClassification``: ``loss`` (with ``labels``), ``logits`` (B, num_labels), ``hidden_states``."""

    loss: Any = None
    logits: Any = None
    hidden_states: tuple | None = None


@dataclass
class TFBaseModelOutputWithPoolingAndNoAttention(BaseModelOutputWithPoolingAndNoAttention):
    """``TFRegNetModel`` (same fields and NCHW shapes as the PyTorch class)."""


@dataclass
class TFSequenceClassifierOutput(ModelOutput):
    """``TFRegNetForImageClassification``: ``loss`` is per example (B,), as transformers' TF losses are."""

    loss: Any = None
    logits: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class FlaxBaseModelOutputWithPoolingAndNoAttention(BaseModelOutputWithPoolingAndNoAttention):
    """``FlaxRegNetModel`` (NCHW, like transformers' Flax class returns them)."""


@dataclass
class FlaxImageClassifierOutputWithNoAttention(ModelOutput):
    """``FlaxRegNetForImageClassification``; ``loss`` (ours: transformers' Flax class takes no ``labels``) comes
    first and is ``None`` without labels, so tuples are transformers' ``(logits, hidden_states)``."""

    loss: Any = None
    logits: Any = None
    hidden_states: tuple | None = None
