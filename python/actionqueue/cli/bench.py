"""``actionqueue bench``: actionqueue next to the disk's limit and its peers, in one run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from actionqueue.bench.harness import run_and_report
from actionqueue.bench.registry import all_workloads, select
from actionqueue.bench.runner import BenchConfig
from actionqueue.bench.workload import FULL, QUICK

_MEMORY_FS = {"tmpfs", "ramfs"}


@click.command()
@click.option("--full", is_flag=True, help="Complete run: 10-25x more ops, 5 repetitions.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-results"),
    show_default=True,
    help="Directory for results.json, results.md and the PNG chart.",
)
@click.option(
    "--only",
    metavar="PATTERN",
    default=None,
    help="Run workloads whose name matches this regular expression (plus their baselines).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where databases and logs are written; its filesystem is what gets measured. "
    "Default: a temporary directory inside --out.",
)
@click.option("--repeats", type=click.IntRange(min=1), default=None, help="Override repetitions.")
@click.option("--no-chart", is_flag=True, help="Skip the PNG chart.")
@click.option(
    "--no-strace", is_flag=True, help="Do not count sync calls per op under strace afterwards."
)
@click.option("--list", "list_only", is_flag=True, help="List the workloads and exit.")
@click.option("-q", "--quiet", is_flag=True, help="No per-workload progress lines.")
def bench(
    full: bool,
    out_dir: Path,
    only: str | None,
    data_dir: Path | None,
    repeats: int | None,
    no_chart: bool,
    no_strace: bool,
    list_only: bool,
    quiet: bool,
) -> None:
    """Benchmark against raw write+fdatasync and the SQLite-based peers, at equal durability.

    The quick run takes about a minute or two; --full is the complete one.
    """
    try:
        chosen = select(all_workloads(), only)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if list_only:
        for w in chosen:
            click.echo(f"{w.name:45} {w.durability.value:16} {w.system.name}")
        return
    scale = FULL if full else QUICK
    if repeats is not None:
        scale = replace(scale, repeats=repeats)
    config = BenchConfig(
        scale=scale,
        mode="full" if full else "quick",
        only=only,
        data_dir=data_dir,
        count_syncs=not no_strace,
    )

    def progress(message: str) -> None:
        click.echo(message, err=True)

    try:
        artifacts = run_and_report(config, out_dir, None if quiet else progress, not no_chart)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    fstype = artifacts.data["machine"]["filesystem"]["mounts_type"]
    if fstype in _MEMORY_FS:
        click.echo(
            f"warning: the data directory is on {fstype}: fsync costs nothing there, so the "
            "durable numbers do not describe a disk (use --data-dir on a real filesystem)",
            err=True,
        )
    click.echo(artifacts.markdown_path.read_text())
    click.echo(f"wrote {artifacts.json_path} and {artifacts.markdown_path}", err=True)
    if artifacts.chart_path is not None:
        click.echo(f"wrote {artifacts.chart_path}", err=True)
    else:
        click.echo(f"chart: {artifacts.chart_note}", err=True)
