"""One call that runs the benchmark and writes every artefact: JSON, markdown, chart."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actionqueue.bench import report
from actionqueue.bench.chart import write_chart
from actionqueue.bench.runner import BenchConfig, Progress, run_bench


@dataclass(frozen=True, slots=True)
class Artifacts:
    """Where the results went, and the data written there."""

    json_path: Path
    markdown_path: Path
    chart_path: Path | None
    #: Why there is no chart, when there is none.
    chart_note: str | None
    data: dict[str, Any]


def run_and_report(
    config: BenchConfig, out_dir: Path, progress: Progress | None = None, chart: bool = True
) -> Artifacts:
    """Run the selected workloads and write ``results.json``, ``results.md`` and the PNG."""
    run = run_bench(config, out_dir, progress)
    json_path, md_path, data = report.write(run, out_dir)
    chart_path: Path | None = None
    note: str | None = "disabled (--no-chart)"
    if chart:
        candidate = out_dir / "throughput_vs_threads.png"
        note = write_chart(data, candidate)
        chart_path = candidate if note is None else None
    return Artifacts(json_path, md_path, chart_path, note, data)
