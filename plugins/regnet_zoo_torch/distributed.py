"""Multi-device training helpers: FSDP2 block-by-block sharding of a regnet-zoo model.

DDP needs nothing special (``torch.nn.parallel.DistributedDataParallel(model)``); ``norm="sync_bn"`` gives
synchronised BatchNorm (GPU only in PyTorch). For trunks too large for one device (``regnety_10b``), build on the meta
device, shard with ``shard_blocks`` and then materialise: every residual block is its own FSDP unit, so only one
block's parameters are gathered at a time.
"""

from __future__ import annotations

import torch.nn as nn


def shard_blocks(model: nn.Module, **fully_shard_kwargs) -> nn.Module:
    """Apply FSDP2 ``fully_shard`` to every block ``s{i}.b{j}``, then to the model (stem and head go with the root).

    ``fully_shard_kwargs`` (``mesh``, ``reshard_after_forward``, ``mp_policy``, ...) are passed to each call. Returns
    ``model``, now an ``FSDPModule``.
    """
    from torch.distributed.fsdp import fully_shard

    stages = getattr(model, "stages", None)
    if stages is None:
        raise TypeError(f"shard_blocks needs a regnet-zoo torch model (rz.create(..., framework='torch')), got "
                        f"{type(model).__name__}")
    for stage in stages():
        for block in stage.children():
            fully_shard(block, **fully_shard_kwargs)
    fully_shard(model, **fully_shard_kwargs)
    return model


__all__ = ["shard_blocks"]
