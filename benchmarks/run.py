"""regnet-zoo benchmarks: speed and memory against timm and HF transformers, side by side, in one run.

    python benchmarks/run.py --quick            # the target rows, < 5 min on 2 idle cores
    python benchmarks/run.py                    # everything (all contenders, training rows, more repeats)
    python benchmarks/run.py --device cuda      # the same on a GPU
    python benchmarks/run.py --list             # what would run
    python benchmarks/run.py --only 'rz-tf,hf-tf-*' --models regnety_040 --parts speed

Each row runs in its own worker process (``worker.py``) with threads and affinity pinned to the chosen cores. A
row whose timed window saw other processes use more than ``--threshold`` of those cores is re-measured (up to the
mode's retry count, after waiting for quiet); if it never gets a quiet window it is kept, marked ``noisy``. The
attempt kept is the quietest one, never the fastest. Results: ``benchmarks/results/<name>.json`` (one record per
row, with its ratio to its baseline) and ``<name>.md``; the markdown is printed at the end.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cases as cases_mod  # noqa: E402
import idle  # noqa: E402
import machine  # noqa: E402
import report  # noqa: E402
import startup  # noqa: E402
import targets  # noqa: E402
from contenders import BY_NAME, FAMILY_ENV  # noqa: E402

PARTS = ("speed", "startup", "abstract", "load")
ABSTRACT_MODEL = "regnety_10b"
ABSTRACT_CONTENDERS = ("rz-torch", "hf-pt", "rz-flax", "hf-flax-jit")
LOAD_MEMORY_SCRIPT = HERE / "load_memory.py"  # owned by the weights work; see README.md for its contract


def worker_env(family: str | None, threads: int, device: str) -> dict:
    """The environment of a worker: thread counts pinned, each family sees only its own framework."""
    env = dict(os.environ)
    n = str(threads)
    env.update(OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, NUMEXPR_NUM_THREADS=n,
               TF_NUM_INTRAOP_THREADS=n, TF_NUM_INTEROP_THREADS=n, TF_CPP_MIN_LOG_LEVEL="2",
               XLA_FLAGS=(env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=true").strip(),
               PYTHONHASHSEED="0", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               TRANSFORMERS_VERBOSITY="error", PYTHONWARNINGS="ignore")
    if family:
        env.update(FAMILY_ENV[family])
    if device == "cpu":
        env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    return env


def launch(spec: dict, env: dict, timeout: float, log) -> dict:
    """Run one worker; its ``RESULT`` line, or an error record (crash, timeout) with the tail of its stderr."""
    cmd = [sys.executable, str(HERE / "worker.py"), json.dumps(spec)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        log(_tail(e.stderr))
        return {"status": "error", "error": f"timed out after {timeout:.0f} s"}
    log(p.stderr)
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    why = f"signal {-p.returncode}" if p.returncode < 0 else f"exit status {p.returncode}"
    return {"status": "error", "error": f"worker died ({why}): {_tail(p.stderr, 1) or 'no output'}"}


def _tail(text, n: int = 15) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").strip().splitlines()[-n:])


@dataclass
class Context:
    """What every phase of a run shares."""

    cores: list[int]
    device: str
    st: cases_mod.Settings
    threshold: float
    patience: idle.Patience
    log: Callable[[str], None]
    only: list[str] | None

    @property
    def threads(self) -> int:
        return len(self.cores)

    def wanted(self, contender: str) -> bool:
        return not self.only or any(fnmatch.fnmatch(contender, p) for p in self.only)


def run_speed(ctx: Context, plan) -> list[dict]:
    rows = []
    for i, (case, c) in enumerate(plan, 1):
        spec = {"kind": "speed", "contender": c.name, **case.as_dict(), "device": ctx.device, "threads": ctx.threads,
                "cores": ctx.cores, "settings": ctx.st.as_dict()}
        env = worker_env(c.family, ctx.threads, ctx.device)

        def on_attempt(k, r):
            if k > 0 or r["idle"]["others_share"] > ctx.threshold:
                print(f"    attempt {k + 1}: {r['median_ms']:.1f} ms, others used "
                      f"{100 * r['idle']['others_share']:.0f}%", flush=True)

        t0 = time.perf_counter()
        res = idle.quietest(lambda: launch(spec, env, ctx.st.timeout, ctx.log), ctx.st, ctx.cores, ctx.threshold,
                            ctx.patience, on_attempt)
        res = {"kind": "speed", "contender": c.name, "family": c.family, "case": case.as_dict(), "case_key": case.key,
               **res}
        rows.append(res)
        what = (f"{res['median_ms']:9.1f} ms  others {100 * res['idle']['others_share']:3.0f}%"
                + ("  NOISY" if res.get("noisy") else "")) if res["status"] == "ok" else \
            f"{res['status']}: {res.get('error', '')}"
        print(f"[{i:2d}/{len(plan)}] {case.key:32s} {c.name:20s} {what}  ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    return rows


def run_startup(ctx: Context) -> list[dict]:
    rows = []
    env = worker_env(None, ctx.threads, ctx.device)
    for key, fn in (("import_and_list", startup.import_and_list), ("cli_list", startup.cli_list)):
        res = idle.quietest(lambda fn=fn: fn(ctx.cores, ctx.st.cli_repeats, env), ctx.st, ctx.cores, ctx.threshold,
                            ctx.patience)
        rows.append({"kind": "startup", "name": key, **res})
        print(f"[startup] {key:16s} " + (
            f"{res['median_s']:.3f} s  others {100 * res['idle']['others_share']:.0f}%"
            + ("  NOISY" if res.get("noisy") else "") if res["status"] == "ok"
            else f"{res['status']}: {res.get('error')}"), flush=True)
    return rows


def run_abstract(ctx: Context) -> list[dict]:
    """Shapes-only ``regnety_10b``: one build per contender (0.1-2 s), flagged when noisy, not re-measured."""
    rows = []
    for cname in ABSTRACT_CONTENDERS:
        if not ctx.wanted(cname):
            continue
        c = BY_NAME[cname]
        spec = {"kind": "abstract", "contender": cname, "model": ABSTRACT_MODEL, "threads": ctx.threads,
                "cores": ctx.cores, "rss_limit_mb": 4096}
        t0 = time.perf_counter()
        quiet, _ = idle.wait_for_quiet(ctx.cores, ctx.threshold, min(ctx.st.quiet_wait, max(0.0, ctx.patience.left)))
        if not quiet:
            ctx.patience.spend(time.perf_counter() - t0)
        res = launch(spec, worker_env(c.family, ctx.threads, "cpu"), ctx.st.timeout, ctx.log)
        if res["status"] == "ok":
            res["noisy"] = res["idle"]["others_share"] > ctx.threshold
        rows.append({"kind": "abstract", "contender": cname, "family": c.family, "model": ABSTRACT_MODEL, **res})
        print(f"[abstract] {ABSTRACT_MODEL} {cname:12s} " + (
            f"{res['build_s']:.3f} s, peak RSS {res['peak_rss_mb']:.0f} MB "
            f"(+{res['peak_over_imports_mb']:.0f} MB over imports)" if res["status"] == "ok"
            else f"{res['status']}: {res.get('error')}"), flush=True)
    if ctx.wanted("rz-tf"):
        rows.append({"kind": "abstract", "contender": "rz-tf", "family": "tf", "model": ABSTRACT_MODEL,
                     "status": "unavailable",
                     "error": "Keras has no shapes-only build (a real regnety_10b is ~38 GB of float32 weights)"})
    return rows


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--quick", action="store_true", help="the target rows only, fewer repeats (< 5 min on 2 cores)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"),
                    help="where models run (auto = cuda when nvidia-smi sees a GPU)")
    ap.add_argument("--cores", help="comma-separated CPU ids to pin to (default: all this process may use)")
    ap.add_argument("--threshold", type=float, default=idle.DEFAULT_THRESHOLD,
                    help="others' CPU share above which a timed window is noisy (default 0.10)")
    ap.add_argument("--only", help="comma-separated contender name patterns (fnmatch), e.g. 'rz-tf,hf-tf-*'")
    ap.add_argument("--models", help="comma-separated variants (default: regnetx_004,regnety_040)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--repeats", type=int, help="override the minimum number of timed calls")
    ap.add_argument("--retries", type=int, help="override the re-measurements of a noisy row")
    ap.add_argument("--quiet-wait", type=float, help="override the seconds to wait for quiet before each attempt")
    ap.add_argument("--patience", type=float,
                    help="override the run-wide seconds for waiting and re-measuring (quick 90, full 3600)")
    ap.add_argument("--name", help="output file stem in --out (default: latest; 'partial' when filtered)")
    ap.add_argument("--out", default=str(HERE / "results"), help="output directory")
    ap.add_argument("--list", action="store_true", help="print the planned rows and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="show workers' stderr")
    args = ap.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in args.parts if p not in PARTS]
    if bad:
        ap.error(f"unknown part(s) {bad}; choose from {PARTS}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    t_run = time.perf_counter()
    cores = [int(c) for c in args.cores.split(",")] if args.cores else idle.pinned_cores()
    os.sched_setaffinity(0, cores)  # inherited by every worker, which pins itself again
    device = ("cuda" if machine.gpu_name() else "cpu") if args.device == "auto" else args.device
    st = cases_mod.QUICK if args.quick else cases_mod.FULL
    overrides = {k: v for k, v in (("repeats", args.repeats), ("retries", args.retries),
                                   ("quiet_wait", args.quiet_wait), ("patience", args.patience)) if v is not None}
    if overrides:
        st = type(st)(**{**st.as_dict(), **overrides})
    models = tuple(args.models.split(",")) if args.models else cases_mod.MODELS
    log = (lambda text: text and print(_tail(text, 40), file=sys.stderr)) if args.verbose else (lambda text: None)
    ctx = Context(cores, device, st, args.threshold, idle.Patience(st.patience), log,
                  [p.strip() for p in args.only.split(",")] if args.only else None)
    mach = machine.describe(cores, device)
    plan = [(case, c) for case, c in cases_mod.rows(args.quick, models) if ctx.wanted(c.name)] \
        if "speed" in args.parts else []
    filtered = bool(ctx.only or args.models or set(args.parts) != set(PARTS) or overrides)
    name = args.name or ("partial" if filtered else "latest")

    if args.list:
        for case, c in plan:
            print(f"{case.key:34s} {c.name}")
        print(f"{len(plan)} speed rows; parts: {', '.join(args.parts)}")
        return 0

    print(f"regnet-zoo benchmarks ({'quick' if args.quick else 'full'}): {machine.one_line(mach)}", flush=True)
    share = idle.others_share_now(cores, 1.0)
    print(f"idle check: other processes are using {100 * share:.0f}% of cores {cores} right now"
          + (f" (> {100 * args.threshold:.0f}%: rows will wait / be re-measured / be flagged 'noisy')"
             if share > args.threshold else ""), flush=True)

    rows = run_speed(ctx, plan)
    if "startup" in args.parts:
        rows += run_startup(ctx)
    if "abstract" in args.parts:
        rows += run_abstract(ctx)
    if "load" in args.parts:
        rows += load_memory_rows(args.quick, st.timeout, worker_env(None, ctx.threads, "cpu"), log)

    report.add_ratios(rows)
    roofline = report.add_roofline(rows)
    result = {"quick": args.quick, "machine": mach, "settings": st.as_dict(), "threshold": args.threshold,
              "idle_at_start": round(share, 4),
              "command": " ".join(["python", "benchmarks/run.py"] + (argv if argv is not None else sys.argv[1:])),
              "roofline": roofline, "rows": rows, "targets": targets.evaluate(rows, mach), "patience_exhausted": ctx.patience.exhausted,
              "wall_s": time.perf_counter() - t_run}
    json_path, md_path = report.write(result, Path(args.out), name)
    print()
    print(report.markdown(result))
    print(f"wrote {json_path} and {md_path} ({result['wall_s']:.0f} s)")
    if args.quick and result["wall_s"] > 300:
        print(f"note: this --quick run took {result['wall_s']:.0f} s (> 5 min)"
              + (": the machine was busy (see the noisy rows)" if any(r.get("noisy") for r in rows) else ""))
    return 0


def load_memory_rows(quick: bool, timeout: float, env: dict, log) -> list[dict]:
    """Peak RSS of loading a large checkpoint, from ``load_memory.py`` when it exists (see README.md)."""
    if not LOAD_MEMORY_SCRIPT.exists():
        return [{"kind": "load_memory", "name": "checkpoint load peak RSS", "status": "unavailable",
                 "error": "benchmarks/load_memory.py does not exist yet"}]
    cmd = [sys.executable, str(LOAD_MEMORY_SCRIPT), "--json"] + (["--quick"] if quick else [])
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return [{"kind": "load_memory", "status": "error", "error": f"timed out after {timeout:.0f} s"}]
    log(p.stderr)
    for line in reversed(p.stdout.splitlines()):
        line = line.strip()
        if line.startswith(("{", "[")):
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue
            recs = data if isinstance(data, list) else [data]
            return [{"kind": "load_memory", "status": "ok", **r} for r in recs if isinstance(r, dict)]
    return [{"kind": "load_memory", "status": "error",
             "error": f"no JSON line on stdout (exit status {p.returncode}): {_tail(p.stderr, 1)}"}]


if __name__ == "__main__":
    sys.exit(main())
