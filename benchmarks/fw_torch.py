"""PyTorch contenders: regnet-zoo torch (default, channels_last, fast, bf16), timm (NCHW, channels_last), HF
RegNet (PyTorch), and the roofline's dense conv.

Each builder returns a ``Prepared``: a ``step()`` that runs one fully synchronised inference call (under
``torch.inference_mode``) or training step (forward, cross-entropy, backward, one plain SGD update), on an input
made once, in the layout the model takes natively. All contenders build a 1000-class classifier with random
weights (nothing is downloaded); regnet-zoo's load ``prepared.trained_like_weights``, as its fast paths fold the values
into constants. regnet-zoo's own training rows follow the
README's CPU recipe (``regnet_zoo.cpu.keep_freed_memory()``, noted in the row); its fast path does that itself.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from contenders import INFER, REFERENCE_CONV, Unavailable
from prepared import LEARNING_RATE, Prepared, hf_config, rz_create, seeded_input, seeded_labels


def prepare(threads: int, device: str, contender: str) -> dict:
    torch.set_num_threads(threads)
    if device == "cuda" and not torch.cuda.is_available():
        raise Unavailable("torch sees no CUDA device")
    import timm

    return {"torch": torch.__version__, "timm": timm.__version__}


# -- how each contender's model is made (small, named functions: adjust here when a plugin's API changes) --------

def make_rz_torch(model: str, device: str):
    return rz_create(model, "torch", device=device)


def make_rz_torch_fast(model: str, device: str):
    """The torch plugin's one-argument inference fast path (``fast=True``: BN folded, channels_last, compile)."""
    return rz_create(model, "torch", device=device, fast=True)


def make_rz_torch_bf16(model: str, device: str):
    import warnings

    with warnings.catch_warnings():  # the "no AMX" warning: the table says it (target n/a)
        warnings.simplefilter("ignore")
        return rz_create(model, "torch", device=device, fast="bf16")


def make_timm(model: str, device: str):
    import timm

    return timm.create_model(model, pretrained=False, num_classes=1000).to(device)


def make_hf_pt(model: str, device: str):
    from transformers import RegNetForImageClassification

    return RegNetForImageClassification(hf_config(model)).to(device)


MAKERS = {
    "rz-torch": make_rz_torch, "rz-torch-cl": make_rz_torch, "rz-torch-compile": make_rz_torch,
    "rz-torch-fast": make_rz_torch_fast, "rz-torch-bf16": make_rz_torch_bf16,
    "timm": make_timm, "timm-cl": make_timm, "hf-pt": make_hf_pt,
}
CHANNELS_LAST = {"timm-cl", "rz-torch-cl", "rz-torch-compile"}
HF = {"hf-pt"}
RZ_TRAINING = {"rz-torch", "rz-torch-cl", "rz-torch-compile"}  # their training rows follow the README's CPU recipe
COMPILED_STEP = {"rz-torch-compile"}  # the whole training step under torch.compile (its first call compiles)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def build_onnxruntime(case, device: str) -> Prepared:
    """Export a classifier (``rz_create``'s weights) with ``rz.export`` (verified against torch), time ONNX Runtime
    on it."""
    import tempfile

    import onnxruntime as ort

    import regnet_zoo as rz

    if device != "cpu":
        raise Unavailable("the ONNX Runtime contender runs the CPU execution provider only")
    t0 = time.perf_counter()
    folder = tempfile.mkdtemp(prefix="rz-onnx-")
    model = rz_create(case.model, "torch")
    report = rz.export(model, f"{folder}/{case.model}.onnx", "onnx", input_size=case.size, batch=case.batch)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(report.path), options, providers=["CPUExecutionProvider"])
    create_s = time.perf_counter() - t0
    x = seeded_input(case.batch, case.size)
    step = lambda: session.run(None, {"images": x})  # noqa: E731
    return Prepared(step=step, create_s=create_s, params=sum(p.numel() for p in model.parameters()),
                    notes=[f"export max rel err {report.outputs[0].max_rel:.1e}"])


def build_reference(contender: str, device: str) -> Prepared:
    """The roofline's dense 3x3 conv, channels_last (oneDNN's fastest layout), fp32 or bf16."""
    c = REFERENCE_CONV
    dtype = torch.bfloat16 if contender.endswith("-bf16") else torch.float32
    conv = torch.nn.Conv2d(c["channels"], c["channels"], 3, padding=1, bias=False)
    conv = conv.to(device=device, dtype=dtype, memory_format=torch.channels_last).eval()
    x = torch.randn(c["batch"], c["channels"], c["size"], c["size"]).to(device=device, dtype=dtype)
    x = x.contiguous(memory_format=torch.channels_last)

    def step():
        with torch.inference_mode():
            out = conv(x)
        _sync(device)
        return out

    return Prepared(step=step, create_s=0.0, params=conv.weight.numel())


def build(contender: str, case, device: str) -> Prepared:
    if contender.startswith("conv-"):
        return build_reference(contender, device)
    if contender == "rz-onnxruntime":
        return build_onnxruntime(case, device)
    if contender == "hf-pt":  # import outside the timed creation, like torch and timm are
        import transformers  # noqa: F401
    t0 = time.perf_counter()
    model = MAKERS[contender](case.model, device)
    _sync(device)
    create_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())

    x = torch.from_numpy(seeded_input(case.batch, case.size)).to(device)
    if contender in CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    forward = (lambda t: model(pixel_values=t).logits) if contender in HF else model
    notes = []

    if case.mode == INFER:
        model.eval()

        def step():
            with torch.inference_mode():
                out = forward(x)
            _sync(device)
            return out
    else:
        if contender in RZ_TRAINING and device == "cpu":  # the documented CPU training recipe (README)
            from regnet_zoo import cpu

            if cpu.keep_freed_memory():
                notes.append("keep_freed_memory")
        y = torch.from_numpy(seeded_labels(case.batch)).to(device)
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)

        def train_step():
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(forward(x), y)
            loss.backward()
            optimizer.step()
            return loss

        if contender in COMPILED_STEP:
            train_step = torch.compile(train_step)

        def step():
            loss = train_step()
            _sync(device)
            return loss

    return Prepared(step=step, create_s=create_s, params=params, notes=notes)


def abstract_build(contender: str, model: str) -> dict:
    """Build ``model`` with shapes only (meta device): no weight memory is allocated. Times the build alone."""
    import regnet_zoo as rz

    if contender == "rz-torch":
        import regnet_zoo_torch.build  # noqa: F401  (the plugin's import is not part of the build time)

        make = lambda: rz.create(model, framework="torch", device="meta")  # noqa: E731
    elif contender == "hf-pt":
        from transformers import RegNetForImageClassification

        cfg = hf_config(model)

        def make():
            with torch.device("meta"):
                return RegNetForImageClassification(cfg)
    else:
        raise Unavailable(f"no abstract build for {contender}")
    t0 = time.perf_counter()
    m = make()
    build_s = time.perf_counter() - t0
    return {"build_s": build_s, "params": sum(p.numel() for p in m.parameters()),
            "where": str(next(m.parameters()).device)}
