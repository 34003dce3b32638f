"""regnet-zoo plugin: RegNet X/Y on PyTorch + timm. Registers only; torch is imported on first build."""

from dataclasses import dataclass
from typing import Any

from regnet_zoo import ExportFormat, Framework, hookimpl
from regnet_zoo.plan import DESIGN_FEATURES

EXPORT_HINT = "pip install 'regnet-zoo[export]'"


@dataclass(frozen=True)
class TorchOptions:
    """The torch framework's own options (the shared ones are ``regnet_zoo.options.SharedOptions``)."""

    device: Any = None  # torch.device or str; abstract=True is device="meta" (shapes only, no storage)
    feature_cls: Any = None  # features_only form (timm): None / "list" / "getter": RegNetFeatures; "fx": timm's
    # FeatureGraphNet (torchvision FX extraction of the backbone, state_dict names prefixed "graph_module.")


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
        formats=(
            ExportFormat("onnx", "regnet_zoo_torch.export:write_onnx", suffix=".onnx",
                         requires=("onnx", "onnxruntime", "onnxscript"), install_hint=EXPORT_HINT,
                         description="ONNX (dynamo exporter), run in ONNX Runtime; external data above 2 GB"),
            ExportFormat("torch_export", "regnet_zoo_torch.export:write_torch_export", suffix=".pt2",
                         description="torch.export ExportedProgram (torch.export.save / load)"),
        ),
        options=TorchOptions,
        limits={"data_format": (None, "channels_first")},
        design_features=DESIGN_FEATURES,
        description="torch.nn.Module built from timm's RegNet blocks (NCHW)",
    ))
