"""Peak extra resident memory of loading a regnety_1280-sized checkpoint (~2.6 GB float32) into a built model.

Target (issue 7): loading into a torch or flax model peaks at no more than 1.3x the file size of extra RSS.

Method: the parent writes one random ``model.safetensors`` in canonical names (streamed, never held in memory) and
runs each case in a fresh process. A child imports its framework, builds the model with random weights, then
resets the kernel's peak-RSS counter (``/proc/self/clear_refs`` <- 5, which resets ``VmHWM``) and reads the RSS it
starts from. It then loads the file the way ``create(..., pretrained=path)`` does (the built-in
``resolve_weights`` plugin: memory-mapped safetensors -> canonical numpy views -> the framework's ``loader`` hook)
and reads ``VmHWM``. ``extra = VmHWM - RSS before loading``; ``ratio = extra / file size``. A sampling thread
splits the peak into anonymous memory and mapped file pages (page cache counted in RSS because it is mapped).
A second torch case loads a zip ``pytorch_model.bin`` (the host's numpy reader, memory-mapped copy-on-write).

    python benchmarks/load_memory.py                 # regnety_1280, torch + flax (+ tf if installed)
    python benchmarks/load_memory.py --quick --json  # regnety_160 (~0.33 GB); last stdout line is JSON rows
    python benchmarks/load_memory.py --frameworks torch --variant regnety_320

Needs Linux (``/proc``) and free disk for the file (kept in --dir between runs when given).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TARGET_RATIO = 1.3
HERE = Path(__file__).resolve().parent


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0]) * 1024
    return out


class Sampler(threading.Thread):
    """Peak of anonymous and file-backed RSS, sampled every few milliseconds (VmHWM gives the exact total)."""

    def __init__(self, period: float = 0.005):
        super().__init__(daemon=True)
        self.period, self.stop, self.peak = period, threading.Event(), {"RssAnon": 0, "RssFile": 0}

    def run(self) -> None:
        while not self.stop.is_set():
            s = _status()
            for k in self.peak:
                self.peak[k] = max(self.peak[k], s.get(k, 0))
            time.sleep(self.period)


def write_checkpoint(variant: str, path: Path, fmt: str) -> int:
    """Random canonical weights of ``variant`` (head included), written one tensor at a time."""
    import numpy as np

    import regnet_zoo as rz
    from regnet_zoo.keys import canonical_shapes

    shapes = canonical_shapes(rz.plan(variant), 1000)
    rng = np.random.default_rng(0)

    class Lazy:  # generated when the writer asks for it, so the parent never holds the whole checkpoint
        def __init__(self, shape):
            self.shape = shape

        def __array__(self, dtype=None, copy=None):
            if len(self.shape) == 1:
                return (rng.random(self.shape, np.float32) + 0.5)
            return rng.standard_normal(self.shape, np.float32) * 0.01

    if fmt == "safetensors":
        from regnet_zoo.weights import safetensors_io

        safetensors_io.save({k: Lazy(s) for k, s in shapes.items()}, path, {"format": "pt"})
    else:
        import torch
        from regnet_zoo.weights import safetensors_io

        st = safetensors_io.load(path.with_name("model.safetensors"))
        torch.save({k: torch.from_numpy(v) for k, v in st.items()}, path)
    return path.stat().st_size


def child(framework: str, variant: str, path: str) -> dict:
    """Build, then load ``path`` like create(pretrained=path) does, measuring the extra peak RSS."""
    import gc

    import regnet_zoo as rz
    from regnet_zoo.plugins import get_host
    from regnet_zoo.weights.source import from_path

    fw = get_host().framework(framework)
    t0 = time.perf_counter()
    model = rz.create(variant, framework, num_classes=1000)
    build_s = time.perf_counter() - t0
    loader = fw.load_weights
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
        f.write("5")
    before = _status()
    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    source = from_path(rz.get_variant(variant), Path(path))
    loader(model, source.state, strict=True)
    load_s = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    after = _status()
    del source
    gc.collect()
    released = _status()
    size = os.path.getsize(path)
    extra = after["VmHWM"] - before["VmRSS"]
    return {
        "name": f"load {Path(path).name} into {framework} {variant}", "framework": framework, "variant": variant,
        "file": Path(path).name, "weights_mb": round(size / 2**20, 1),
        "rss_before_mb": round(before["VmRSS"] / 2**20, 1),
        "peak_rss_mb": round(after["VmHWM"] / 2**20, 1), "extra_peak_mb": round(extra / 2**20, 1),
        "ratio": round(extra / size, 3), "target_ratio": TARGET_RATIO, "verdict": "PASS" if extra / size <= TARGET_RATIO
        else "FAIL", "peak_anon_extra_mb": round((sampler.peak["RssAnon"] - before["RssAnon"]) / 2**20, 1),
        "peak_file_extra_mb": round((sampler.peak["RssFile"] - before["RssFile"]) / 2**20, 1),
        "rss_after_release_mb": round(released["VmRSS"] / 2**20, 1), "build_s": round(build_s, 2),
        "seconds": round(load_s, 2), "status": "ok",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="regnety_160 (~0.33 GB) instead of regnety_1280")
    parser.add_argument("--variant", help="variant whose size to use (default regnety_1280, quick regnety_160)")
    parser.add_argument("--frameworks", default="torch,flax,tf", help="comma-separated (skipped if not installed)")
    parser.add_argument("--dir", help="where to write (and keep) the checkpoint; default: a temporary directory")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON on the last line")
    parser.add_argument("--child", nargs=3, metavar=("FRAMEWORK", "VARIANT", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0

    import importlib.util

    variant = args.variant or ("regnety_160" if args.quick else "regnety_1280")
    requires = {"torch": ("torch", "timm"), "tf": ("tensorflow", "keras"), "flax": ("jax", "flax")}
    frameworks = [f for f in args.frameworks.split(",") if f in requires and
                  all(importlib.util.find_spec(m) for m in requires[f])]
    tmp = None if args.dir else tempfile.TemporaryDirectory(prefix="rz-load-memory-")
    root = Path(args.dir or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        cases = []
        st = root / f"{variant}.safetensors"
        if not st.exists():
            print(f"writing {st} ...", file=sys.stderr)
            write_checkpoint(variant, st, "safetensors")
        cases += [(f, st) for f in frameworks]
        if "torch" in frameworks:
            bin_path = root / f"{variant}.bin"
            if not bin_path.exists():
                os.replace(st, root / "model.safetensors")
                try:
                    write_checkpoint(variant, bin_path, "bin")
                finally:
                    os.replace(root / "model.safetensors", st)
            cases.append(("torch", bin_path))
        for framework, path in cases:
            print(f"{framework} <- {path.name} ...", file=sys.stderr)
            proc = subprocess.run([sys.executable, __file__, "--child", framework, variant, str(path)],
                                  capture_output=True, text=True, cwd=HERE.parent)
            try:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            except (IndexError, json.JSONDecodeError):
                rows.append({"name": f"load {path.name} into {framework} {variant}", "status": "error",
                             "error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:500]})
    finally:
        if tmp is not None:
            tmp.cleanup()
    for r in rows:
        if r.get("status") == "ok":
            print(f"{r['name']}: file {r['weights_mb']:.0f} MB, extra peak RSS {r['extra_peak_mb']:.0f} MB = "
                  f"{r['ratio']:.2f}x (target <= {TARGET_RATIO}x: {r['verdict']}; anon +{r['peak_anon_extra_mb']:.0f} "
                  f"MB, mapped file +{r['peak_file_extra_mb']:.0f} MB), {r['seconds']:.1f} s", file=sys.stderr)
        else:
            print(f"{r['name']}: ERROR {r.get('error')}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows))
    return 0 if all(r.get("status") == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
