"""``ReplayReducer``: the projection of the WAL — the same reducer the authority validates with.

A standalone reducer applies records (a command, a batch of commands, or wire tuples) with
exactly the rules replay uses, and answers the same queries as the authority. It is what the
seed hands to ``StorageMutationAuthority(wal_writer, ReplayReducer())``; the authority then
owns its state and the reducer object is closed.

>>> from actionqueue.core.mutation import EnginePauseCommand
>>> r = ReplayReducer()
>>> r.apply(1, EnginePauseCommand(None, 1_700_000_000_000))
(1, 1)
>>> r.is_paused, r.latest_sequence
(True, 1)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from actionqueue import _core as _rs
from actionqueue.core.mutation import MutationCommand
from actionqueue.errors import WrongTypeError
from actionqueue.storage._queries import ProjectionQueries, _CoreQueries
from actionqueue.storage.wal.fs_writer import DEFAULT_MAX_RECORD_SIZE

__all__ = ["ReplayReducer"]

WireTuple = tuple[Any, ...]
Record = MutationCommand | WireTuple | Iterable[MutationCommand | WireTuple]


def _wire_batch(record: Record) -> list[WireTuple]:
    if isinstance(record, MutationCommand):
        return [record.to_wire()]
    if isinstance(record, tuple) and record and type(record[0]) is int:
        return [record]
    if isinstance(record, (str, bytes)) or not isinstance(record, Iterable):
        raise WrongTypeError(
            f"record: expected a command, a wire tuple or a list of them, "
            f"got {type(record).__name__}"
        )
    return [e.to_wire() if isinstance(e, MutationCommand) else e for e in record]


class ReplayReducer(ProjectionQueries):
    """An in-memory projection: tasks, runs with histories, leases, pause flag, indexes."""

    __slots__ = ("_core",)

    _core: _rs.Projection

    def __init__(self) -> None:
        self._core = _rs.Projection()

    @classmethod
    def _wrap(cls, core: _rs.Projection) -> ReplayReducer:
        self = cls.__new__(cls)
        self._core = core
        return self

    @property
    def _q(self) -> _CoreQueries:
        return self._core

    def apply(self, sequence: int | None, record: Record) -> tuple[int, int]:
        """Applies one record (all or nothing) whose first event has ``sequence`` (``None``:
        the next one); returns ``(first, last)``. A refused record raises and changes nothing."""
        return self._core.apply(_wire_batch(record), sequence)

    def check(self, sequence: int | None, record: Record) -> None:
        """Raises what :meth:`apply` would raise; never changes anything."""
        self._core.check(_wire_batch(record), sequence)

    def replay_wal(
        self, path: str | os.PathLike[str], *, max_record_size: int = DEFAULT_MAX_RECORD_SIZE
    ) -> tuple[int, int]:
        """Replays the WAL in ``path`` from the record after :attr:`latest_sequence`, one
        atomic record at a time; returns ``(records, events)`` replayed. Raises
        ``RecoveryError`` when the log does not continue where this state ends."""
        return self._core.replay_wal(os.fspath(path), max_record_size)

    @classmethod
    def from_wal(
        cls, path: str | os.PathLike[str], *, max_record_size: int = DEFAULT_MAX_RECORD_SIZE
    ) -> ReplayReducer:
        """A reducer holding the state of the whole WAL in ``path``."""
        r = cls()
        r.replay_wal(path, max_record_size=max_record_size)
        return r

    def write_snapshot(self, directory: str | os.PathLike[str]) -> str:
        """Writes a snapshot of this state into ``directory`` (atomically); returns its path."""
        return self._core.write_snapshot(os.fspath(directory))

    @property
    def handed_over(self) -> bool:
        """Whether a mutation authority took this reducer's state (it is closed then)."""
        return self._core.handed_over

    def apply_commands(self, commands: Sequence[MutationCommand]) -> None:
        """Applies each command as its own record, at the sequence it names (or the next)."""
        for cmd in commands:
            self._core.apply([cmd.to_wire()], cmd.sequence)

    def __repr__(self) -> str:
        if self.handed_over:
            return "ReplayReducer(<handed over>)"
        return f"ReplayReducer(latest_sequence={self.latest_sequence})"
