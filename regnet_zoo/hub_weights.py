"""Built-in plugin: resolve ``create(..., pretrained=...)`` through the Hugging Face Hub or a local checkpoint.

A weight tag is fetched with ``huggingface_hub`` (cache and ``HF_HUB_OFFLINE`` honoured) and read in the tag's key
space; a path (file, sharded index or model directory) is read with its key space detected. Either way the result
is canonical numpy weights, memory-mapped where the format allows, checked against the variant. Registered
``trylast`` so that a third-party ``resolve_weights`` plugin can answer first.
"""

from __future__ import annotations

from .hookspecs import hookimpl


@hookimpl(trylast=True)
def resolve_weights(variant, weight, pretrained):
    from .weights.source import weight_source

    return weight_source(variant, weight, pretrained)
