"""``wal verify``, ``wal dump`` and ``wal repair``.

``verify`` and ``dump`` only read (no lock; safe while a queue runs). ``repair`` takes the
directory lock and cuts the log only after showing what it would drop and being told yes.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from typing import Any

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from actionqueue.cli.context import CliContext, pass_cli
from actionqueue.cli.errors import EXIT, CliError
from actionqueue.cli.render import event_to_dict, plain, printable
from actionqueue.cli.store import (
    READ_ATTEMPTS,
    check_data_dir,
    set_aside_newer_snapshots,
    snapshot_dir,
    vanished,
    wal_dir,
)
from actionqueue.errors import DataDirLockedError, RecordTooLargeError, WalCorruptionError
from actionqueue.storage.snapshot import list_snapshots
from actionqueue.storage.wal.fs_reader import WalFsReader
from actionqueue.storage.wal.repair import VerifyReport
from actionqueue.storage.wal.repair import repair as wal_repair
from actionqueue.storage.wal.repair import verify as wal_verify

__all__ = ["wal"]

#: Logs at least this big get a progress bar (when stderr is a terminal).
PROGRESS_MIN_BYTES = 32 * 1024 * 1024


@click.group()
def wal() -> None:
    """Check, dump and repair the write-ahead log."""


def _segments(path: str) -> list[tuple[str, int]]:
    names = sorted(n for n in os.listdir(path) if n.endswith(".wal"))
    return [(n, os.path.getsize(os.path.join(path, n))) for n in names]


def _verify_once(path: str, progress: bool | None, max_record_size: int) -> VerifyReport:
    segs = _segments(path)
    total = sum(s for _, s in segs)
    show = (
        progress if progress is not None else (total >= PROGRESS_MIN_BYTES and sys.stderr.isatty())
    )
    if show and segs:
        _read_with_progress(path, total, segs, max_record_size)
    return wal_verify(path, max_record_size=max_record_size)


def _verify(path: str, progress: bool | None, max_record_size: int) -> VerifyReport:
    """:func:`_verify_once`, again from the start when a live queue's checkpoint deleted a
    segment being read (the log that is left is what gets verified)."""
    for _ in range(READ_ATTEMPTS - 1):
        try:
            return _verify_once(path, progress, max_record_size)
        except OSError as exc:
            if not vanished(exc):
                raise
    return _verify_once(path, progress, max_record_size)


def _read_with_progress(
    path: str, total: int, segs: list[tuple[str, int]], max_record_size: int
) -> None:
    """Reads every record once with a progress bar (checksums are checked while reading);
    ``verify`` below then gives the authoritative report."""
    before = {}
    acc = 0
    for name, size in segs:
        before[name] = acc
        acc += size
    with Progress(
        TextColumn("verifying"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=None,
        transient=True,
    ) as progress:
        bar = progress.add_task("wal", total=total)
        reader = WalFsReader(path, max_record_size=max_record_size)
        while True:
            batch = reader.read_batch(65_536)
            if not batch:
                break
            _, seg, off, _ = batch[-1]
            progress.update(bar, completed=before.get(seg, 0) + off)
        progress.update(bar, completed=total)


@wal.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar (default: for logs over 32 MiB when stderr is a terminal).",
)
@pass_cli
def verify(cli: CliContext, as_json: bool, progress: bool | None) -> None:
    """Check every record (checksums, sequences, decoding). Exit code: 0 sound (a crash tail,
    which the next open cuts, is reported but is not an error), 5 corrupt."""
    check_data_dir(cli.data_dir)
    path = wal_dir(cli.data_dir)
    try:
        report = _verify(path, progress, cli.max_record_size)
    except RecordTooLargeError as exc:
        # An intact record over this reader's limit: not corruption (the log was written
        # with a larger max_record_size). Reported by the group with its hint unless --json.
        seg = exc.segment
        if not as_json or seg is None:
            raise
        click.echo(
            json.dumps(
                {
                    "ok": False,
                    "error": str(exc),
                    "too_large": True,
                    "segment": os.path.basename(seg),
                    "offset": exc.offset,
                    "sequence": exc.sequence,
                    "size": exc.size,
                    "max_record_size": exc.max_size,
                },
                indent=2,
            )
        )
        sys.exit(EXIT["usage"])
    except WalCorruptionError as exc:
        seg = getattr(exc, "segment", None)
        where = {
            "segment": os.path.basename(seg) if isinstance(seg, str) else seg,
            "offset": getattr(exc, "offset", None),
            "reason": getattr(exc, "reason", None),
        }
        if as_json:
            click.echo(json.dumps({"ok": False, "error": str(exc), **where}, indent=2))
        else:
            click.echo(f"CORRUPT: {printable(str(exc))}", err=True)
            click.echo(
                "hint: `actionqueue wal repair` shows what cutting the log there would drop",
                err=True,
            )
        sys.exit(5)
    data = asdict(report)
    data["ok"] = True
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    con = cli.console
    con.print(
        f"[green]OK[/green]: {report.records} records, {report.events} events "
        f"(sequences {report.first_sequence}..{report.last_sequence}) in {report.segments} "
        f"segment(s), {report.bytes} bytes"
    )
    if report.torn_tail is not None:
        seg, off, reason = report.torn_tail
        con.print(
            Text.assemble(
                ("crash tail", "yellow"),
                plain(
                    f" at {seg} offset {off} ({reason}): the normal result of a crash (or a "
                    "record being written right now); the next open cuts it"
                ),
            )
        )


@wal.command()
@click.option("--from", "start", type=click.IntRange(min=0), default=0, help="First sequence.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N events.")
@click.option(
    "--bytes",
    "encoding",
    type=click.Choice(["base64", "hex"]),
    default="base64",
    show_default=True,
    help="How payloads and outputs are written.",
)
@pass_cli
def dump(cli: CliContext, start: int, limit: int | None, encoding: str) -> None:
    """Print every event as one JSON object per line: sequence, segment, offset, kind and the
    event's fields (ids as UUID text, times in ms since the epoch, bytes as base64 or hex)."""
    check_data_dir(cli.data_dir)
    path = wal_dir(cli.data_dir)
    reader: WalFsReader | None = None
    n = 0
    out = sys.stdout
    moved = 0
    while limit is None or n < limit:
        try:
            if reader is None:
                reader = WalFsReader(path, start=start, max_record_size=cli.max_record_size)
            batch = reader.read_batch(4096)
        except OSError as exc:
            # A live queue's checkpoint deleted the segment being read: go on after the last
            # event printed (from the oldest segment left, if that one was deleted too).
            moved += 1
            if not vanished(exc) or moved >= READ_ATTEMPTS:
                raise
            reader = None
            continue
        if not batch:
            break
        for seq, seg, off, event in batch:
            start = seq + 1
            out.write(json.dumps(event_to_dict(seq, seg, off, event, encoding)) + "\n")
            n += 1
            if limit is not None and n >= limit:
                break
    tail = None if reader is None else reader.torn_tail
    if tail is not None and (limit is None or n < limit):
        click.echo(
            printable(
                f"note: the log ends in a crash tail at {tail.get('segment')} offset "
                f"{tail.get('offset')} ({tail.get('reason')})"
            ),
            err=True,
        )


