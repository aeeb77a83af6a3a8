"""The write-ahead log: a directory of checksummed segment files (format: ``docs/FORMAT.md``).

- :class:`~actionqueue.storage.wal.fs_writer.WalFsWriter` appends events (one atomic record per
  call) with Immediate or Deferred durability and group commit across threads;
- :class:`~actionqueue.storage.wal.fs_reader.WalFsReader` streams them back with their sequence,
  segment and offset;
- :func:`~actionqueue.storage.wal.repair.verify` and
  :func:`~actionqueue.storage.wal.repair.repair` check a log and, on request, cut it at its
  first corruption.
"""

from __future__ import annotations

from actionqueue.storage.wal.fs_reader import WalEntry, WalFsReader
from actionqueue.storage.wal.fs_writer import (
    DEFAULT_MAX_RECORD_SIZE,
    DEFAULT_PREALLOCATE,
    DEFAULT_SEGMENT_SIZE,
    MAX_SEQUENCE,
    RecoveryReport,
    WalFsWriter,
    WalStats,
)
from actionqueue.storage.wal.lock import hold_lock
from actionqueue.storage.wal.repair import RepairReport, VerifyReport, repair, verify

__all__ = [
    "DEFAULT_MAX_RECORD_SIZE",
    "DEFAULT_PREALLOCATE",
    "DEFAULT_SEGMENT_SIZE",
    "MAX_SEQUENCE",
    "RecoveryReport",
    "RepairReport",
    "VerifyReport",
    "WalEntry",
    "WalFsReader",
    "WalFsWriter",
    "WalStats",
    "hold_lock",
    "repair",
    "verify",
]
