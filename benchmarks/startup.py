"""Start-up costs, each in fresh interpreters: ``import regnet_zoo`` + list all variants, and ``regnet-zoo list``.

``import_and_list``: the time from before ``import regnet_zoo`` to after ``rz.list_variants()``, measured inside a
fresh interpreter (interpreter start-up excluded), which also reports which frameworks that import loaded (it
should load none). ``cli_list``: the wall time of the ``regnet-zoo list`` command as a user runs it (interpreter
start-up included). Both: median of N fresh processes, with the idle check over the whole batch (our children's
CPU time is ours).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from idle import Window

FRAMEWORKS = ("torch", "tensorflow", "keras", "jax", "flax", "timm", "transformers")

_IMPORT_PROBE = f"""
import sys, time, json
t0 = time.perf_counter()
import regnet_zoo as rz
names = rz.list_variants()
dt = time.perf_counter() - t0
print(json.dumps({{"s": dt, "variants": len(names),
                  "frameworks_loaded": [m for m in {FRAMEWORKS!r} if m in sys.modules]}}))
"""


def _cli_command() -> list[str]:
    exe = shutil.which("regnet-zoo")
    if exe is None:  # beside this interpreter (a venv that is not activated)
        cand = os.path.join(os.path.dirname(sys.executable), "regnet-zoo")
        exe = cand if os.path.exists(cand) else None
    return [exe, "list"] if exe else [sys.executable, "-m", "regnet_zoo", "list"]


def import_and_list(cores: list[int], repeats: int, env: dict) -> dict:
    window = Window(cores, include_children=True).start()
    times, last = [], {}
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True, env=env,
                             timeout=120)
        if out.returncode != 0:
            return {"status": "error", "error": (out.stderr.strip().splitlines() or ["failed"])[-1][:300]}
        last = json.loads(out.stdout.strip().splitlines()[-1])
        times.append(last["s"])
    window.stop()
    return {"status": "ok", "median_s": statistics.median(times), "min_s": min(times), "n": len(times),
            "variants": last["variants"], "frameworks_loaded": last["frameworks_loaded"], "idle": window.as_dict(),
            "times_s": [round(t, 4) for t in times]}


def cli_list(cores: list[int], repeats: int, env: dict) -> dict:
    cmd = _cli_command()
    window = Window(cores, include_children=True).start()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
        times.append(time.perf_counter() - t0)
        if out.returncode != 0:
            return {"status": "error", "error": (out.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    window.stop()
    return {"status": "ok", "median_s": statistics.median(times), "min_s": min(times), "n": len(times),
            "command": " ".join(os.path.basename(c) if i == 0 else c for i, c in enumerate(cmd)),
            "idle": window.as_dict(), "times_s": [round(t, 4) for t in times]}