def _interactive() -> bool:
    """Whether a person can answer a prompt (patched in tests)."""
    return sys.stdin.isatty()


def _repair_lines(r: Any) -> list[str]:
    lines = [
        f"first bad spot: {r.segment} offset {r.offset}: {r.reason}",
        f"last good sequence: {r.last_good_sequence}",
    ]
    if r.crash_tail:
        lines.append("this is a crash tail: opening the queue cuts it anyway")
    lines.append(
        f"cutting there drops {r.records_after} intact record(s) ({r.events_after} events, "
        f"{r.valid_bytes_after} valid bytes) and {r.bytes_after} bytes in all"
    )
    if r.later_segments:
        lines.append(f"later segments removed: {', '.join(r.later_segments)}")
    return lines


@wal.command()
@click.option("--yes", "-y", is_flag=True, help="Cut without asking.")
@click.option("--dry-run", is_flag=True, help="Only show what would be dropped.")
@pass_cli
def repair(cli: CliContext, yes: bool, dry_run: bool) -> None:
    """Cut the log at its first corruption, after showing what that drops.

    Opening a queue cuts a crash tail by itself; corruption anywhere else stops it with an
    error naming segment and offset. This is the operator's tool for that case. It takes the
    directory lock, asks for confirmation (or needs --yes) and refuses without a terminal.
    A record larger than --max-record-size is intact data, never a place to cut: repair
    refuses and names the size to pass.
    """
    check_data_dir(cli.data_dir)
    path = wal_dir(cli.data_dir)
    found = wal_repair(
        path, truncate_at_first_corruption=False, max_record_size=cli.max_record_size
    )
    con = cli.console
    if found.segment is None:
        con.print("[green]the log is sound[/green]: nothing to repair")
        return
    for line in _repair_lines(found):
        con.print(plain(line))  # segment names and reasons
    if dry_run:
        return
    if not yes:
        if not _interactive():
            raise CliError(
                "not repairing without confirmation",
                "run it in a terminal to be asked, or pass --yes",
                "aborted",
            )
        if not click.confirm("cut the log here?", default=False):
            raise CliError("nothing changed", None, "aborted")
    done = wal_repair(path, truncate_at_first_corruption=True, max_record_size=cli.max_record_size)
    if not done.truncated:
        raise CliError("the log was not cut (it changed meanwhile?)", "run it again", "error")
    con.print(
        f"[green]repaired[/green]: the log now ends at sequence {done.last_good_sequence}; "
        f"{done.records_after} record(s) dropped"
    )
    _set_aside_snapshots(cli)


def _set_aside_snapshots(cli: CliContext) -> None:
    """After a cut, the data directory's snapshots newer than the log describe the history
    just dropped: renamed to ``<name>.stale`` now, as the next open would (loading one would
    bring that history back)."""
    con = cli.console
    try:
        last, moved = set_aside_newer_snapshots(cli.data_dir, max_record_size=cli.max_record_size)
    except DataDirLockedError:
        con.print(
            "a queue opened the directory meanwhile; opening sets aside the snapshots newer "
            "than the log itself"
        )
        return
    for path, seq, to in moved:
        con.print(
            plain(
                f"snapshot {os.path.basename(path)} (sequence {seq}) is newer than the log "
                f"now: renamed to {os.path.basename(to)} so that it is never loaded"
            )
        )
    if last == 0:
        snaps = snapshot_dir(cli.data_dir)
        if os.path.isdir(snaps) and list_snapshots(snaps):
            con.print(
                plain(
                    f"the log is now empty but {snaps} holds snapshots: opening refuses until "
                    "the WAL is restored, or the snapshots are moved away to start an empty "
                    "queue"
                )
            )
