"""``bootstrap``: open a data directory and rebuild the state from snapshot + WAL tail.

Layout (created owner-only, ``0700``, when missing)::

    DATA/
      wal/          segments and the LOCK file
      snapshots/    snapshot-<sequence>.aqs

Steps: open the WAL writer (takes the lock, cuts a torn tail left by a crash), load the newest
valid snapshot no newer than the log (invalid ones are skipped, with their reason in the
report), replay the log after it one atomic record at a time. Startup cost is the snapshot load
plus the tail, not the whole history. If the log no longer covers the gap between the usable
state and its end (segments deleted by a checkpoint after a snapshot that is now invalid),
``RecoveryError`` names the missing events.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from actionqueue import _core as _rs
from actionqueue.core._validate import U32_MAX, check_bool, check_int
from actionqueue.storage.mutation import (
    DEFAULT_KEEP_SNAPSHOTS,
    DEFAULT_SNAPSHOT_EVERY,
    StorageMutationAuthority,
)
from actionqueue.storage.snapshot import DEFAULT_MAX_SNAPSHOT_SIZE
from actionqueue.storage.wal.fs_writer import (
    DEFAULT_MAX_RECORD_SIZE,
    DEFAULT_PREALLOCATE,
    DEFAULT_SEGMENT_SIZE,
    U64_MAX,
    check_sync_interval,
)
from actionqueue.storage.wal.fs_writer import RecoveryReport as WalRecoveryReport

__all__ = ["RecoveryReport", "SkippedSnapshot", "bootstrap"]


@dataclass(frozen=True, slots=True)
class SkippedSnapshot:
    """A snapshot recovery passed over, and why (corrupt, truncated, newer than the log...)."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What :func:`bootstrap` found and did.

    Attributes:
        data_dir: the data directory.
        snapshot_path / snapshot_sequence: the snapshot the state was loaded from (``None``:
            the whole log was replayed).
        snapshots_skipped: snapshots passed over, newest first, with the reason.
        records_replayed / events_replayed: the WAL tail replayed after the snapshot.
        wal: what opening the WAL did (crash-tail truncation: ``wal.truncated``,
            ``wal.segment``, ``wal.bytes_dropped``...).
        snapshot_load_ms / replay_ms / duration_ms: where the time went.
        final_sequence: the latest sequence after recovery.
        digest: the state digest when requested (``digest=True``), else ``None``.
    """

    data_dir: str
    snapshot_path: str | None
    snapshot_sequence: int | None
    snapshots_skipped: tuple[SkippedSnapshot, ...]
    records_replayed: int
    events_replayed: int
    wal: WalRecoveryReport
    snapshot_load_ms: int
    replay_ms: int
    duration_ms: int
    final_sequence: int
    digest: str | None

    @property
    def tail_truncated_bytes(self) -> int:
        """Bytes of a torn WAL tail cut off at open (0 when the log ended cleanly)."""
        return self.wal.bytes_dropped if self.wal.truncated else 0

    @classmethod
    def _from_core(cls, d: dict[str, Any]) -> RecoveryReport:
        wal = dict(d["wal"])
        wal["removed_files"] = tuple(wal["removed_files"])
        snap = d["snapshot"]
        return cls(
            data_dir=d["data_dir"],
            snapshot_path=None if snap is None else snap[0],
            snapshot_sequence=None if snap is None else snap[1],
            snapshots_skipped=tuple(SkippedSnapshot(p, r) for p, r in d["snapshots_skipped"]),
            records_replayed=d["records_replayed"],
            events_replayed=d["events_replayed"],
            wal=WalRecoveryReport(**wal),
            snapshot_load_ms=d["snapshot_load_ms"],
            replay_ms=d["replay_ms"],
            duration_ms=d["duration_ms"],
            final_sequence=d["final_sequence"],
            digest=d["digest"],
        )


def bootstrap(
    data_dir: str | os.PathLike[str],
    *,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    max_record_size: int = DEFAULT_MAX_RECORD_SIZE,
    preallocate: int = DEFAULT_PREALLOCATE,
    sync_interval: float | None = None,
    snapshot_every: int | None = DEFAULT_SNAPSHOT_EVERY,
    keep_snapshots: int = DEFAULT_KEEP_SNAPSHOTS,
    snapshot_on_close: bool = True,
    max_snapshot_size: int = DEFAULT_MAX_SNAPSHOT_SIZE,
    digest: bool = False,
) -> tuple[StorageMutationAuthority, RecoveryReport]:
    """Opens ``data_dir`` (created if missing) and returns ``(authority, report)``.

    Args:
        segment_size / max_record_size / preallocate: WAL settings (``docs/FORMAT.md``).
        sync_interval: seconds between background syncs of Deferred records (``None``: only
            Immediate commits, ``flush()`` and ``close()`` sync).
        snapshot_every: take a snapshot after this many events (``0``/``None``: only on
            request and at close).
        keep_snapshots: snapshots kept; WAL segments are deleted only when wholly before the
            oldest kept one, so each kept snapshot remains a usable fallback.
        snapshot_on_close: snapshot at a clean close when anything changed since the last.
        max_snapshot_size: largest snapshot body read (a larger one is skipped, with its
            reason in the report). The authority keeps no snapshot above it: one that comes
            out larger is deleted again and reported (``SnapshotError``, and
            ``stats().last_snapshot_error`` for automatic ones), and no log segment is
            deleted behind it — raise the limit to snapshot a state that large.
        digest: compute the state digest for the report (costs a pass over the state).
    """
    core, report = _rs.bootstrap(
        os.fspath(data_dir),
        segment_size=check_int(segment_size, "segment_size", minimum=0, maximum=U64_MAX),
        max_record_size=check_int(max_record_size, "max_record_size", minimum=0, maximum=U64_MAX),
        preallocate=check_int(preallocate, "preallocate", minimum=0, maximum=U64_MAX),
        sync_interval=check_sync_interval(sync_interval),
        snapshot_every=check_int(snapshot_every or 0, "snapshot_every", minimum=0, maximum=U64_MAX),
        keep_snapshots=check_int(keep_snapshots, "keep_snapshots", minimum=1, maximum=U32_MAX),
        snapshot_on_close=check_bool(snapshot_on_close, "snapshot_on_close"),
        max_snapshot_size=check_int(
            max_snapshot_size, "max_snapshot_size", minimum=0, maximum=U64_MAX
        ),
        digest=check_bool(digest, "digest"),
    )
    r = RecoveryReport._from_core(report)
    return StorageMutationAuthority._wrap(core, r), r
