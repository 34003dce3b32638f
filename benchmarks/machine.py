"""Where and when the numbers were taken: CPU, cores, memory, AMX, GPU, versions, git commit. Imports no framework."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from regnet_zoo.cpu import cpu_flags  # the plugins' own reading of the CPU's flags

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("regnet-zoo", "torch", "torchvision", "timm", "transformers", "tensorflow", "keras", "tf_keras", "jax",
            "jaxlib", "flax", "numpy")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name via nvidia-smi (no framework import), else None."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = [n.strip() for n in out.stdout.splitlines() if n.strip()]
    return names[0] if out.returncode == 0 and names else None


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=20)
        return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def describe(cores: list[int], device: str) -> dict:
    flags = cpu_flags()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "cores_used": cores,
        "ram_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "amx_bf16": "amx_bf16" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "hypervisor": "hypervisor" in flags,
        "device": device,
        "gpu": gpu_name() if device == "cuda" else None,
        "os": f"{platform.system()} {platform.release()}",
        "python_executable": sys.executable,
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        # the results directory does not count: a previous run's tables are not a change to what is measured
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".",
                               ":(exclude)benchmarks/results")),
        "versions": versions(),
    }


def one_line(m: dict) -> str:
    dev = m["device"] + (f" ({m['gpu']})" if m.get("gpu") else "")
    return (f"{m['date']}, {m['cpu']}, {len(m['cores_used'])} of {m['logical_cpus']} logical CPUs, "
            f"{m['ram_gb']} GB RAM, AMX: {'yes' if m['amx_bf16'] else 'no'}, device: {dev}, "
            f"regnet-zoo {m['versions'].get('regnet-zoo', '?')} @ {m['git_commit']}"
            f"{' (uncommitted changes)' if m['git_dirty'] else ''}")
