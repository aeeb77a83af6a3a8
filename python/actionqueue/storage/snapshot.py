"""Snapshots: compact, checksummed images of the whole state at a WAL sequence.

A snapshot only speeds up recovery; the WAL stays the source of truth. Files are
``snapshot-<20-digit sequence>.aqs`` in ``<data dir>/snapshots/``, written atomically (temp
file, fsync, rename, directory fsync). Recovery loads the newest valid one and replays the log
after it; an invalid one is skipped with its reason in the recovery report.

- :func:`take` writes a snapshot of an authority now (then checkpoints);
- :func:`list_snapshots` lists the files of a directory, newest first;
- :func:`inspect` checks one file (header, checksums, decoding) and says what it holds;
- :func:`load` loads one into a :class:`~actionqueue.storage.recovery.reducer.ReplayReducer`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from actionqueue import _core as _rs

if TYPE_CHECKING:
    from actionqueue.storage.mutation import StorageMutationAuthority
    from actionqueue.storage.recovery.reducer import ReplayReducer

__all__ = [
    "DEFAULT_MAX_SNAPSHOT_SIZE",
    "SnapshotFile",
    "SnapshotInfo",
    "SnapshotInspection",
    "inspect",
    "list_snapshots",
    "load",
    "set_aside",
    "take",
]

#: Largest snapshot body read by default (8 GiB).
DEFAULT_MAX_SNAPSHOT_SIZE = 8 << 30


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A snapshot the authority wrote: where, at which sequence, its size and write time
    (``locked_micros`` of it held the authority's lock: the capture; the file is written
    after), and what the checkpoint after it deleted."""

    path: str
    sequence: int
    bytes: int
    millis: int
    segments_removed: int
    snapshots_removed: int
    locked_micros: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    """A snapshot file and the sequence its name carries."""

    path: str
    sequence: int


@dataclass(frozen=True, slots=True)
class SnapshotInspection:
    """What :func:`inspect` found. ``sequence``/``body_len``/``version`` come from the header
    (``None`` when it is unreadable); ``log_id`` is the ``wal_id`` of the log the snapshot was
    taken from (``None``: bound to no log — written outside a queue, or before format 4; a
    queue never loads a snapshot naming another log); ``tasks``/``runs`` only when the whole
    file is valid."""

    path: str
    file_size: int
    sequence: int | None
    body_len: int | None
    version: int | None
    log_id: int | None
    valid: bool
    error: str | None
    tasks: int | None
    runs: int | None


def take(authority: StorageMutationAuthority) -> SnapshotInfo | None:
    """Snapshots ``authority`` now (``None`` when it has no snapshot directory)."""
    return authority.snapshot()


def list_snapshots(directory: str | os.PathLike[str]) -> list[SnapshotFile]:
    """Snapshot files in ``directory``, newest first (other files are ignored)."""
    return [SnapshotFile(p, s) for p, s in _rs.snapshot_list(os.fspath(directory))]


def set_aside(snapshot: SnapshotFile) -> str:
    """Renames a snapshot that must never be loaded again (it describes a history the log no
    longer has) to ``<name>.stale`` (``.stale.1``, ... if taken), as opening a queue does;
    returns the new path. Kept, not deleted: :func:`list_snapshots` ignores it."""
    return _rs.snapshot_set_aside(os.fspath(snapshot.path), snapshot.sequence)


def inspect(
    path: str | os.PathLike[str], *, max_size: int = DEFAULT_MAX_SNAPSHOT_SIZE
) -> SnapshotInspection:
    """Verifies one snapshot file without keeping its state (never raises for a bad file;
    ``valid`` and ``error`` say what is wrong)."""
    return SnapshotInspection(**_rs.snapshot_inspect(os.fspath(path), max_size))


def load(
    path: str | os.PathLike[str], *, max_size: int = DEFAULT_MAX_SNAPSHOT_SIZE
) -> ReplayReducer:
    """Loads a snapshot into a standalone reducer (raises ``SnapshotError`` when invalid)."""
    from actionqueue.storage.recovery.reducer import ReplayReducer

    return ReplayReducer._wrap(_rs.Projection.load_snapshot(os.fspath(path), max_size))
