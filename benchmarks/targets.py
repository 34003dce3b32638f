"""The targets the framework issues set, and their verdicts on one run's rows.

A speed ratio is ``baseline median / contender median`` of two rows of the same case in the same run (> 1 = the
contender is faster). Its noise band is ``[baseline p25 / contender p75, baseline p75 / contender p25]``; a verdict
whose band straddles the target is marked "within noise", and one taken from a row that never got an idle window is
"inconclusive: noisy (measured PASS/FAIL)": neither is hidden.

A roofline share is a row's achieved GFLOP/s (nominal network FLOPs per call / median time) over the fp32 or bf16
reference of the same run: the fastest of the three frameworks on one dense 3x3 conv (``REFERENCE_CONV``).
"""

from __future__ import annotations

from dataclasses import dataclass

from contenders import INFER, TRAIN


@dataclass(frozen=True)
class SpeedTarget:
    """``contender`` at least ``minimum`` times as fast as ``baseline`` (two rows of the same case)."""

    contender: str
    baseline: str
    minimum: float
    models: tuple[str, ...]
    batches: tuple[int, ...] = (8,)
    needs_bf16: bool = False  # only where bf16 is native: a CPU with avx512_bf16 or AMX, or a GPU
    also_vs: tuple[str, ...] = ()  # extra ratios to print beside it

    @property
    def text(self) -> str:
        return f"{self.contender} >= {self.minimum:g}x {self.baseline}"


@dataclass(frozen=True)
class ShareTarget:
    """The fastest of a framework's ``paths`` (inference or training rows) at >= ``minimum`` of the fp32 roofline
    reference (the best dense 3x3 conv of the three frameworks in the same run)."""

    framework: str
    mode: str
    paths: tuple[str, ...]
    minimum: float
    models: tuple[str, ...]
    batch: int = 8

    @property
    def text(self) -> str:
        return f"{self.framework} {self.mode} (fastest of {', '.join(self.paths)}) >= {self.minimum:.0%} of roofline"


@dataclass(frozen=True)
class TimeTarget:
    key: str  # the startup measurement it reads
    text: str
    maximum_s: float


BOTH = ("regnetx_004", "regnety_040")
SHARE_TARGETS = (
    ShareTarget("torch", INFER, ("rz-torch", "rz-torch-fast"), 0.70, BOTH),
    ShareTarget("tf", INFER, ("rz-tf", "rz-tf-fast"), 0.70, BOTH),
    ShareTarget("flax", INFER, ("rz-flax",), 0.70, BOTH),
    ShareTarget("torch", TRAIN, ("rz-torch", "rz-torch-cl", "rz-torch-compile"), 0.45, BOTH),
    ShareTarget("tf", TRAIN, ("rz-tf",), 0.45, BOTH),
    ShareTarget("flax", TRAIN, ("rz-flax",), 0.45, BOTH),
)
SPEED_TARGETS = (
    SpeedTarget("rz-flax", "rz-torch-fast", 0.8, BOTH),
    SpeedTarget("rz-torch-bf16", "rz-torch-fast", 2.0, BOTH, needs_bf16=True),
    SpeedTarget("rz-tf-bf16", "rz-tf-fast", 2.0, BOTH, needs_bf16=True),
    SpeedTarget("rz-flax-bf16", "rz-flax", 2.0, BOTH, needs_bf16=True),
    SpeedTarget("rz-torch-fast", "timm", 1.4, BOTH, batches=(1, 8)),
    SpeedTarget("rz-tf", "hf-tf-function", 1.3, BOTH, batches=(1, 8), also_vs=("hf-tf-function-nhwc", "kimm")),
    SpeedTarget("rz-tf-fast", "hf-tf-function", 1.3, BOTH, batches=(1, 8), also_vs=("hf-tf-function-nhwc", "kimm")),
    SpeedTarget("rz-flax", "hf-flax-jit", 1.5, ("regnety_040",), batches=(1, 8)),
)
TIME_TARGETS = (
    TimeTarget("import_and_list", "import regnet_zoo + list all variants", 0.3),
    TimeTarget("cli_list", "`regnet-zoo list` wall", 0.5),
)


def speed_ratio(row: dict, base: dict) -> dict | None:
    """Ratio and noise band between two ok speed rows."""
    if row.get("status") != "ok" or base.get("status") != "ok":
        return None
    return {"ratio": base["median_ms"] / row["median_ms"],
            "low": base["p25_ms"] / row["p75_ms"], "high": base["p75_ms"] / row["p25_ms"],
            "noisy": bool(row.get("noisy") or base.get("noisy"))}


