"""Is the machine idle enough to trust a timing? CPU accounting over a window, and waiting for quiet.

A window's "others share" is the CPU time spent on the benchmark's cores by anything but the measured process
(and its waited-for children), as a fraction of what those cores could deliver in that window:

    others = (busy jiffies of the pinned cores in /proc/stat, steal included) - (own user + system time, os.times)
    share  = others / (wall seconds * number of pinned cores)

Both counters tick at USER_HZ (10 ms), so a window should last at least about a second for a 10 % threshold to be
meaningful (the worker makes its timed window at least that long). Steal time counts as "others": on a VM it is
the neighbours taking our cores. Linux only (/proc/stat, sched_getaffinity); no third-party dependency.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

DEFAULT_THRESHOLD = 0.10  # more than this share of the pinned cores used by others = a noisy window


def pinned_cores() -> list[int]:
    """The cores this process may run on (its affinity), sorted."""
    return sorted(os.sched_getaffinity(0))


_TICK = os.sysconf("SC_CLK_TCK")


def _busy_seconds(cores: list[int]) -> float:
    """Busy seconds of ``cores`` since boot: user nice system irq softirq steal (guest is inside user)."""
    wanted = {f"cpu{c}" for c in cores}
    busy = 0
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            name, *fields = line.split()
            if name in wanted:
                v = [int(x) for x in fields] + [0] * 8
                busy += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    return busy / _TICK


def _own_seconds(include_children: bool) -> float:
    t = os.times()
    return t.user + t.system + ((t.children_user + t.children_system) if include_children else 0.0)


@dataclass
class Window:
    """CPU accounting over one timed window; ``stop()`` fills in the result."""

    cores: list[int]
    include_children: bool = False
    wall: float = 0.0
    own_cpu: float = 0.0
    others_cpu: float = 0.0

    def start(self) -> "Window":
        self._t0 = time.perf_counter()
        self._busy0 = _busy_seconds(self.cores)
        self._own0 = _own_seconds(self.include_children)
        return self

    def stop(self) -> "Window":
        self.wall = time.perf_counter() - self._t0
        busy = _busy_seconds(self.cores) - self._busy0
        self.own_cpu = _own_seconds(self.include_children) - self._own0
        self.others_cpu = max(0.0, busy - self.own_cpu)
        return self

    @property
    def others_share(self) -> float:
        """Fraction of the pinned cores' capacity used by other processes during the window."""
        cap = self.wall * len(self.cores)
        return min(1.0, self.others_cpu / cap) if cap > 0 else 0.0  # > 1 only by tick rounding

    @property
    def own_share(self) -> float:
        cap = self.wall * len(self.cores)
        return self.own_cpu / cap if cap > 0 else 0.0

    def as_dict(self) -> dict:
        return {"wall_s": round(self.wall, 4), "own_cpu_s": round(self.own_cpu, 3),
                "others_cpu_s": round(self.others_cpu, 3), "others_share": round(self.others_share, 4),
                "own_share": round(self.own_share, 4), "cores": self.cores}


def others_share_now(cores: list[int], seconds: float = 0.5) -> float:
    """Sample the others' share over ``seconds`` while this process sleeps."""
    w = Window(cores).start()
    time.sleep(seconds)
    return w.stop().others_share


def wait_for_quiet(cores: list[int], threshold: float, max_wait: float, sample: float = 0.3) -> tuple[bool, float]:
    """Sleep until a ``sample``-second window has others' share <= ``threshold``, at most ``max_wait`` seconds.

    Returns (quiet?, the last share seen)."""
    deadline = time.monotonic() + max_wait
    while True:
        share = others_share_now(cores, sample)
        if share <= threshold or time.monotonic() >= deadline:
            return share <= threshold, share
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _summary(r: dict) -> dict:
    out = {"others_share": r["idle"]["others_share"], "pre_share": r.get("pre_share")}
    for k in ("median_ms", "median_s"):
        if k in r:
            out[k] = round(r[k], 4)
    return out


class Patience:
    """A run-wide budget of seconds spent waiting for quiet and re-measuring noisy rows, so that a run on a busy
    machine still ends in bounded time (its rows are then flagged ``noisy`` instead of retried)."""

    def __init__(self, seconds: float):
        self.left = seconds
        self.exhausted = False

    def spend(self, seconds: float) -> None:
        self.left -= seconds
        if self.left <= 0:
            self.exhausted = True


def quietest(run_once, st, cores, threshold: float, patience: Patience, on_attempt=lambda i, r: None) -> dict:
    """Run a measurement (after waiting for quiet) until its window is quiet or the retries are used up.

    Keeps the attempt whose window was quietest (never the fastest), flags it ``noisy`` when even that one saw
    others above ``threshold``, and lists every attempt under ``attempts``. A failed attempt stops the retries."""
    results = []
    for i in range(1 + st.retries):
        if i > 0 and patience.exhausted:
            break
        t0 = time.perf_counter()
        quiet, pre = wait_for_quiet(cores, threshold, min(st.quiet_wait, max(0.0, patience.left)))
        if not quiet or i > 0:
            patience.spend(time.perf_counter() - t0)
        t1 = time.perf_counter()
        res = run_once()
        if i > 0:
            patience.spend(time.perf_counter() - t1)
        if res.get("status") != "ok":
            if not results:
                return res
            break
        res["pre_share"] = round(pre, 4)
        results.append(res)
        on_attempt(i, res)
        if res["idle"]["others_share"] <= threshold and not res["idle"].get("gpu_other_pids"):
            break
    best = dict(min(results, key=lambda r: r["idle"]["others_share"]))
    best["noisy"] = best["idle"]["others_share"] > threshold or bool(best["idle"].get("gpu_other_pids"))
    best["attempts"] = [_summary(r) for r in results]
    return best


def gpu_other_processes() -> list[int] | None:
    """PIDs of other processes with a compute context on an NVIDIA GPU (``nvidia-smi``), or None when that cannot
    be asked. Inside a container the GPU's other users may be invisible: this check can miss them."""
    import shutil
    import subprocess

    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-compute-apps=pid", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    pids = [int(p) for p in out.stdout.split() if p.strip().isdigit()]
    return [p for p in pids if p != os.getpid()]
