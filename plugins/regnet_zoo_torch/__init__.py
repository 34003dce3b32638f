"""regnet-zoo plugin: RegNet X/Y on PyTorch + timm. Registers only; torch is imported on first build."""

from regnet_zoo import ExportFormat, Framework, hookimpl

EXPORT_HINT = "pip install 'regnet-zoo[export]'"


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
        description="torch.nn.Module built from timm's RegNet blocks (NCHW)",
    ))