def _find(rows: list[dict], contender: str, model: str, batch: int, mode: str = INFER) -> dict | None:
    for r in rows:
        if r.get("kind") == "speed" and r["contender"] == contender and r["case"]["model"] == model \
                and r["case"]["batch"] == batch and r["case"]["mode"] == mode:
            return r
    return None


def _share_verdicts(rows: list[dict]) -> list[dict]:
    out = []
    for t in SHARE_TARGETS:
        for model in t.models:
            found = [r for r in (_find(rows, p, model, t.batch, t.mode) for p in t.paths) if r is not None]
            if not found:
                continue  # not part of this run (a quick or filtered run)
            rec = {"target": t.text, "model": model, "batch": t.batch, "minimum": t.minimum, "kind": "share",
                   "shares": {r["contender"]: r.get("share") for r in found}}
            ok = [r for r in found if r["status"] == "ok" and r.get("share") is not None]
            if not ok:
                rec["verdict"] = _why_missing(found[0], found[0]["contender"]) if found[0]["status"] != "ok" \
                    else "no roofline reference in this run"
                out.append(rec)
                continue
            best = max(ok, key=lambda r: r["share"])
            rec.update(share=best["share"], best=best["contender"], gflops=best["gflops"])
            rec["verdict"] = "PASS" if best["share"] >= t.minimum else "FAIL"
            if best.get("noisy"):
                rec["verdict"] = f"inconclusive: noisy (measured {rec['verdict']})"
            out.append(rec)
    return out


def _why_missing(r: dict | None, name: str) -> str:
    if r is None:
        return f"not run: {name}"
    return f"{r['status']}: {name}: {r.get('error', '')}".rstrip(": ")


def evaluate(rows: list[dict], machine: dict) -> list[dict]:
    """Every target that this run's rows speak to (a target none of whose rows ran is left out)."""
    out = _share_verdicts(rows)
    native_bf16 = machine["device"] != "cpu" or machine["amx_bf16"] or machine.get("avx512_bf16", False)
    for t in SPEED_TARGETS:
        for model in t.models:
            for batch in t.batches:
                rec = {"target": t.text, "model": model, "batch": batch, "minimum": t.minimum,
                       "contender": t.contender, "baseline": t.baseline}
                row, base = _find(rows, t.contender, model, batch), _find(rows, t.baseline, model, batch)
                if row is None or base is None:
                    continue  # not part of this run (a quick or filtered run)
                r = speed_ratio(row, base) if row and base else None
                if r is not None:
                    rec.update(r)
                    rec["also"] = {}
                    for other in t.also_vs:
                        o = _find(rows, other, model, batch)
                        ro = speed_ratio(row, o) if o else None
                        rec["also"][other] = None if ro is None else ro["ratio"]
                if t.needs_bf16 and not native_bf16:
                    rec["verdict"] = "n/a: this CPU has no native bf16 (avx512_bf16 / AMX)"
                elif r is None:
                    rec["verdict"] = _why_missing(row if not row or row["status"] != "ok" else base,
                                                  t.contender if not row or row["status"] != "ok" else t.baseline)
                else:
                    rec["verdict"] = "PASS" if r["ratio"] >= t.minimum else "FAIL"
                    within = r["low"] < t.minimum <= r["high"]
                    if r["noisy"]:
                        band = ", within noise" if within else ""
                        rec["verdict"] = f"inconclusive: noisy (measured {rec['verdict']}{band})"
                    elif within:
                        rec["verdict"] += " (within noise)"
                out.append(rec)
    startup = {r["name"]: r for r in rows if r.get("kind") == "startup"}
    for t in TIME_TARGETS:
        s = startup.get(t.key)
        rec = {"target": f"{t.text} < {t.maximum_s:g} s", "maximum_s": t.maximum_s}
        if not s or s.get("status") != "ok":
            rec["verdict"] = "not run" if not s else f"{s['status']}: {s.get('error', '')}"
        else:
            rec["value_s"] = s["median_s"]
            rec["verdict"] = "PASS" if s["median_s"] < t.maximum_s else "FAIL"
            if s.get("noisy"):
                rec["verdict"] = f"inconclusive: noisy (measured {rec['verdict']})"
        out.append(rec)
    return out
