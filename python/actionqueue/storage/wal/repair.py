"""Check a WAL (:func:`verify`) and cut it at its first corruption (:func:`repair`).

Opening a writer cuts only a crash tail; corruption anywhere else stops the open with
``WalCorruptionError``. :func:`repair` is the operator's tool for that case: it reports exactly
what lies after the first bad spot (intact records, events, bytes, later segments) and drops it
only with ``truncate_at_first_corruption=True``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from actionqueue import _core
from actionqueue.storage.wal.fs_writer import DEFAULT_MAX_RECORD_SIZE

__all__ = ["RepairReport", "VerifyReport", "repair", "verify"]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    segments: int
    records: int
    events: int
    bytes: int
    first_sequence: int
    last_sequence: int
    torn_tail: tuple[str, int, str] | None
    """``(segment, offset, reason)`` of a crash tail the next open would cut off."""


@dataclass(frozen=True, slots=True)
class RepairReport:
    segment: str | None
    """Segment of the first bad spot (``None``: the log is sound)."""
    offset: int
    reason: str | None
    crash_tail: bool
    """True when the bad spot is a crash tail (opening would have cut it anyway)."""
    last_good_sequence: int
    records_after: int
    """Intact records after the bad spot: what a cut drops."""
    events_after: int
    valid_bytes_after: int
    bytes_after: int
    later_segments: tuple[str, ...]
    truncated: bool


def verify(
    path: str | os.PathLike[str], *, max_record_size: int = DEFAULT_MAX_RECORD_SIZE
) -> VerifyReport:
    """Reads every record (checksums, sequences, decoding); raises ``WalCorruptionError`` on
    corruption, reports a crash tail."""
    return VerifyReport(**_core.wal_verify(os.fspath(path), max_record_size))


def repair(
    path: str | os.PathLike[str],
    *,
    truncate_at_first_corruption: bool = False,
    max_record_size: int = DEFAULT_MAX_RECORD_SIZE,
) -> RepairReport:
    """Finds the first bad spot of the WAL in ``path`` and reports what lies after it; cuts
    the log there only when ``truncate_at_first_corruption`` is true. Takes the directory lock
    (``DataDirLockedError`` while a writer has it open)."""
    r = _core.wal_repair(os.fspath(path), truncate_at_first_corruption, max_record_size)
    r["later_segments"] = tuple(r["later_segments"])
    return RepairReport(**r)
