"""The ``stablehlo`` export writer of the flax plugin (the ``writer`` contract is in ``regnet_zoo.deploy``).

``jax.export`` of the model's inference function (running BN statistics) with the weights baked in as constants,
input ``images`` in the model's layout (NHWC, or NCHW for ``data_format="channels_first"``) with a symbolic batch
dimension ``batch`` (or the fixed ``request.batch``), serialized to one file. Serving needs only JAX::

    exported = jax.export.deserialize(bytearray(open("model.stablehlo", "rb").read()))
    logits = exported.call(images)          # a list of maps for a features_only model

The file holds StableHLO plus JAX's calling convention; it is versioned by ``jax.export`` (see its compatibility
guarantees), not by regnet-zoo.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from regnet_zoo.deploy import Artefact, ExportRequest

from .build import LinenModel
from .config import NetConfig
from .nnx_model import RegNet


def _inference(model):
    """(config, f(x)) for an NNX model or a linen pair; training-only configurations are refused."""
    if isinstance(model, LinenModel):
        config: NetConfig = model.config
        variables = model.variables
        fn = lambda x: model.module.apply(variables, x, train=False)  # noqa: E731
    elif isinstance(model, RegNet):
        config = model.config
        fn = model.inference_fn()
    else:
        raise TypeError(f"format 'stablehlo' exports a Flax model (rz.create(name, 'flax')); got "
                        f"{type(model).__name__}")
    used = [f"{k}={v!r}" for k, v, off in (("frozen_stages", config.frozen_stages, -1),
                                          ("norm_eval", config.norm_eval, False)) if v != off]
    if used:
        raise ValueError(f"{', '.join(used)}: training-only option{'s' if len(used) > 1 else ''}; an export is an "
                         f"inference graph. Export a model built without {'them' if len(used) > 1 else 'it'}: the "
                         f"weights are the same")
    return config, fn


def output_names(config: NetConfig) -> tuple[str, ...]:
    if config.features_only:
        return tuple(f.level for f in config.feature_info)
    return ("logits",) if config.num_classes else ("pooler_output",)


def write_stablehlo(model, path: Path, request: ExportRequest) -> Artefact:
    """The ``stablehlo`` writer."""
    config, fn = _inference(model)
    h, w = request.input_size
    c = config.in_chans
    batch = request.batch if request.batch else jax.export.symbolic_shape("batch")[0]
    shape = (batch, c, h, w) if config.channels_first else (batch, h, w, c)
    exported = jax.export.export(jax.jit(fn))(jax.ShapeDtypeStruct(shape, jnp.float32))
    path.write_bytes(exported.serialize())
    loaded = jax.export.deserialize(bytearray(path.read_bytes()))

    def run(x):
        x = np.asarray(x, np.float32)
        out = loaded.call(x if config.channels_first else x.transpose(0, 2, 3, 1))
        out = [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]
        return out if config.channels_first else [o.transpose(0, 3, 1, 2) if o.ndim == 4 else o for o in out]

    layout = "NCHW" if config.channels_first else "NHWC"
    return Artefact(run=run, output_names=output_names(config), in_chans=c,
                    notes={"runtime": f"jax {jax.__version__} (jax.export.deserialize(...).call)",
                           "input": f"images {layout} {'x'.join(map(str, shape))}",
                           "platforms": ", ".join(exported.platforms)})
