"""Turns a :class:`BenchRun` into JSON and a markdown table, and writes them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from actionqueue.bench.analysis import (
    baseline_ratio,
    check_targets,
    compare_ours,
    durability_contradictions,
)
from actionqueue.bench.durability import SQLITE_WAL_SYNC_NOTE, Durability
from actionqueue.bench.runner import BenchRun
from actionqueue.bench.targets import TARGETS

SCHEMA = "actionqueue-bench/1"


def medians(run: BenchRun) -> dict[str, float]:
    """Median records/s of every workload that ran, by name."""
    out: dict[str, float] = {}
    for o in run.outcomes:
        s = o.summary
        if s is not None:
            out[o.workload.name] = s.records_per_s_median
    return out


def to_json(run: BenchRun) -> dict[str, Any]:
    """The machine-readable result: config, machine, systems, results, ratios, targets."""
    med = medians(run)
    results: list[dict[str, Any]] = []
    for o in run.outcomes:
        w, s = o.workload, o.summary
        results.append(
            {
                "name": w.name,
                "system": w.system.name,
                "kind": w.kind,
                "durability": w.durability.value,
                "durability_class": w.durability.cls.value,
                "threads": w.threads,
                "batch": w.batch,
                "record_bytes": w.record_bytes,
                "note": w.note,
                "status": o.status,
                "reason": o.reason or None,
                "calls_per_repeat": o.calls_per_repeat,
                "records_per_s": None
                if s is None
                else {
                    "median": s.records_per_s_median,
                    "min": s.records_per_s_min,
                    "max": s.records_per_s_max,
                    "runs": list(s.records_per_s_runs),
                },
                "latency_us_per_call": None
                if s is None or s.p50_us is None
                else {"p50": s.p50_us, "p99": s.p99_us, "calls": s.calls},
                "baseline": w.baseline,
                "ratio_to_baseline": baseline_ratio(w, med),
                "syncs_per_call": o.syncs_per_call,
            }
        )
    workloads = [o.workload for o in run.outcomes]
    return {
        "schema": SCHEMA,
        "mode": run.config.mode,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run.started_at)),
        "duration_s": round(run.duration_s, 2),
        "config": {
            "only": run.config.only,
            "repeats": run.config.scale.repeats,
            "durable_ops": run.config.scale.durable_ops,
            "buffered_ops": run.config.scale.buffered_ops,
            "batches": run.config.scale.batches,
            "ceiling_ops": run.config.scale.ceiling_ops,
            "record_bytes": run.config.record_bytes,
        },
        "machine": run.machine,
        "durability_levels": {d.value: d.meaning for d in Durability},
        "sqlite_note": SQLITE_WAL_SYNC_NOTE,
        "systems": {
            name: {
                "available": info.available,
                "reason": info.reason or None,
                "version": info.version,
                "durability_evidence": info.system.durability_evidence,
                "observed": info.observed,
            }
            for name, info in run.systems.items()
        },
        "sync_note": run.sync_note,
        "durability_contradictions": durability_contradictions(
            (o.workload, o.syncs_per_call) for o in run.outcomes if o.syncs_per_call is not None
        ),
        "results": results,
        "comparisons": [
            {"ours": c.ours, "peer": c.peer, "peer_system": c.peer_system, "ratio": c.ratio}
            for c in compare_ours(workloads, med)
        ],
        "targets": [
            {
                "target": t.target.label,
                "numerator": t.target.numerator,
                "denominator": t.target.denominator,
                "minimum": t.target.minimum,
                "value": t.value,
                "status": t.status,
                "detail": t.detail,
            }
            for t in check_targets(TARGETS, med)
        ],
    }


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    # Small ratios keep two significant digits: 0.004x must not print as 0.00x.
    return f"{value:.2g}x" if value < 0.1 else f"{value:.2f}x"


def _us(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _machine_line(data: dict[str, Any]) -> str:
    m = data["machine"]
    fs = m["filesystem"]
    fstype = fs["mounts_type"] if fs["statfs_type"] is None else f"{fs['statfs_type']}"
    load = m["load_average_at_start"]
    return (
        f"{m['cpu_model']}, {m['cpu_cores']} cores, Linux {m['kernel']}, Python {m['python']}, "
        f"SQLite {m['sqlite']}; target dir on {fstype} ({fs['mounts_type']}, {fs['device']}); "
        f"load average at start {load}"
    )


def to_markdown(data: dict[str, Any]) -> str:
    """A human-readable report of :func:`to_json`'s output."""
    cfg = data["config"]
    lines = [
        f"### actionqueue benchmark ({data['mode']} mode, {data['started_at']})",
        "",
        f"Machine: {_machine_line(data)}.",
        "",
        f"Each workload ran {cfg['repeats']}x (interleaved), {cfg['record_bytes']}-byte records; "
        "records/s is the median over repetitions with min-max; p50/p99 are per call (one "
        "record, or one batch) over all repetitions; **÷ baseline** divides the median by the "
        "named baseline's median from this same run.",
        "",
        "| workload | durability | syncs/call | thr | batch | records/s | min-max | p50 µs "
        "| p99 µs | ÷ baseline |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    skipped: list[str] = []
    for r in data["results"]:
        if r["status"] != "ok":
            skipped.append(f"- `{r['name']}` — {r['status']}: {r['reason']}")
            continue
        rate, lat = r["records_per_s"], r["latency_us_per_call"] or {}
        base = (
            f"{_ratio(r['ratio_to_baseline'])} `{r['baseline']}`"
            if r["ratio_to_baseline"] is not None
            else "-"
        )
        lines.append(
            f"| `{r['name']}` | {r['durability']} | {_num(r['syncs_per_call'], 2)} "
            f"| {r['threads']} | {r['batch']} "
            f"| {_num(rate['median'])} | {_num(rate['min'])}-{_num(rate['max'])} "
            f"| {_us(lat.get('p50'))} | {_us(lat.get('p99'))} | {base} |"
        )
    lines += ["", f"{data['sync_note']}."]
    if data["durability_contradictions"]:
        lines += ["", "**Durability labels contradicted by strace:**", ""]
        lines += [f"- {c}" for c in data["durability_contradictions"]]
    elif any(r["syncs_per_call"] is not None for r in data["results"]):
        lines += ["Every counted workload's durability label agrees with its sync calls."]
    lines += ["", "#### actionqueue ÷ peers at equal durability", ""]
    if data["comparisons"]:
        lines += ["| ours | peer | ours ÷ peer |", "|---|---|--:|"]
        lines += [
            f"| `{c['ours']}` | `{c['peer']}` | {_ratio(c['ratio'])} |" for c in data["comparisons"]
        ]
    else:
        lines.append(
            "None of actionqueue's workloads ran (see Skipped): the ÷ baseline column above "
            "compares each peer with the physical limit instead."
        )
    lines += [
        "",
        "#### SPEC §10 targets",
        "",
        "| target | value | needed | status |",
        "|---|--:|--:|---|",
    ]
    for t in data["targets"]:
        absolute = t["denominator"] is None
        value = _num(t["value"]) if absolute else _ratio(t["value"])
        needed = _num(t["minimum"]) + "/s" if absolute else f"{t['minimum']:g}x"
        status = t["status"] if t["status"] != "n/a" else f"n/a ({t['detail']})"
        lines.append(f"| {t['target']} | {value} | {needed} | {status} |")
    lines += [
        "",
        "#### What each system's acknowledgement means (evidence)",
        "",
        "| system | version | live PRAGMAs | durability |",
        "|---|---|---|---|",
    ]
    for name, s in data["systems"].items():
        observed = ", ".join(f"{k}={v}" for k, v in s["observed"].items()) or "-"
        lines.append(
            f"| {name} | {s['version'] or '-'} | {observed} | {s['durability_evidence']} |"
        )
    lines += [
        "",
        f"SQLite-based peers: {data['sqlite_note']}. Durability levels: "
        + "; ".join(f"**{k}** = {v}" for k, v in data["durability_levels"].items())
        + ".",
    ]
    if skipped:
        lines += ["", "#### Skipped or failed", "", *skipped]
    return "\n".join(lines) + "\n"


def write(run: BenchRun, out_dir: Path) -> tuple[Path, Path, dict[str, Any]]:
    """Write ``results.json`` and ``results.md`` into ``out_dir``; return their paths."""
    data = to_json(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "results.json"
    md_path = out_dir / "results.md"
    json_path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    md_path.write_text(to_markdown(data))
    return json_path, md_path, data
