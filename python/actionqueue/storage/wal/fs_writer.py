"""``WalFsWriter``: the single writer of a WAL directory.

Example::

    >>> import tempfile
    >>> from actionqueue.storage.wal.fs_writer import WalFsWriter
    >>> from actionqueue.storage.wal.fs_reader import WalFsReader
    >>> d = tempfile.mkdtemp()
    >>> with WalFsWriter(d) as wal:
    ...     wal.append([(10, 1_700_000_000_000)], "immediate")  # EnginePause, durable on return
    ...     wal.append([(11, 1_700_000_000_001), (10, 1_700_000_000_002)], "deferred")  # atomic
    (1, 1)
    (2, 3)
    >>> [(e.sequence, e.event) for e in WalFsReader(d)]
    [(1, (10, 1700000000000)), (2, (11, 1700000000001)), (3, (10, 1700000000002))]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from actionqueue import _core
from actionqueue.core._validate import check_int, wrong_type
from actionqueue.errors import ValidationError, WrongTypeError

__all__ = [
    "DEFAULT_MAX_RECORD_SIZE",
    "DEFAULT_PREALLOCATE",
    "DEFAULT_SEGMENT_SIZE",
    "MAX_SEQUENCE",
    "RecoveryReport",
    "WalFsWriter",
    "WalStats",
]

DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024
DEFAULT_PREALLOCATE = 4 * 1024 * 1024
DEFAULT_MAX_RECORD_SIZE: int = _core.DEFAULT_MAX_RECORD_SIZE
U64_MAX = 2**64 - 1
MAX_SEQUENCE = 2**64 - 2
"""The last sequence an event can get (``docs/FORMAT.md`` §4)."""

WireTuple = tuple[Any, ...]


class _HasToWire(Protocol):
    def to_wire(self) -> WireTuple: ...


class _Named(Protocol):
    @property
    def name(self) -> str: ...


Durability = str | _Named
"""``"immediate"`` / ``"deferred"`` (any case), or an enum member (e.g. ``DurabilityPolicy``)
whose ``name`` is one of those."""


_DURABILITY: dict[object, bool] = {
    "immediate": True,
    "IMMEDIATE": True,
    "Immediate": True,
    "deferred": False,
    "DEFERRED": False,
    "Deferred": False,
}


def _is_immediate(durability: Durability) -> bool:
    try:
        return _DURABILITY[durability]  # fast path: the usual strings, enum members seen before
    except (KeyError, TypeError):
        pass
    name = durability if isinstance(durability, str) else getattr(durability, "name", None)
    if not isinstance(name, str):
        raise WrongTypeError(
            f"durability: expected 'immediate', 'deferred' or a DurabilityPolicy, "
            f"got {type(durability).__name__}"
        )
    upper = name.upper()
    if upper in ("IMMEDIATE", "DEFERRED"):
        immediate = upper == "IMMEDIATE"
        if not isinstance(durability, str) and len(_DURABILITY) < 64:
            _DURABILITY[durability] = immediate  # enum members are hashable singletons
        return immediate
    raise ValidationError(f"durability: expected IMMEDIATE or DEFERRED, got {name!r}")


def _wire(event: WireTuple | _HasToWire) -> WireTuple:
    if isinstance(event, tuple):
        return event
    to_wire = getattr(event, "to_wire", None)
    if to_wire is None:
        raise WrongTypeError(
            f"event: expected a wire tuple or an object with to_wire(), got {type(event).__name__}"
        )
    wire = to_wire()
    if not isinstance(wire, tuple):
        raise WrongTypeError(
            f"event: {type(event).__name__}.to_wire() returned {type(wire).__name__}, "
            "expected a tuple"
        )
    return wire


def _batch(events: WireTuple | _HasToWire | Iterable[WireTuple | _HasToWire]) -> list[WireTuple]:
    # A single event (a wire tuple starts with its int tag, or a command object).
    if (isinstance(events, tuple) and events and isinstance(events[0], int)) or hasattr(
        events, "to_wire"
    ):
        return [_wire(events)]  # type: ignore[arg-type]
    if isinstance(events, (str, bytes)) or not isinstance(events, Iterable):
        raise WrongTypeError(
            f"events: expected an event or a list of events, got {type(events).__name__}"
        )
    return [_wire(e) for e in events]


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What opening the WAL found and repaired.

    ``truncated`` is true when a crash tail (a torn last record, or unsynced records lost in a
    power failure) was cut off: ``segment``/``offset`` say where, ``bytes_dropped`` how much,
    ``records_dropped``/``events_dropped`` how many intact-but-never-durable records went with
    it, ``reason`` why. ``last_sequence`` is the last sequence in the log after recovery.
    """

    truncated: bool
    segment: str | None
    offset: int
    bytes_dropped: int
    records_dropped: int
    events_dropped: int
    reason: str | None
    last_sequence: int
    removed_files: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WalStats:
    """Writer counters: records appended, events, record bytes, ``fdatasync`` calls."""

    appends: int
    events: int
    bytes: int
    syncs: int


