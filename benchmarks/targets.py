"""The targets the framework issues set, and their verdicts on one run's rows.

A speed ratio is ``baseline median / contender median`` of two rows of the same case in the same run (> 1 = the
contender is faster). Its noise band is ``[baseline p25 / contender p75, baseline p75 / contender p25]``; a verdict
whose band straddles the target is marked "within noise", and one taken from a row that never got an idle window is
"inconclusive: noisy (measured PASS/FAIL)": neither is hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

from contenders import INFER


@dataclass(frozen=True)
class SpeedTarget:
    contender: str
    baseline: str
    minimum: float
    models: tuple[str, ...]
    batches: tuple[int, ...] = (1, 8)
    needs_amx: bool = False  # only meaningful on a CPU with AMX (lscpu flag amx_bf16)
    also_vs: tuple[str, ...] = ()  # extra ratios to print beside it (the torch plugin)

    @property
    def text(self) -> str:
        return f"{self.contender} >= {self.minimum:g}x {self.baseline}"


@dataclass(frozen=True)
class TimeTarget:
    key: str  # the startup measurement it reads
    text: str
    maximum_s: float


BOTH = ("regnetx_004", "regnety_040")
SPEED_TARGETS = (
    SpeedTarget("rz-torch", "timm", 1.0, BOTH),
    SpeedTarget("rz-torch-fast", "timm", 1.4, BOTH),
    SpeedTarget("rz-torch-bf16", "timm", 4.0, BOTH, needs_amx=True),
    SpeedTarget("rz-tf", "hf-tf-function", 1.3, BOTH, also_vs=("rz-torch", "rz-torch-fast")),
    SpeedTarget("rz-tf-fast", "hf-tf-function", 1.3, BOTH, also_vs=("rz-torch", "rz-torch-fast")),
    SpeedTarget("rz-flax", "hf-flax-jit", 1.5, ("regnety_040",), also_vs=("rz-torch", "rz-torch-fast")),
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


def _find(rows: list[dict], contender: str, model: str, batch: int) -> dict | None:
    for r in rows:
        if r.get("kind") == "speed" and r["contender"] == contender and r["case"]["model"] == model \
                and r["case"]["batch"] == batch and r["case"]["mode"] == INFER:
            return r
    return None


def _why_missing(r: dict | None, name: str) -> str:
    if r is None:
        return f"not run: {name}"
    return f"{r['status']}: {name}: {r.get('error', '')}".rstrip(": ")


def evaluate(rows: list[dict], machine: dict) -> list[dict]:
    out = []
    for t in SPEED_TARGETS:
        for model in t.models:
            for batch in t.batches:
                rec = {"target": t.text, "model": model, "batch": batch, "minimum": t.minimum,
                       "contender": t.contender, "baseline": t.baseline}
                row, base = _find(rows, t.contender, model, batch), _find(rows, t.baseline, model, batch)
                r = speed_ratio(row, base) if row and base else None
                if r is not None:
                    rec.update(r)
                    rec["also"] = {}
                    for other in t.also_vs:
                        o = _find(rows, other, model, batch)
                        ro = speed_ratio(row, o) if o else None
                        rec["also"][other] = None if ro is None else ro["ratio"]
                if t.needs_amx and machine["device"] == "cpu" and not machine["amx_bf16"]:
                    rec["verdict"] = "n/a: no AMX"
                elif t.needs_amx and machine["device"] != "cpu":
                    rec["verdict"] = "n/a: the target is for CPUs with AMX"
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
