"""Durability levels: what a workload's acknowledgement promises, stated explicitly.

Every workload carries one of these so that a table never compares an fsync-bound system with
one that only writes to the page cache. Comparisons between systems are made only within the
same :class:`DurabilityClass`.
"""

from __future__ import annotations

import enum


class DurabilityClass(enum.Enum):
    """What survives a power loss right after an operation returned."""

    #: The acknowledged operation is on stable storage (fsync/fdatasync done before return).
    DURABLE = "durable"
    #: The acknowledged operation is in the OS page cache: survives a process crash, not a
    #: power loss or kernel crash.
    BUFFERED = "buffered"
    #: Not a promise per operation: a physical ceiling (e.g. one fdatasync per K records).
    CEILING = "ceiling"
    #: Reads and other work that makes no durability promise (replay, recovery).
    NONE = "n/a"


class Durability(enum.Enum):
    """Durability level of one workload; the value is the label printed in tables."""

    FSYNC_PER_OP = "fsync-per-op"
    FSYNC_PER_BATCH = "fsync-per-batch"
    GROUP_COMMIT = "group-commit"
    FSYNC_EVERY_K = "fsync-every-K"
    OS_BUFFERED = "os-buffered"
    NOT_APPLICABLE = "n/a"

    @property
    def cls(self) -> DurabilityClass:
        """The class used to decide which systems may be compared."""
        return _CLASS[self]

    @property
    def meaning(self) -> str:
        """One line saying what an acknowledgement means at this level."""
        return _MEANING[self]


_CLASS = {
    Durability.FSYNC_PER_OP: DurabilityClass.DURABLE,
    Durability.FSYNC_PER_BATCH: DurabilityClass.DURABLE,
    Durability.GROUP_COMMIT: DurabilityClass.DURABLE,
    Durability.FSYNC_EVERY_K: DurabilityClass.CEILING,
    Durability.OS_BUFFERED: DurabilityClass.BUFFERED,
    Durability.NOT_APPLICABLE: DurabilityClass.NONE,
}

_MEANING = {
    Durability.FSYNC_PER_OP: "each acknowledged op was fsynced before it returned",
    Durability.FSYNC_PER_BATCH: "each acknowledged batch was fsynced (once) before it returned",
    Durability.GROUP_COMMIT: (
        "each acknowledged op is on stable storage; concurrent ops share one fsync"
    ),
    Durability.FSYNC_EVERY_K: (
        "one fdatasync per K records: the group-commit ceiling, not a per-op promise"
    ),
    Durability.OS_BUFFERED: (
        "acknowledged ops are in the OS page cache: survive a process crash, not a power loss"
    ),
    Durability.NOT_APPLICABLE: "no write is acknowledged (reads, replay)",
}


#: SQLite's documented meaning of ``PRAGMA synchronous`` in WAL mode; every SQLite-based
#: peer's durability follows from it, so the report prints it once.
SQLITE_WAL_SYNC_NOTE = (
    "SQLite's PRAGMA synchronous documentation: in WAL mode, FULL syncs the WAL after every "
    "transaction commit; NORMAL syncs only at checkpoints, so committed transactions may roll "
    "back after a power loss (not after an application crash); OFF never syncs"
)
