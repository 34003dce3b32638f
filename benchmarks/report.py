"""Turn one run's records into ratios, a JSON file (one record per row) and a markdown report."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cases import Case, gflop
from contenders import BY_NAME, CONTENDERS, TORCH_REFERENCES
from machine import one_line
from targets import speed_ratio


def add_roofline(rows: list[dict]) -> dict:
    """Fill each ok speed row's ``gflops`` (achieved) and ``share`` (of the same precision's reference); return
    the references ``{precision: {"gflops", "by"}}``: the fastest reference conv row of each precision."""
    refs: dict[str, dict] = {}
    for r in rows:
        if r["kind"] != "speed" or r["status"] != "ok":
            continue
        r["gflop"] = round(gflop(Case(**r["case"])), 3)
        r["gflops"] = round(r["gflop"] / (r["median_ms"] / 1e3), 1)
        c = BY_NAME[r["contender"]]
        r["precision"] = c.precision
        if c.reference and r["gflops"] > refs.get(c.precision, {}).get("gflops", 0.0):
            refs[c.precision] = {"gflops": r["gflops"], "by": r["contender"]}
    for r in rows:
        if r.get("gflops") is not None and r["precision"] in refs:
            r["share"] = round(r["gflops"] / refs[r["precision"]]["gflops"], 4)
    return refs


def add_ratios(rows: list[dict]) -> None:
    """Fill ``ratio`` (to the row's baseline, same case, same run) and ``ratio_to`` (to the torch plugin rows)."""
    by_case: dict[str, dict[str, dict]] = {}
    for r in rows:
        if r["kind"] == "speed":
            by_case.setdefault(r["case_key"], {})[r["contender"]] = r
    for case_rows in by_case.values():
        for name, r in case_rows.items():
            base_name = BY_NAME[name].baseline
            r["baseline"] = base_name
            base = case_rows.get(base_name) if base_name else None
            sr = speed_ratio(r, base) if base else None
            r["ratio"] = None if sr is None else round(sr["ratio"], 4)
            r["ratio_band"] = None if sr is None else [round(sr["low"], 4), round(sr["high"], 4)]
            r["ratio_to"] = {}
            for ref in TORCH_REFERENCES:
                if ref != name and ref in case_rows:
                    s = speed_ratio(r, case_rows[ref])
                    r["ratio_to"][ref] = None if s is None else round(s["ratio"], 4)


def _f(v, fmt: str = ".1f", none: str = "-") -> str:
    return none if v is None else format(v, fmt)


def _pct(share) -> str:
    return "-" if share is None else f"{100 * share:.0f}%"


def _status(r: dict) -> str:
    if r["status"] == "ok":
        return "noisy" if r.get("noisy") else "ok"
    return f"{r['status']}: {r.get('error', '')}".replace("|", "/")


def speed_table(rows: list[dict]) -> list[str]:
    lines = ["| case | contender | median ms | img/s | GFLOP/s | roofline share | vs baseline (IQR band) | baseline | "
             "vs rz-torch | create s | 1st call s | others' CPU | status |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"]
    last_case = None
    for r in rows:
        if r["kind"] != "speed":
            continue
        case = r["case_key"] if r["case_key"] != last_case else ""
        last_case = r["case_key"]
        ok = r["status"] == "ok"
        band = r.get("ratio_band")
        ratio = "-" if r.get("ratio") is None else (
            f"{r['ratio']:.2f}x ({band[0]:.2f}-{band[1]:.2f})" if band else f"{r['ratio']:.2f}x")
        if r.get("baseline") is None:
            ratio = "1.00x (baseline)" if ok else "-"
        vs_torch = r.get("ratio_to", {}).get("rz-torch") if r.get("family") != "torch" else None
        lines.append(
            f"| {case} | {r['contender']} | {_f(r.get('median_ms')) if ok else '-'} | "
            f"{_f(r.get('img_per_s')) if ok else '-'} | {_f(r.get('gflops'), '.0f')} | "
            f"{_pct(r.get('share'))}{' (bf16)' if r.get('precision') == 'bf16' and ok else ''} | "
            f"{ratio} | {r.get('baseline') or ''} | "
            f"{'-' if vs_torch is None else f'{vs_torch:.2f}x'} | {_f(r.get('create_s'), '.2f') if ok else '-'} | "
            f"{_f(r.get('first_call_s'), '.1f') if ok else '-'} | "
            f"{_pct(r.get('idle', {}).get('others_share')) if ok else '-'} | {_status(r)} |")
    return lines


def targets_table(targets: list[dict]) -> list[str]:
    lines = ["| target | model | batch | measured (IQR band) | also | verdict |",
             "|---|---|---:|---:|---|---|"]
    for t in targets:
        if "value_s" in t or "maximum_s" in t:
            lines.append(f"| {t['target']} | | | {_f(t.get('value_s'), '.3f')} s | | {t['verdict']} |")
            continue
        if t.get("kind") == "share":
            measured = "-" if t.get("share") is None else f"{_pct(t['share'])} ({t['best']}, {t['gflops']:.0f} GFLOP/s)"
            others = " / ".join(f"{k} {_pct(v)}" for k, v in t["shares"].items())
            lines.append(f"| {t['target']} | {t['model']} | {t['batch']} | {measured} | {others} | "
                         f"{t['verdict'].replace('|', '/')} |")
            continue
        measured = "-" if t.get("ratio") is None else f"{t['ratio']:.2f}x ({t['low']:.2f}-{t['high']:.2f})"
        also = " / ".join(f"vs {k} " + ("-" if v is None else f"{v:.2f}x") for k, v in t.get("also", {}).items())
        lines.append(f"| {t['target']} | {t['model']} | {t['batch']} | {measured} | {also} | "
                     f"{t['verdict'].replace('|', '/')} |")
    return lines


def other_tables(rows: list[dict]) -> list[str]:
    startup = {r["name"]: r for r in rows if r["kind"] == "startup"}
    abstract = [r for r in rows if r["kind"] == "abstract"]
    load = [r for r in rows if r["kind"] == "load_memory"]
    lines = ["| measurement | median | min | n | others' CPU | notes |", "|---|---:|---:|---:|---:|---|"] if startup else []
    for key, text in (("import_and_list", "`import regnet_zoo` + `list_variants()` (in-process)"),
                      ("cli_list", "`regnet-zoo list` (wall, fresh process)")):
        s = startup.get(key)
        if not s:
            continue
        if s["status"] != "ok":
            lines.append(f"| {text} | - | - | - | - | {s['status']}: {s.get('error', '')} |")
            continue
        notes = []
        if key == "import_and_list":
            loaded = ", ".join(s["frameworks_loaded"]) or "none"
            notes.append(f"{s['variants']} variants; frameworks imported: {loaded}")
        if s.get("noisy"):
            notes.append("noisy")
        lines.append(f"| {text} | {s['median_s']:.3f} s | {s['min_s']:.3f} s | {s['n']} | "
                     f"{_pct(s['idle']['others_share'])} | {'; '.join(notes)} |")
    if abstract:
        lines += ["", "Shapes-only build of `regnety_10b` (torch: meta device; flax: abstract / eval_shape):", "",
                  "| contender | build s | peak RSS MB | peak over imports MB | params | others' CPU | status |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for a in abstract:
            ok = a["status"] == "ok"
            lines.append(f"| {a['contender']} | {_f(a.get('build_s'), '.3f') if ok else '-'} | "
                         f"{_f(a.get('peak_rss_mb'), '.0f') if ok else '-'} | "
                         f"{_f(a.get('peak_over_imports_mb'), '.0f') if ok else '-'} | "
                         f"{_f(a.get('params') / 1e9, '.2f') + ' B' if ok and a.get('params') else '-'} | "
                         f"{_pct(a.get('idle', {}).get('others_share')) if ok else '-'} | {_status(a)} |")
    if load:
        lines += ["", "Loading a large checkpoint into a built model (from `benchmarks/load_memory.py`; extra peak RSS "
                      "over the RSS before loading, as a multiple of the file size):", "",
                  "| load | file MB | extra peak RSS MB | x file size | target | load s | status |",
                  "|---|---:|---:|---:|---|---:|---|"]
        for rec in load:
            name = rec.get("name", "checkpoint load")
            if rec.get("status", "ok") != "ok":
                lines.append(f"| {name} | - | - | - | - | - | {_status(rec)} |")
                continue
            target = (f"<= {rec['target_ratio']:g}x: {rec.get('verdict', '?')}" if rec.get("target_ratio") is not None
                      else rec.get("verdict", ""))
            lines.append(f"| {name} | {_f(rec.get('weights_mb'), '.0f')} | {_f(rec.get('extra_peak_mb'), '.0f')} | "
                         f"{_f(rec.get('ratio'), '.2f')} | {target} | {_f(rec.get('seconds'), '.1f')} | ok |")
    return lines


def _roofline_line(refs: dict) -> str:
    if not refs:
        return "No roofline reference ran: no shares."
    return ("Roofline reference (the fastest framework on one dense 3x3 conv, 8x256x56x56, same run): "
            + "; ".join(f"{prec} {ref['gflops']:.0f} GFLOP/s ({ref['by']})" for prec, ref in sorted(refs.items()))
            + ". A row's share = its GFLOP/s (nominal network FLOPs, 2 per multiply-add, a training step as 3 "
              "forward passes) / the reference of its precision.")


def markdown(result: dict) -> str:
    m, rows = result["machine"], result["rows"]
    speed = [r for r in rows if r["kind"] == "speed"]
    noisy = [r for r in speed if r.get("noisy")]
    out = [f"# regnet-zoo benchmarks ({'quick' if result['quick'] else 'full'} run)", "",
           f"Taken {one_line(m)}."
           + (f" Other processes used {100 * result['idle_at_start']:.0f}% of those cores when the run started."
              if result.get("idle_at_start") is not None else ""), ""]
    if noisy or any(r.get("noisy") for r in rows if r["kind"] == "startup"):
        out += [f"**Warning: the machine was busy.** {len(noisy)} of {len(speed)} speed rows never got a window in "
                f"which other processes used <= {100 * result['threshold']:.0f}% of the benchmark's cores (after "
                f"{result['settings']['retries']} re-measurement(s)); those rows are marked `noisy` and their ratios "
                f"are not trustworthy."
                + (" The run's patience for waiting and re-measuring ran out, so later rows were not retried."
                   if result.get("patience_exhausted") else ""), ""]
    out += ["Ratios are speed-ups measured in this run: baseline median time / contender median time (> 1 = faster "
            "than the baseline); the band is from the interquartile ranges. Each row ran in its own process, "
            f"threads and affinity pinned to {len(m['cores_used'])} core(s); median of >= "
            f"{result['settings']['repeats']} timed calls after warm-up, at least {result['settings']['min_window']:g} "
            "s of timing. 'others' CPU' = share of the pinned cores used by other processes while timing.", "",
            _roofline_line(result.get("roofline", {})), "", "## Targets", ""]
    out += targets_table(result["targets"])
    out += ["", "## Speed", ""]
    out += speed_table(rows)
    out += ["", "## Start-up and memory", ""]
    out += other_tables(rows)
    out += ["", "## Contenders", ""]
    out += [f"- `{c.name}`: {c.what}" + (f" (baseline: `{c.baseline}`)" if c.baseline else " (a baseline)")
            for c in CONTENDERS]
    out += ["", f"Run: `{result['command']}` in {result['wall_s']:.0f} s.", ""]
    return "\n".join(out)


def write(result: dict, out_dir: Path, name: str) -> tuple[Path, Path]:
    """Write ``<name>.json`` and ``<name>.md`` atomically (a ``.tmp`` file renamed into place)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, text in ((".json", json.dumps(result, indent=1, sort_keys=False) + "\n"),
                         (".md", markdown(result))):
        path = out_dir / f"{name}{suffix}"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        paths.append(path)
    return paths[0], paths[1]


if __name__ == "__main__":  # re-render a result file: python benchmarks/report.py benchmarks/results/latest.json
    import sys

    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
