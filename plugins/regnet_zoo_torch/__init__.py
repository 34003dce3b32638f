"""regnet-zoo plugin: RegNet X/Y on PyTorch + timm. Registers only; torch is imported on first build."""

from dataclasses import dataclass
from typing import Any

from regnet_zoo import Framework, hookimpl


@dataclass(frozen=True)
class TorchOptions:
    """The torch framework's own options (the shared ones are ``regnet_zoo.options.SharedOptions``)."""

    device: Any = None  # torch.device or str; abstract=True is device="meta" (shapes only, no storage)


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
        options=TorchOptions,
        limits={"data_format": (None, "channels_first")},
        description="torch.nn.Module built from timm's RegNet blocks (NCHW)",
    ))
