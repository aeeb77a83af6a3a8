"""``snapshot`` and ``compact``: take a snapshot now; snapshot + checkpoint + retention.

Both take the directory lock (they write), so they refuse while a queue has it open — a
running queue snapshots by itself (``snapshot_every``) and at a clean close.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from datetime import datetime, timezone
from typing import Any

import click

from actionqueue.cli.context import CliContext, pass_cli
from actionqueue.cli.errors import CliError
from actionqueue.cli.render import duration, echo_json, fmt_ms, plain
from actionqueue.cli.store import open_authority
from actionqueue.core._validate import I64_MAX

__all__ = ["compact", "parse_before", "snapshot"]

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def _dir_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):  # deleted meanwhile
                total += os.path.getsize(os.path.join(root, f))
    return total


def parse_before(text: str, now: int) -> int:
    """``7d`` / ``12h`` / ``30m`` / ``90s`` / ``500ms`` ago, or an ISO 8601 time (UTC unless it
    names a zone), as epoch milliseconds; a time before the epoch is 0 (nothing is older)."""
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h|d|w)\s*", text)
    if m:
        # Nothing in the log is older than the epoch: an age reaching past it prunes nothing
        # (it was refused with "before must be >= 0", naming no option).
        return max(0, now - int(m.group(1)) * _UNITS[m.group(2)])
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"--prune-before: cannot read {text!r}",
            "give an age such as 7d, 12h, 30m, or an ISO time such as 2026-01-31T00:00:00Z",
            "usage",
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return max(0, int(dt.timestamp() * 1000))


def _snapshot_dict(info: Any) -> dict[str, Any]:
    return {
        "path": info.path,
        "sequence": info.sequence,
        "bytes": info.bytes,
        "millis": info.millis,
        "segments_removed": info.segments_removed,
        "snapshots_removed": info.snapshots_removed,
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_cli
def snapshot(cli: CliContext, as_json: bool) -> None:
    """Take a snapshot now (faster next open), then checkpoint old WAL segments."""
    with open_authority(cli.data_dir, max_record_size=cli.max_record_size) as auth:
        info = auth.snapshot()
    if info is None:  # pragma: no cover - bootstrap always configures a snapshot directory
        raise CliError("this data directory has no snapshot directory", None, "error")
    if as_json:
        echo_json(_snapshot_dict(info))
        return
    cli.console.print(
        plain(
            f"snapshot at sequence {info.sequence}: {info.path} ({info.bytes} bytes, "
            f"{info.millis} ms); removed {info.segments_removed} WAL segment(s) and "
            f"{info.snapshots_removed} old snapshot(s)"
        )
    )


@click.command()
@click.option(
    "--prune-before",
    metavar="AGE|TIME",
    help="First forget terminal runs last changed before this (7d, 12h, or an ISO time).",
)
@click.option(
    "--keep",
    type=click.IntRange(min=0, max=I64_MAX),
    default=None,
    help="First forget all but the N most recently finished terminal runs.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_cli
def compact(cli: CliContext, prune_before: str | None, keep: int | None, as_json: bool) -> None:
    """Retention (optional) + snapshot + checkpoint: keeps disk and memory flat.

    Pruning forgets terminal runs (Completed, Failed, Canceled) and finished tasks left
    without runs; unfinished work is never touched. Then a snapshot is taken and WAL segments
    wholly before the oldest kept snapshot are deleted.
    """
    before_bytes = _dir_bytes(cli.data_dir)
    now = time.time_ns() // 1_000_000
    pruned: list[dict[str, Any]] = []
    with open_authority(cli.data_dir, max_record_size=cli.max_record_size) as auth:
        if prune_before is not None:
            cutoff = parse_before(prune_before, now)
            got = auth.prune(cutoff, "immediate", timestamp=now)
            pruned.append(
                {
                    "before": cutoff,
                    "runs_removed": got.runs_removed,
                    "tasks_removed": got.tasks_removed,
                }
            )
        if keep is not None:
            k = auth.prune_keep_newest(keep, "immediate", timestamp=now)
            if k is not None:
                pruned.append(
                    {
                        "before": k.before,
                        "runs_removed": k.runs_removed,
                        "tasks_removed": k.tasks_removed,
                    }
                )
        info = auth.snapshot()
    after_bytes = _dir_bytes(cli.data_dir)
    result = {
        "pruned": pruned,
        "snapshot": None if info is None else _snapshot_dict(info),
        "bytes_before": before_bytes,
        "bytes_after": after_bytes,
    }
    if as_json:
        echo_json(result)
        return
    con = cli.console
    for p in pruned:
        con.print(
            f"pruned {p['runs_removed']} terminal run(s) and {p['tasks_removed']} finished "
            f"task(s) last changed before {fmt_ms(p['before'])}",
            markup=False,
        )
    if info is not None:
        con.print(
            f"snapshot at sequence {info.sequence} ({info.bytes} bytes, {duration(info.millis)}); "
            f"removed {info.segments_removed} WAL segment(s), {info.snapshots_removed} old "
            "snapshot(s)",
            markup=False,
        )
    con.print(f"data directory: {before_bytes:,} -> {after_bytes:,} bytes", markup=False)
