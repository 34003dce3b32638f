"""regnet-zoo plugin: RegNet X/Y on PyTorch + timm. Registers only; torch is imported on first build."""

from regnet_zoo import Framework, hookimpl


@hookimpl
def register_frameworks(register):
    register(Framework(
        name="torch",
        aliases=("pt", "pytorch"),
        requires=("torch", "timm"),
        builder="regnet_zoo_torch.build:build",
        runner="regnet_zoo_torch.build:run",
        loader="regnet_zoo_torch.weights:load_canonical",
        exporter="regnet_zoo_torch.weights:export_canonical",
        install_hint="pip install 'regnet-zoo[torch]'",
        description="torch.nn.Module built from timm's RegNet blocks (NCHW)",
    ))
