"""Optional PNG chart: submit throughput vs producer threads, against the fsync limits."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

_CLASSES = (("durable", "durable on ack (fsync / group commit)"), ("buffered", "os-buffered"))
_CEILINGS = (
    ("baseline.fdatasync-per-op.t1", "raw write+fdatasync (1 thread)", "-"),
    ("baseline.fdatasync-per-100", "1 fdatasync / 100 records", "--"),
    ("baseline.fdatasync-per-1000", "1 fdatasync / 1000 records", ":"),
)


def _series(data: dict[str, Any], durability_class: str) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for r in data["results"]:
        ok = r["status"] == "ok" and r["kind"] == "submit" and r["batch"] == 1
        if ok and r["durability_class"] == durability_class:
            series.setdefault(r["system"], []).append((r["threads"], r["records_per_s"]["median"]))
    return {k: sorted(v) for k, v in series.items()}


def write_chart(data: dict[str, Any], path: Path) -> str | None:
    """Write the chart to ``path``; return a one-line reason instead when it cannot."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        return "matplotlib is not installed (pip install 'actionqueue[bench]'): no chart"
    matplotlib.use("Agg")  # no display needed; must precede pyplot's import
    plt = importlib.import_module("matplotlib.pyplot")
    rates = {
        r["name"]: r["records_per_s"]["median"] for r in data["results"] if r["status"] == "ok"
    }
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    plotted = False
    for ax, (cls, title) in zip(axes, _CLASSES, strict=True):
        for system, points in _series(data, cls).items():
            xs, ys = zip(*points, strict=True)
            style = "o-" if "actionqueue" in system else "s--"
            ax.plot(xs, ys, style, label=system, linewidth=2.5 if "actionqueue" in system else 1)
            plotted = True
        if cls == "durable":
            for name, label, dash in _CEILINGS:
                if name in rates:
                    ax.axhline(rates[name], color="black", linestyle=dash, linewidth=1, label=label)
        elif "baseline.no-sync.t1" in rates:
            ax.axhline(rates["baseline.no-sync.t1"], color="black", label="raw write, no sync")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks([1, 8, 32], labels=["1", "8", "32"])
        ax.set_xlabel("producer threads")
        ax.set_ylabel("submitted records/s (median)")
        ax.set_title(f"submit, {title}")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"actionqueue bench ({data['mode']}, {data['started_at']}): same run, same disk")
    fig.tight_layout()
    if not plotted:
        plt.close(fig)
        return "no submit workload ran: no chart"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
