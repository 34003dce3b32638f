"""Export for deployment: one entry point over the formats the framework plugins declare, with checked numerics.

``export(model_or_name, path, format=...)`` validates the request (format, precision, destination, runtimes,
representative data, capacity) before anything is built or written, has the owning plugin write the artefact into a
hidden staging directory beside ``path``, runs the artefact in its runtime on a fixed set of images and compares it
with the source model, and only then moves it into place. A failed export leaves nothing behind.

The writer contract (``Framework.write_artefact(format, model, path, request) -> Artefact``): it writes ``path`` (a
file, or a directory when the format's ``suffix`` is empty; sidecar files such as ONNX external data go beside it)
and returns an ``Artefact`` whose ``run`` loads what was written and runs it on an NCHW float32 batch.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from .errors import ExportError, FrameworkNotInstalledError, PluginError
from .frameworks import ExportFormat, Framework
from .plugins import get_host

PRECISIONS = ("fp32", "fp16", "int8_dynamic", "int8")
BYTES_PER_PARAM = {"fp32": 4, "fp16": 2, "int8_dynamic": 1, "int8": 1}
VERIFY_IMAGES = 8
# create() options that only matter while training: an export is an inference graph, so they are refused.
TRAINING_OPTIONS = {"frozen_stages": -1, "norm_eval": False, "drop_rate": 0.0, "drop_path_rate": 0.0,
                    "sync_bn": None, "norm": "bn", "force": False}


@dataclass(frozen=True)
class Tolerance:
    """Acceptance limits of a verification: ``max_rel`` (max |diff| / max |reference|, per output), ``min_cosine``
    (worst per-image cosine similarity) and ``min_top1`` (top-1 agreement of classifier logits). ``None`` = not
    checked (still reported)."""

    max_rel: float | None = None
    min_cosine: float | None = None
    min_top1: float | None = None


DEFAULT_TOLERANCE = {
    "fp32": Tolerance(max_rel=1e-4),
    "fp16": Tolerance(max_rel=2e-2, min_cosine=0.999),
    "int8_dynamic": Tolerance(min_cosine=0.98),
    "int8": Tolerance(min_cosine=0.95),
}


@dataclass(frozen=True)
class ExportRequest:
    """What a format writer gets: validated by the host.

    ``batch``: the fixed batch size, or ``None`` for a dynamic (symbolic) batch dimension. ``input_size``: (H, W)
    the artefact is traced at. ``representative``: NCHW float32 calibration images (``precision="int8"`` only).
    ``opset``: the ONNX opset (``None``: the writer's default).
    """

    format: str
    precision: str
    batch: int | None
    input_size: tuple[int, int]
    representative: Any = None
    opset: int | None = None


@dataclass(frozen=True)
class Artefact:
    """A written artefact: ``run(x)`` runs it in its runtime (NCHW float32 batch in; a list of arrays out: logits
    or pooled features (N, K), or NCHW feature maps), ``output_names`` names those outputs, ``notes`` says what was
    checked or chosen (opset, runtime, op counts)."""

    run: Callable[[Any], list]
    output_names: tuple[str, ...]
    in_chans: int = 3
    notes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputCheck:
    """Verification numbers of one output against the source model."""

    name: str
    shape: tuple[int, ...]
    max_rel: float
    cosine: float
    top1: float | None = None


@dataclass
class ExportReport:
    """What ``export`` did and measured. ``str(report)`` is the printed summary."""

    path: Path
    format: str
    framework: str
    precision: str
    batch: int | None
    input_shape: tuple
    tolerance: Tolerance
    outputs: list[OutputCheck]
    files: list[Path]
    seconds: float
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(_size(f) for f in self.files)

    def failures(self) -> list[str]:
        """Each tolerance an output exceeds, as a sentence (empty when the export passed)."""
        t, out = self.tolerance, []
        for o in self.outputs:
            if t.max_rel is not None and not o.max_rel <= t.max_rel:
                out.append(f"{o.name}: max relative error {o.max_rel:.3g} > {t.max_rel:g}")
            if t.min_cosine is not None and not o.cosine >= t.min_cosine:
                out.append(f"{o.name}: cosine similarity {o.cosine:.6f} < {t.min_cosine:g}")
            if t.min_top1 is not None and o.top1 is not None and not o.top1 >= t.min_top1:
                out.append(f"{o.name}: top-1 agreement {o.top1:.3f} < {t.min_top1:g}")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures()

    def __str__(self) -> str:
        batch = "dynamic" if self.batch is None else str(self.batch)
        lines = [f"{self.path}: {self.format} ({self.precision}, batch {batch}, "
                 f"{'x'.join(map(str, self.input_shape[2:]))} input), {self.bytes / 1e6:.1f} MB, from "
                 f"{self.framework}, {self.seconds:.1f} s; verified on {VERIFY_IMAGES} fixed images"]
        lines += [f"  {k}: {v}" for k, v in self.notes.items()]
        for o in self.outputs:
            top1 = "" if o.top1 is None else f", top-1 agreement {o.top1:.3f}"
            lines.append(f"  {o.name} {'x'.join(map(str, o.shape))}: max relative error {o.max_rel:.3g}, "
                         f"cosine {o.cosine:.6f}{top1}")
        lines.append("  verified: " + ("ok" if self.passed else "FAILED: " + "; ".join(self.failures())))
        return "\n".join(lines)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


# -- formats ------------------------------------------------------------------------------------------------------
def formats() -> dict[str, tuple[Framework, ExportFormat]]:
    """Every export format the registered frameworks declare: name -> (framework, format)."""
    out: dict[str, tuple[Framework, ExportFormat]] = {}
    for fw in get_host().frameworks.values():
        for fmt in fw.formats:
            if fmt.name in out:
                other = out[fmt.name][0]
                raise PluginError(f"export format {fmt.name!r} is declared by framework {other.name!r} (plugin "
                                  f"{other.plugin!r}) and by {fw.name!r} (plugin {fw.plugin!r})")
            out[fmt.name] = (fw, fmt)
    return out


def get_format(name: str) -> tuple[Framework, ExportFormat]:
    known = formats()
    if name not in known:
        close = difflib.get_close_matches(str(name), list(known), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown export format {name!r}; {hint}known formats: {', '.join(sorted(known)) or 'none'}")
    return known[name]


def _check_installed(fw: Framework, fmt: ExportFormat) -> None:
    if fw.missing:
        raise FrameworkNotInstalledError(f"format {fmt.name!r} exports from framework {fw.name!r}, which needs "
                                         f"{', '.join(fw.missing)}; install it with: {fw.install_hint}")
    missing = [m for m in fmt.requires if importlib.util.find_spec(m) is None]
    if missing:
        hint = fmt.install_hint or f"pip install {' '.join(missing)}"
        raise FrameworkNotInstalledError(f"format {fmt.name!r} needs {', '.join(missing)}, which "
                                         f"{'is' if len(missing) == 1 else 'are'} not installed; install it with: "
                                         f"{hint}")


def check_capacity(fmt: ExportFormat, nbytes: int, what: str) -> None:
    """Refuse weights of ``nbytes`` that ``fmt`` cannot hold, saying why and what to use instead."""
    if fmt.max_bytes is not None and nbytes > fmt.max_bytes:
        raise ValueError(f"{what} has {nbytes / 1e9:.2f} GB of weights, but a {fmt.name} file holds at most "
                         f"{fmt.max_bytes / 1e9:.1f} GB (a protobuf / flatbuffer limit)"
                         + (f"; use {fmt.instead}" if fmt.instead else ""))


# -- validation ---------------------------------------------------------------------------------------------------
def _check_destination(path: Path, fmt: ExportFormat) -> None:
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"cannot write {str(path)!r}: directory {str(parent)!r} does not exist; create it "
                                f"first")
    if fmt.suffix and not path.name.endswith(fmt.suffix):
        raise ValueError(f"format {fmt.name!r} writes a {fmt.suffix} file; got path {str(path)!r} (expected "
                         f"'{path.stem}{fmt.suffix}')")
    if not fmt.suffix and path.exists():
        raise FileExistsError(f"format {fmt.name!r} writes a directory and {str(path)!r} already exists; remove it "
                              f"or choose a new path")
    if fmt.suffix and path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a directory; format {fmt.name!r} writes a {fmt.suffix} file")


def _check_precision(fmt: ExportFormat, precision: str, representative: Any) -> None:
    if precision not in PRECISIONS:
        close = difflib.get_close_matches(str(precision), PRECISIONS, n=1)
        raise ValueError(f"unknown precision {precision!r}; " + (f"did you mean {close[0]!r}? " if close else "")
                         + f"expected one of {', '.join(PRECISIONS)}")
    if precision not in fmt.precisions:
        others = sorted(n for n, (_, f) in formats().items() if precision in f.precisions)
        raise ValueError(f"format {fmt.name!r} supports precision {', '.join(fmt.precisions)}, not {precision!r}"
                         + (f"; formats with {precision}: {', '.join(others)}" if others else ""))
    if precision == "int8" and representative is None:
        raise ValueError("precision 'int8' quantizes the activations too and needs representative data "
                         "(representative_data= an image array, image files or a folder; --representative DIR on the "
                         "command line), ~100 images like the ones you will run; for weight-only int8 without data "
                         "use precision 'int8_dynamic'")
    if precision != "int8" and representative is not None:
        raise ValueError(f"representative_data is only used by precision 'int8', not {precision!r}")


def _check_batch(batch: int | None) -> None:
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch must be a positive int or None (dynamic batch), got {batch!r}")


def _check_training_options(options: Mapping[str, Any]) -> None:
    used = [f"{k}={v!r}" for k, v in options.items() if k in TRAINING_OPTIONS and v != TRAINING_OPTIONS[k]]
    if used:
        raise ValueError(f"{', '.join(used)}: training-only option{'s' if len(used) > 1 else ''}; an export is an "
                         f"inference graph (BN uses running statistics, no dropout). Export without "
                         f"{'them' if len(used) > 1 else 'it'}: the weights are the same")


def _image_size(size: Any) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (tuple, list)) else ()
    if len(pair) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 32 for s in pair):
        raise ValueError(f"input_size must be an int or (height, width) of ints >= 32, got {size!r}")
    return pair  # type: ignore[return-value]


# -- images -------------------------------------------------------------------------------------------------------
def _normalised(images, size: tuple[int, int]):
    """PIL images -> NCHW float32 batch resized to ``size`` (H, W), scaled to [0, 1], ImageNet-normalised."""
    import numpy as np
    from PIL import Image

    from .variant import IMAGENET_MEAN, IMAGENET_STD

    arrays = [np.asarray(im.convert("RGB").resize((size[1], size[0]), Image.BICUBIC), np.float32) / 255.0
              for im in images]
    batch = (np.stack(arrays) - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


def verification_images(size: tuple[int, int], in_chans: int = 3, n: int = VERIFY_IMAGES):
    """A fixed NCHW float32 batch: the bundled sample picture, flipped, cropped, rotated and posterized
    (ImageNet-normalised), so quantized artefacts are compared on natural image statistics. Other channel counts get
    a fixed random batch."""
    import numpy as np
    from PIL import Image, ImageOps

    from .preprocessing import SAMPLE_IMAGE

    if in_chans != 3:
        return np.random.default_rng(0).normal(size=(n, in_chans, *size)).astype(np.float32)
    base = Image.open(SAMPLE_IMAGE).convert("RGB")
    w, h = base.size
    views = [base, ImageOps.mirror(base), base.crop((0, 0, w * 3 // 4, h * 3 // 4)),
             base.crop((w // 4, h // 4, w, h)), ImageOps.flip(base), base.rotate(90, expand=True),
             ImageOps.grayscale(base), ImageOps.posterize(base, 3)]
    return _normalised((views * (n // len(views) + 1))[:n], size)


def load_representative(data: Any, size: tuple[int, int], in_chans: int):
    """Representative images for int8 calibration as an NCHW float32 batch: an array (NCHW or NHWC, already
    normalised), or image files / a folder of images (preprocessed with ImageNet normalisation at ``size``)."""
    import numpy as np

    if isinstance(data, (str, os.PathLike)) or (isinstance(data, (list, tuple)) and data
                                                 and isinstance(data[0], (str, os.PathLike))):
        paths = [Path(data)] if isinstance(data, (str, os.PathLike)) else [Path(p) for p in data]
        if len(paths) == 1 and paths[0].is_dir():
            folder = paths[0]
            paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp",
                                                                                 ".webp", ".gif"))
            if not paths:
                raise ValueError(f"representative_data folder {str(folder)!r} holds no images (.jpg, .png, ...)")
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"representative_data: {', '.join(missing[:3])} does not exist")
        from PIL import Image

        return _normalised([Image.open(p) for p in paths], size)
    arr = np.asarray(data, dtype=np.float32)
    if arr.ndim != 4:
        raise ValueError(f"representative_data must be a batch of images (N, C, H, W) or (N, H, W, C), a list of "
                         f"image files or a folder; got an array of shape {arr.shape}")
    if arr.shape[1] != in_chans and arr.shape[-1] == in_chans:
        arr = arr.transpose(0, 3, 1, 2)
    if arr.shape[1] != in_chans or tuple(arr.shape[2:]) != tuple(size):
        raise ValueError(f"representative_data has shape {arr.shape}; expected (N, {in_chans}, {size[0]}, {size[1]}) "
                         f"or (N, {size[0]}, {size[1]}, {in_chans}) for input_size {size}")
    return np.ascontiguousarray(arr)


# -- verification -------------------------------------------------------------------------------------------------
def compare(name: str, got: Any, want: Any) -> OutputCheck:
    """Numbers of one output: max relative error, worst per-image cosine, top-1 agreement for (N, K) logits."""
    import numpy as np

    a, b = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if a.shape != b.shape:
        raise ExportError(f"output {name!r} of the artefact has shape {a.shape}, the source model's {b.shape}")
    max_rel = float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))
    fa, fb = a.reshape(len(a), -1), b.reshape(len(b), -1)
    norms = np.linalg.norm(fa, axis=1) * np.linalg.norm(fb, axis=1)
    cosine = float(np.min(np.sum(fa * fb, axis=1) / np.maximum(norms, 1e-30)))
    top1 = float(np.mean(a.argmax(1) == b.argmax(1))) if a.ndim == 2 and a.shape[1] > 1 and name == "logits" else None
    return OutputCheck(name, tuple(a.shape), max_rel, cosine, top1)


def _in_batches(fn: Callable, x, batch: int | None) -> list:
    import numpy as np

    if batch is None:
        outs = [fn(x[:3]), fn(x[3:])]  # two batch sizes through one artefact: the batch dimension is dynamic
    else:
        if len(x) % batch:
            x = np.concatenate([x, x[: batch - len(x) % batch]])
        outs = [fn(x[i:i + batch]) for i in range(0, len(x), batch)]
    outs = [o if isinstance(o, (list, tuple)) else [o] for o in outs]
    return [np.concatenate([np.asarray(o[i]) for o in outs])[:VERIFY_IMAGES] for i in range(len(outs[0]))]


# -- staging ------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _staging(path: Path) -> Iterator[Path]:
    """A hidden directory beside ``path``; the writer writes ``<staging>/<path.name>`` (and any sidecar files)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".export", dir=path.parent))
    try:
        yield tmp / path.name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _publish(staged: Path, path: Path) -> list[Path]:
    """Move the staged artefact into place: sidecar files first, the main file (or directory) last."""
    from .weights.atomic import _publish_mode

    entries = sorted(staged.parent.iterdir(), key=lambda p: p == staged)
    for entry in entries:
        _publish_mode(entry, directory=entry.is_dir())
        os.replace(entry, path.parent / entry.name)
    return [path.parent / e.name for e in entries]


