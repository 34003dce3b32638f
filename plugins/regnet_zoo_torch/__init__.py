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


class TorchFramework(Framework):
    """The torch backend; each method imports torch (through this package's modules) when first called."""

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
        from .weights import native_state

        return native_state(model)

    def save_native(self, model, path, metadata):
        return super().save_native(model, path, {**metadata, "format": "pt"})  # safetensors' torch convention

    def as_tensor(self, array):
        import torch

        return torch.from_numpy(array)

    def transformers_class(self, name):
        from . import transformers_classes

        return getattr(transformers_classes, name)

    def write_artefact(self, format, model, path, request):
        from . import export

        return {"onnx": export.write_onnx, "torch_export": export.write_torch_export}[format](model, path, request)


@hookimpl
def register_frameworks(register):
    register(TorchFramework(
        name="torch",
        aliases=("pt", "pytorch"),
        requires=("torch", "timm"),
        install_hint="pip install 'regnet-zoo[torch]'",
        native_names="torch state_dict names",
        native_is_canonical=True,
        tensor_type="pt",
        transformers_classes=("RegNetModel", "RegNetForImageClassification", "RegNetPreTrainedModel"),
        formats=(
            ExportFormat("onnx", suffix=".onnx",
                         requires=("onnx", "onnxruntime", "onnxscript"), install_hint=EXPORT_HINT,
                         description="ONNX (dynamo exporter), run in ONNX Runtime; external data above 2 GB"),
            ExportFormat("torch_export", suffix=".pt2",
                         description="torch.export ExportedProgram (torch.export.save / load)"),
        ),
        options=TorchOptions,
        limits={"data_format": (None, "channels_first")},
        design_features=DESIGN_FEATURES,
        description="torch.nn.Module built from timm's RegNet blocks (NCHW)",
    ))
