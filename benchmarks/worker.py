"""One row, in its own process: ``python benchmarks/worker.py '<json spec>'``; prints ``RESULT <json>`` last.

Kinds of spec:

* ``{"kind": "speed", "contender", "model", "batch", "mode", "size", "device", "threads", "cores", "settings"}``:
  build the contender, call it once (compile / trace; ``first_call_s``), warm up, then time calls until both
  ``repeats`` calls and ``min_window`` seconds are done (at most ``max_iters`` calls; a slow row stops after
  ``MIN_SLOW_REPEATS`` calls once ``max_window`` seconds have passed), while ``idle.Window`` accounts the CPU others
  used on our cores during exactly that window.
* ``{"kind": "abstract", "contender", "model", ...}``: build ``model`` with shapes only; time and peak RSS.

The parent (``run.py``) sets the thread environment variables before this process starts; here the affinity is
pinned first, before any framework creates its thread pools.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import threading
import time
import traceback

T_START = time.perf_counter()
# A contender whose library is missing is "unavailable", not an error (a plugin bug is still an error).
OPTIONAL_LIBRARIES = {"torch", "timm", "transformers", "tf_keras", "tensorflow", "keras", "jax", "jaxlib", "flax"}


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _fw(family: str):
    import importlib

    return importlib.import_module(f"fw_{family}")


def _percentile(sorted_values: list[float], q: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def run_speed(spec: dict) -> dict:
    from cases import MIN_SLOW_REPEATS, Case
    from contenders import BY_NAME
    from idle import Window

    st = spec["settings"]
    contender = BY_NAME[spec["contender"]]
    case = Case(spec["model"], spec["batch"], spec["mode"], spec["size"])
    fw = _fw(contender.family)
    versions = fw.prepare(spec["threads"], spec["device"], contender.name)
    bench = fw.build(contender.name, case, spec["device"])

    t0 = time.perf_counter()
    bench.step()
    first_call_s = time.perf_counter() - t0
    t_warm = time.perf_counter()
    for _ in range(max(0, st["warmup"])):  # at most about min_window seconds of warm-up for slow rows
        if time.perf_counter() - t_warm >= st["min_window"]:
            break
        bench.step()

    times = []
    window = Window(spec["cores"]).start()
    t_start = time.perf_counter()
    while True:
        t = time.perf_counter()
        bench.step()
        times.append(time.perf_counter() - t)
        elapsed, n = time.perf_counter() - t_start, len(times)
        if n >= st["max_iters"] or (n >= st["repeats"] and elapsed >= st["min_window"]) \
                or (n >= MIN_SLOW_REPEATS and elapsed >= st["max_window"]):
            break
    window.stop()
    idle_info = window.as_dict()
    if spec["device"] == "cuda":  # sampled while our context is still alive
        from idle import gpu_other_processes

        idle_info["gpu_other_pids"] = gpu_other_processes()

    s = sorted(times)
    median = statistics.median(s)
    return {
        "median_ms": median * 1e3, "p25_ms": _percentile(s, 0.25) * 1e3, "p75_ms": _percentile(s, 0.75) * 1e3,
        "min_ms": s[0] * 1e3, "n": len(s), "img_per_s": case.batch / median,
        "create_s": bench.create_s, "first_call_s": first_call_s, "params": bench.params, "notes": bench.notes,
        "idle": idle_info, "peak_rss_mb": _peak_rss_mb(), "versions": versions,
        "times_ms": [round(t * 1e3, 3) for t in times],
    }


def _rss_guard(limit_mb: float) -> None:
    """Kill this process if it grows past ``limit_mb``: an 'abstract' build that allocates real weights for a
    10B-parameter model would take the shared machine down with it."""
    def watch():
        while True:
            if _rss_mb() > limit_mb:
                print("RESULT " + json.dumps({"status": "error", "error": f"RSS exceeded {limit_mb:.0f} MB: "
                                                                         f"the build is not abstract"}), flush=True)
                os._exit(3)
            time.sleep(0.02)

    threading.Thread(target=watch, daemon=True).start()


def run_abstract(spec: dict) -> dict:
    from contenders import BY_NAME

    contender = BY_NAME[spec["contender"]]
    fw = _fw(contender.family)
    versions = fw.prepare(spec["threads"], "cpu", contender.name)
    import regnet_zoo  # noqa: F401

    if contender.name.startswith("hf-"):
        import transformers  # noqa: F401
    from idle import Window

    rss_before = _rss_mb()
    _rss_guard(rss_before + spec.get("rss_limit_mb", 4096))
    window = Window(spec["cores"]).start()
    out = fw.abstract_build(contender.name, spec["model"])
    window.stop()
    peak = _peak_rss_mb()
    out.update(rss_before_mb=rss_before, peak_rss_mb=peak, peak_over_imports_mb=max(0.0, peak - rss_before),
               versions=versions, idle=window.as_dict())
    return out


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    os.sched_setaffinity(0, spec["cores"])
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from contenders import Unavailable

    from regnet_zoo.errors import FrameworkNotInstalledError

    try:
        result = {"abstract": run_abstract, "speed": run_speed}[spec["kind"]](spec)
        result["status"] = "ok"
    except Unavailable as e:
        result = {"status": "unavailable", "error": str(e)}
    except FrameworkNotInstalledError as e:
        result = {"status": "unavailable", "error": str(e)}
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in OPTIONAL_LIBRARIES:
            traceback.print_exc()
            result = {"status": "error", "error": f"ModuleNotFoundError: {e}"}
        else:
            result = {"status": "unavailable", "error": f"{e.name} is not installed (pip install -e '.[all,test]')"}
    except Exception as e:  # reported as an error row; the traceback goes to stderr for the parent's log
        traceback.print_exc()
        msg = f"{type(e).__name__}: {e}".strip().splitlines()
        result = {"status": "error", "error": msg[0][:300] if msg else type(e).__name__}
    t = os.times()
    result["process"] = {"wall_s": round(time.perf_counter() - T_START, 2), "cpu_s": round(t.user + t.system, 2)}
    sys.stdout.flush()
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
