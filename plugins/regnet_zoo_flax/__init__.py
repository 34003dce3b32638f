"""regnet-zoo plugin: RegNet X/Y as Flax NNX modules (and a linen form) on JAX. Registers only."""

from regnet_zoo import ExportFormat, Framework, hookimpl


@hookimpl
def register_frameworks(register):
    register(Framework(
        name="flax",
        aliases=("jax",),
        requires=("jax", "flax"),
        builder="regnet_zoo_flax.build:build",
        runner="regnet_zoo_flax.build:run",
        loader="regnet_zoo_flax.weights:load_canonical",
        exporter="regnet_zoo_flax.weights:export_canonical",
        layout="NHWC",
        install_hint="pip install 'regnet-zoo[flax]'",
        formats=(
            ExportFormat("stablehlo", "regnet_zoo_flax.export:write_stablehlo", suffix=".stablehlo",
                         description="jax.export (StableHLO) with a symbolic batch; runs with JAX alone"),
        ),
        description="flax.nnx.Module (api='linen' for a flax.linen.Module + variables), NHWC",
    ))
