"""``WalFsReader``: stream the events of a WAL directory back, in sequence order.

Memory does not grow with the log: events are read in batches (one crossing into Rust per
batch, the GIL released while reading). The reader never modifies the log and takes no lock;
a crash tail ends the iteration (see :attr:`WalFsReader.torn_tail`), corruption raises
``WalCorruptionError`` naming segment, offset and reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, NamedTuple

from actionqueue import _core
from actionqueue.core._validate import check_int
from actionqueue.storage.wal.fs_writer import DEFAULT_MAX_RECORD_SIZE, U64_MAX

__all__ = ["WalEntry", "WalFsReader"]


class WalEntry(NamedTuple):
    """One event read back: its sequence, segment file name, record offset and wire tuple."""

    sequence: int
    segment: str
    offset: int
    event: tuple[Any, ...]


class WalFsReader:
    """Iterates ``WalEntry`` items of the WAL in ``path``, from sequence ``start`` on.

    ``seek(sequence)`` restarts at a sequence without reading earlier segments (segment
    names are searched, not scanned).
    """

    __slots__ = ("_batch", "_core", "_max_record_size", "_path", "_start")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        start: int = 0,
        max_record_size: int = DEFAULT_MAX_RECORD_SIZE,
        batch_size: int = 4096,
    ) -> None:
        self._path = os.fspath(path)
        self._max_record_size = check_int(
            max_record_size, "max_record_size", minimum=0, maximum=U64_MAX
        )
        self._batch = check_int(batch_size, "batch_size", minimum=1, maximum=U64_MAX)
        self._start = check_int(start, "start", minimum=0, maximum=U64_MAX)
        self._core = _core.WalReader(
            self._path, start=self._start, max_record_size=self._max_record_size
        )

    def seek(self, sequence: int) -> None:
        """Positions the reader so the next entry is the first with sequence >= ``sequence``."""
        self._start = check_int(sequence, "sequence", minimum=0, maximum=U64_MAX)
        self._core = _core.WalReader(
            self._path, start=self._start, max_record_size=self._max_record_size
        )

    def __iter__(self) -> Iterator[WalEntry]:
        core = self._core
        while True:
            batch = core.read_batch(self._batch)
            if not batch:
                return
            for item in batch:
                yield WalEntry._make(item)

    def read_batch(self, max_events: int = 4096) -> list[tuple[int, str, int, tuple[Any, ...]]]:
        """The next ``max_events`` entries as plain tuples (fast path); ``[]`` at the end."""
        if type(max_events) is not int or not 0 < max_events <= U64_MAX:
            max_events = check_int(max_events, "max_events", minimum=1, maximum=U64_MAX)
        return self._core.read_batch(max_events)

    @property
    def torn_tail(self) -> dict[str, Any] | None:
        """After iterating: ``None`` when the log ended cleanly, else where and why it ends
        in a crash tail (which the next writer open cuts off)."""
        return self._core.torn_tail()