# -- entry point --------------------------------------------------------------------------------------------------
def export(
    model_or_name: Any,
    path: str | os.PathLike,
    format: str,
    *,
    pretrained: Any = False,
    num_classes: int | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] = (1, 2, 3, 4),
    input_size: int | tuple[int, int] | None = None,
    batch: int | None = None,
    precision: str = "fp32",
    representative_data: Any = None,
    tolerance: Tolerance | None = None,
    opset: int | None = None,
    **create_kwargs: Any,
) -> ExportReport:
    """Export a model (or a variant name, built here with ``create``'s arguments) to ``path`` in ``format``.

    ``batch``: fixed batch size, ``None`` = dynamic. ``input_size``: traced spatial size (default: the weight
    tag's, else 224). ``precision``: ``fp32``, ``fp16``, ``int8_dynamic`` (int8 weights) or ``int8`` (full integer;
    needs ``representative_data``: an NCHW / NHWC array, image files or a folder). The artefact is run in its
    runtime on a fixed image set and compared with the source model; above ``tolerance`` (default
    ``DEFAULT_TOLERANCE[precision]``) an ``ExportError`` carrying the report is raised and nothing is written.
    Returns the ``ExportReport``.
    """
    from . import api

    started = time.perf_counter()
    fw, fmt = get_format(format)
    path = Path(path).expanduser()
    _check_precision(fmt, precision, representative_data)
    _check_batch(batch)
    _check_destination(path, fmt)
    _check_installed(fw, fmt)
    if opset is not None and fmt.name != "onnx":
        raise ValueError(f"opset is an ONNX setting; format {fmt.name!r} does not take it")
    by_name = isinstance(model_or_name, str)
    if by_name:
        _check_training_options(create_kwargs)
        from .preprocessing import data_config

        size = _image_size(input_size if input_size is not None else data_config(model_or_name)["input_size"])
        variant = api.get_variant(model_or_name)
        in_chans = create_kwargs.get("in_chans", 3)
        if fmt.max_bytes is not None:
            weights = api.plan(model_or_name).params(0 if features_only else (num_classes or 1000), in_chans)
            check_capacity(fmt, weights * BYTES_PER_PARAM[precision], variant.name)
        model = api.create(model_or_name, fw.name, pretrained=pretrained, num_classes=num_classes,
                           features_only=features_only, out_indices=out_indices, **create_kwargs)
    else:
        given = {k: v for k, v in dict(pretrained=pretrained, num_classes=num_classes, features_only=features_only,
                                       **create_kwargs).items() if v not in (False, None)}
        if given or tuple(out_indices) != (1, 2, 3, 4):
            raise TypeError(f"{', '.join(given) or 'out_indices'}: build options apply when exporting by name; "
                            f"this model is already built")
        size = _image_size(input_size if input_size is not None else 224)
        model, in_chans = model_or_name, None
    representative = None
    if representative_data is not None:
        representative = load_representative(representative_data, size, in_chans or 3)
    request = ExportRequest(format=fmt.name, precision=precision, batch=batch, input_size=size,
                            representative=representative, opset=opset)
    with _staging(path) as staged:
        artefact = fw.write_artefact(fmt.name, model, staged, request)
        if not isinstance(artefact, Artefact):
            raise PluginError(f"write_artefact({fmt.name!r}) of plugin {fw.plugin!r} returned "
                              f"{type(artefact).__name__}; expected a regnet_zoo.deploy.Artefact")
        x = verification_images(size, artefact.in_chans)
        want = _in_batches(lambda b: fw.run(model, b), x, batch)
        got = _in_batches(artefact.run, x, batch)
        if len(got) != len(want) or len(got) != len(artefact.output_names):
            raise ExportError(f"the {fmt.name} artefact returned {len(got)} outputs, the source model {len(want)}")
        checks = [compare(n, g, w) for n, g, w in zip(artefact.output_names, got, want)]
        report = ExportReport(path=path, format=fmt.name, framework=fw.name, precision=precision, batch=batch,
                              input_shape=(batch, x.shape[1], *size), outputs=checks,
                              tolerance=tolerance or DEFAULT_TOLERANCE[precision], files=[staged], seconds=0.0,
                              notes=dict(artefact.notes))
        if not report.passed:
            report.seconds = time.perf_counter() - started
            raise ExportError(f"export not written: the {fmt.name} artefact does not match the source model "
                              f"within tolerance ({'; '.join(report.failures())}); to accept it pass "
                              f"tolerance=Tolerance(...) (command line: --max-rel, --min-cosine, --min-top1)"
                              f"\n{report}", report)
        report.files = _publish(staged, path)
    report.seconds = time.perf_counter() - started
    return report