def check_sync_interval(value: object) -> float | None:
    """``sync_interval`` as the core takes it: ``None`` or a number of seconds (the core
    refuses one that is not positive and finite, naming it)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise wrong_type("sync_interval", "a number of seconds or None", value)
    return float(value)


class WalFsWriter:
    """The single writer of the WAL directory ``path`` (created if missing, locked while open).

    ``append`` writes one atomic record per call. With Immediate durability it returns only
    once the record is on stable storage; concurrent Immediate appenders share ``fdatasync``
    calls (group commit) and the GIL is released while writing and waiting. Deferred appends
    return after the write and are synced by the next Immediate append, :meth:`flush`,
    :meth:`close`, or every ``sync_interval`` seconds when set.

    A second writer on the same directory (in this or another process) raises
    ``DataDirLockedError``. After a write or ``fdatasync`` error every call raises
    ``StorageFailedError`` naming the first cause, until the directory is reopened.
    """

    __slots__ = ("_core", "_path")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        max_record_size: int = DEFAULT_MAX_RECORD_SIZE,
        preallocate: int = DEFAULT_PREALLOCATE,
        sync_interval: float | None = None,
        start_sequence: int = 1,
    ) -> None:
        self._path = os.fspath(path)
        self._core = _core.WalWriter(
            self._path,
            segment_size=check_int(segment_size, "segment_size", minimum=0, maximum=U64_MAX),
            max_record_size=check_int(
                max_record_size, "max_record_size", minimum=0, maximum=U64_MAX
            ),
            preallocate=check_int(preallocate, "preallocate", minimum=0, maximum=U64_MAX),
            sync_interval=check_sync_interval(sync_interval),
            start_sequence=check_int(
                start_sequence, "start_sequence", minimum=1, maximum=MAX_SEQUENCE
            ),
        )

    @property
    def path(self) -> str:
        return self._path

    def append(
        self,
        events: WireTuple | _HasToWire | Iterable[WireTuple | _HasToWire],
        durability: Durability = "immediate",
        *,
        expected_sequence: int | None = None,
    ) -> tuple[int, int]:
        """Appends one event or an atomic batch as one record; returns ``(first, last)``
        sequences. ``expected_sequence``, when given, must be the next sequence
        (``SequenceError`` otherwise; nothing is written)."""
        if expected_sequence is not None:
            check_int(expected_sequence, "expected_sequence", minimum=0, maximum=U64_MAX)
        return self._core.append(_batch(events), _is_immediate(durability), expected_sequence)

    def append_many(
        self,
        batches: Sequence[Iterable[WireTuple | _HasToWire]],
        durability: Durability = "immediate",
    ) -> int:
        """Appends each batch as its own atomic record, crossing into Rust once; with
        Immediate durability, one sync covers them all. Returns the last sequence.

        Every batch is converted, validated and encoded before anything is written: a wrong
        type, an empty batch, a record too large, or running out of sequences raises with
        nothing written. An I/O error part-way may leave the earlier batches written (each
        whole), under the usual failure rules; :attr:`next_sequence` says how far it got."""
        return self._core.append_many(
            [[_wire(e) for e in b] for b in batches], _is_immediate(durability)
        )

    def flush(self) -> None:
        """Makes every appended record durable."""
        self._core.flush()

    def close(self) -> None:
        """Syncs, seals the log and releases the directory lock. Idempotent."""
        self._core.close()

    @property
    def next_sequence(self) -> int:
        return self._core.next_sequence

    @property
    def synced_sequence(self) -> int:
        """Every event with a sequence up to this one is on stable storage."""
        return self._core.synced_sequence

    def stats(self) -> WalStats:
        return WalStats(**self._core.stats())

    @property
    def recovery_report(self) -> RecoveryReport:
        r = self._core.recovery_report()
        r["removed_files"] = tuple(r["removed_files"])
        return RecoveryReport(**r)

    def __enter__(self) -> WalFsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WalFsWriter({self._path!r}, next_sequence={self.next_sequence})"
