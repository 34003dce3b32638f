"""The output record of a RegNet forward pass, with Hugging Face's field names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class RegNetOutput:
    """``model(x, output_hidden_states=True)`` in every framework.

    ``hidden_states`` are the 5 maps (stem, s1..s4) in the model's layout; ``pooler_output`` is the global average
    pool of ``last_hidden_state`` (B, C); ``logits`` is ``None`` for a headless model; ``loss`` is set when
    ``labels`` were given.
    """

    logits: Any = None
    pooler_output: Any = None
    last_hidden_state: Any = None
    hidden_states: tuple | None = None
    loss: Any = None

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def keys(self) -> list[str]:
        return [k for k in ("loss", "logits", "pooler_output", "last_hidden_state", "hidden_states")
                if getattr(self, k) is not None]
