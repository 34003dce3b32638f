"""regnet-zoo plugin: RegNet X/Y/V/Z as Flax NNX modules (and a linen form) on JAX. Registers only."""

from dataclasses import dataclass
from typing import Any

from regnet_zoo import ExportFormat, Framework, hookimpl
from regnet_zoo.plan import DESIGN_FEATURES


@dataclass(frozen=True)
class FlaxOptions:
    """The flax framework's own options (the shared ones are ``regnet_zoo.options.SharedOptions``).

    * ``api``: ``"nnx"`` (a ``flax.nnx.Module``) or ``"linen"`` (a ``(flax.linen.Module, variables)`` pair).
    * ``axis_name``: mapped axis name to average BN statistics over (pmap / shard_map), or None.
    * ``conv_impl``: grouped 3x3 conv: ``"auto"`` (measured per shape and mode), one of ``ops.CONV_IMPLS``, or
      ``{block name: impl}`` (e.g. from ``regnet_zoo_flax.grouped_conv.tune``).
    * ``seed``: int seed of the random initialisation.
    * ``zero_init_last``: zero the last BN scale of each block at random init, as timm does (never for RegNetZ
      or pre-activation blocks: ``ArchPlan.zero_init_last``).

    Shared ``dtype`` is the compute dtype (None / 'float32', 'bfloat16', 'float16'; parameters stay float32), or
    'float64' for numerical checks (needs jax_enable_x64).
    """

    api: str = "nnx"
    axis_name: Any = None
    conv_impl: Any = "auto"
    seed: int = 0
    zero_init_last: bool = True


class FlaxFramework(Framework):
    """The flax backend; each method imports JAX / Flax (through this package's modules) when first called."""

    def build(self, request):
        from .build import build

        return build(request)

    def run(self, model, x, labels=None):
        from .build import run

        return run(model, x, labels=labels)

    def load_weights(self, model, state, strict=True):
        from .weights import load_canonical

        load_canonical(model, state, strict=strict)

    def export_weights(self, model):
        from .weights import export_canonical

        return export_canonical(model)

    def native_weights(self, model):
        import numpy as np
        from flax import nnx
        from flax.traverse_util import flatten_dict

        pure = nnx.state(model, nnx.Not(nnx.RngState)).to_pure_dict()  # no dropout keys
        return {"/".join(map(str, k)): np.asarray(v) for k, v in flatten_dict(pure).items()}

    def as_tensor(self, array):
        import jax.numpy as jnp

        return jnp.asarray(array)

    def transformers_class(self, name):
        from . import transformers_classes

        return getattr(transformers_classes, name)

    def write_artefact(self, format, model, path, request):
        from .export import write_stablehlo

        return write_stablehlo(model, path, request)


@hookimpl
def register_frameworks(register):
    register(FlaxFramework(
        name="flax",
        aliases=("jax",),
        requires=("jax", "flax"),
        layout="NHWC",
        native_names="NNX state paths",
        tensor_type="jax",
        transformers_classes=("FlaxRegNetModel", "FlaxRegNetForImageClassification", "FlaxRegNetPreTrainedModel"),
        install_hint="pip install 'regnet-zoo[flax]'",
        formats=(
            ExportFormat("stablehlo", suffix=".stablehlo",
                         description="jax.export (StableHLO) with a symbolic batch; runs with JAX alone"),
        ),
        options=FlaxOptions,
        unsupported={"fast": "the flax model has no separate fast path: model.predict(x) is already one jitted "
                             "inference function"},
        limits={"global_pool": ("avg", "max", "avgmax")},
        design_features=DESIGN_FEATURES,
        description="flax.nnx.Module (api='linen' for a flax.linen.Module + variables), NHWC",
    ))
