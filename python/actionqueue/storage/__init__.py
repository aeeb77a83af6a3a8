"""Durable storage (SPEC §5, §7).

- :mod:`actionqueue.storage.wal` — the write-ahead log (``WalFsWriter``, ``WalFsReader``,
  repair);
- :mod:`actionqueue.storage.mutation` — ``StorageMutationAuthority``, the one write path:
  validate (dry-run the reducer) → append → durability (group commit) → apply;
- :mod:`actionqueue.storage.recovery` — ``ReplayReducer`` (the projection) and ``bootstrap``
  (snapshot + WAL tail → authority);
- :mod:`actionqueue.storage.snapshot` — take, list, inspect and load snapshots.
"""

from __future__ import annotations

from actionqueue.storage.mutation import (
    AppliedOutcome,
    AuthorityStats,
    PruneOutcome,
    StorageMutationAuthority,
    TaskRecord,
)
from actionqueue.storage.recovery import RecoveryReport, ReplayReducer, bootstrap
from actionqueue.storage.snapshot import SnapshotInfo

__all__ = [
    "AppliedOutcome",
    "AuthorityStats",
    "PruneOutcome",
    "RecoveryReport",
    "ReplayReducer",
    "SnapshotInfo",
    "StorageMutationAuthority",
    "TaskRecord",
    "bootstrap",
]
