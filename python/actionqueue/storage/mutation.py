"""``StorageMutationAuthority``: the one write path into durable state (SPEC §5).

Every command goes through the same pipeline, for a single command or an atomic batch:

1. **validate** by dry-running the replay reducer (the very code recovery runs, so nothing
   that could fail on replay is ever logged);
2. **append** one WAL record (the whole batch, one checksum);
3. **durability**: ``IMMEDIATE`` returns once the record is on stable storage; concurrent
   Immediate submitters share one ``fdatasync`` (group commit) and the GIL is released while
   waiting; ``DEFERRED`` returns after the write;
4. **apply** to the in-memory projection and its indexes.

A refused command changes nothing (log and state stay byte-identical). A failed write or
fsync puts the authority into a failed state: every later call, queries included, raises
``StorageFailedError`` naming the first cause, until the directory is reopened.

The seed's construction (a WAL writer plus a replay reducer of exactly that log)::

    >>> import tempfile
    >>> from actionqueue.core.ids import TaskId
    >>> from actionqueue.core.mutation import DurabilityPolicy, MutationCommand, TaskCreateCommand
    >>> from actionqueue.core.task.run_policy import RunPolicy
    >>> from actionqueue.core.task.task_spec import TaskPayload, TaskSpec
    >>> from actionqueue.storage.recovery.reducer import ReplayReducer
    >>> from actionqueue.storage.wal.fs_writer import U64_MAX, WalFsWriter
    >>> wal_writer = WalFsWriter(tempfile.mkdtemp())
    >>> authority = StorageMutationAuthority(wal_writer, ReplayReducer())
    >>> spec = TaskSpec(TaskId.new(), TaskPayload(b"x"), RunPolicy.once())
    >>> authority.submit_command(
    ...     MutationCommand.TaskCreate(TaskCreateCommand(1, spec, 0)), DurabilityPolicy.IMMEDIATE
    ... )
    AppliedOutcome(first_sequence=1, last_sequence=1)
    >>> authority.close()

A data directory (WAL + snapshots, recovered on open) is opened with
:meth:`StorageMutationAuthority.open` or :func:`actionqueue.storage.recovery.bootstrap`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actionqueue import _core as _rs
from actionqueue.core._validate import U32_MAX, check_bool, check_int
from actionqueue.core.mutation import DurabilityPolicy, MutationCommand
from actionqueue.core.time import now_ms
from actionqueue.errors import ValidationError, WrongTypeError
from actionqueue.storage._queries import (
    ProjectionQueries,
    TaskRecord,
    _CoreQueries,
    _id_bytes,
    _nonneg,
)
from actionqueue.storage.snapshot import SnapshotInfo
from actionqueue.storage.wal.fs_writer import U64_MAX, WalFsWriter

if TYPE_CHECKING:
    from actionqueue.storage.recovery.bootstrap import RecoveryReport
    from actionqueue.storage.recovery.reducer import ReplayReducer

__all__ = [
    "DEFAULT_KEEP_SNAPSHOTS",
    "DEFAULT_SNAPSHOT_EVERY",
    "AppliedOutcome",
    "AuthorityStats",
    "PruneOutcome",
    "StorageMutationAuthority",
    "TaskRecord",
]

DEFAULT_SNAPSHOT_EVERY = 100_000
DEFAULT_KEEP_SNAPSHOTS = 2

_IMMEDIATE = DurabilityPolicy.IMMEDIATE
_DEFERRED = DurabilityPolicy.DEFERRED

WireTuple = tuple[Any, ...]


def _immediate(durability: DurabilityPolicy | str) -> bool:
    if durability is _IMMEDIATE:
        return True
    if durability is _DEFERRED:
        return False
    return DurabilityPolicy.parse(durability) is _IMMEDIATE


@dataclass(frozen=True, slots=True)
class AppliedOutcome:
    """What a submit wrote: the sequences of its first and last event (one record)."""

    first_sequence: int
    last_sequence: int

    @property
    def sequence(self) -> int:
        """The first event's sequence (the only one for a single command)."""
        return self.first_sequence

    @property
    def event_count(self) -> int:
        """Events in the record."""
        return self.last_sequence - self.first_sequence + 1


@dataclass(frozen=True, slots=True)
class PruneOutcome:
    """A retention prune: its record's sequence, the cutoff used and what it removed."""

    sequence: int
    before: int
    runs_removed: int
    tasks_removed: int


@dataclass(frozen=True, slots=True)
class AuthorityStats:
    """Counters: submits (records), events, rejected commands, snapshots taken; the WAL's
    appends, bytes appended and ``fdatasync`` calls since it was opened (not the log's size);
    the last snapshot and snapshot error."""

    submits: int
    events: int
    rejected: int
    snapshots: int
    events_since_snapshot: int
    last_snapshot: SnapshotInfo | None
    last_snapshot_error: str | None
    wal_appends: int
    wal_events: int
    wal_bytes: int
    wal_syncs: int
    synced_sequence: int


def _resolve_many(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """Runs on the event loop (``call_soon_threadsafe`` from the completer thread): resolves
    the futures of one group sync."""
    for fut, ok, value in items:
        if fut.done():  # canceled by its awaiter; the record is durable all the same
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


def _command_batch(commands: Iterable[MutationCommand]) -> tuple[list[WireTuple], int | None]:
    """Wire tuples of a batch and its expected first sequence (from the commands' own
    ``sequence`` fields, which must be consecutive where given)."""
    wire: list[WireTuple] = []
    expected: int | None = None
    for i, cmd in enumerate(commands):
        if not isinstance(cmd, MutationCommand):
            raise WrongTypeError(
                f"commands[{i}]: expected a MutationCommand, got {type(cmd).__name__} {cmd!r:.80}"
            )
        seq = cmd.sequence
        if seq is not None:
            implied = seq - i
            if expected is None:
                expected = implied
            elif implied != expected:
                raise ValidationError(
                    f"commands[{i}]: sequence {seq} does not follow the batch's first sequence "
                    f"{expected} (expected {expected + i} or None)"
                )
        wire.append(cmd.to_wire())
    if not wire:
        raise ValidationError("submit_batch needs at least one command")
    return wire, expected


class StorageMutationAuthority(ProjectionQueries):
    """The storage-owned mutation authority over one WAL (and snapshot directory).

    ``StorageMutationAuthority(wal_writer, projection)`` takes over a
    :class:`~actionqueue.storage.wal.fs_writer.WalFsWriter` and a
    :class:`~actionqueue.storage.recovery.reducer.ReplayReducer` holding the state of exactly
    that log (a fresh reducer for a new log). Both are owned by the authority afterwards: the
    writer refuses direct appends and the reducer is closed. Snapshots are off unless
    ``snapshot_dir`` is given. For a data directory, use :meth:`open`.

    Thread-safe: any number of threads may submit and query at once. Use as a context
    manager, or call :meth:`close`.
    """

    __slots__ = ("_core", "_report")

    _core: _rs.Authority
    _report: RecoveryReport | None

    def __init__(
        self,
        wal_writer: WalFsWriter,
        projection: ReplayReducer,
        *,
        snapshot_dir: str | os.PathLike[str] | None = None,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        keep_snapshots: int = DEFAULT_KEEP_SNAPSHOTS,
        snapshot_on_close: bool = True,
    ) -> None:
        from actionqueue.storage.recovery.reducer import ReplayReducer

        if not isinstance(wal_writer, WalFsWriter):
            raise WrongTypeError(
                f"wal_writer: expected a WalFsWriter, got {type(wal_writer).__name__}"
            )
        if not isinstance(projection, ReplayReducer):
            raise WrongTypeError(
                f"projection: expected a ReplayReducer, got {type(projection).__name__}"
            )
        self._core = _rs.Authority.from_parts(
            wal_writer._core,
            projection._core,
            snapshot_dir=None if snapshot_dir is None else os.fspath(snapshot_dir),
            snapshot_every=check_int(snapshot_every, "snapshot_every", minimum=0, maximum=U64_MAX),
            keep_snapshots=check_int(keep_snapshots, "keep_snapshots", minimum=1, maximum=U32_MAX),
            snapshot_on_close=check_bool(snapshot_on_close, "snapshot_on_close"),
        )
        self._report = None

    @classmethod
    def _wrap(cls, core: _rs.Authority, report: RecoveryReport | None) -> StorageMutationAuthority:
        self = cls.__new__(cls)
        self._core = core
        self._report = report
        return self

    @classmethod
    def open(cls, data_dir: str | os.PathLike[str], **options: Any) -> StorageMutationAuthority:
        """Opens (creating if needed) a data directory and recovers it; see
        :func:`actionqueue.storage.recovery.bootstrap` for the options. The recovery report is
        :attr:`recovery_report`."""
        from actionqueue.storage.recovery.bootstrap import bootstrap

        authority, _ = bootstrap(data_dir, **options)
        return authority

    @property
    def _q(self) -> _CoreQueries:
        return self._core

    @property
    def recovery_report(self) -> RecoveryReport | None:
        """What recovery did when this authority was opened on a data directory."""
        return self._report

    # --- writes ----------------------------------------------------------------------------

    def submit_command(
        self, command: MutationCommand, durability: DurabilityPolicy | str
    ) -> AppliedOutcome:
        """Validates, appends, makes durable (per ``durability``) and applies one command.

        ``command.sequence``, when not ``None``, must be the next sequence (``SequenceError``
        otherwise, nothing written). Refused commands raise ``CommandRejectedError`` (or a
        subclass) and change nothing.
        """
        if not isinstance(command, MutationCommand):
            raise WrongTypeError(
                f"command: expected a MutationCommand, got {type(command).__name__}"
            )
        first, last = self._core.submit(
            [command.to_wire()], _immediate(durability), command.sequence
        )
        return AppliedOutcome(first, last)

    def submit_batch(
        self, commands: Iterable[MutationCommand], durability: DurabilityPolicy | str
    ) -> AppliedOutcome:
        """Submits ``commands`` as one atomic record: all applied, or none. The first
        command's ``sequence`` (if not ``None``) is the expected first sequence; later ones
        must follow consecutively or be ``None``."""
        wire, expected = _command_batch(commands)
        first, last = self._core.submit(wire, _immediate(durability), expected)
        return AppliedOutcome(first, last)

    def submit_wire(
        self,
        events: Sequence[WireTuple],
        durability: DurabilityPolicy | str,
        expected_first: int | None = None,
    ) -> tuple[int, int]:
        """Submits wire tuples (``docs/DESIGN.md``) as one atomic record; returns
        ``(first, last)``. The hot path: no command objects."""
        if durability is _DEFERRED:  # the common case, without a call to _immediate()
            return self._core.submit(events, False, expected_first)
        return self._core.submit(events, _immediate(durability), expected_first)

    async def submit_wire_async(
        self,
        events: Sequence[WireTuple],
        durability: DurabilityPolicy | str,
        expected_first: int | None = None,
    ) -> tuple[int, int]:
        """:meth:`submit_wire` for asyncio: validated, appended and applied before the first
        ``await`` (a refusal raises at once); with ``IMMEDIATE``, the coroutine then waits for
        the record to be durable **without blocking the event loop**, so one loop can have many
        commits in flight and they share syncs (group commit without a thread per submitter).

        Canceling the awaiting task does not take the record back: it was already applied and
        becomes durable with the next sync.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[int, int]] = loop.create_future()
        done = self._core.submit_async(
            events, _immediate(durability), expected_first, loop, fut, _resolve_many
        )
        if done is not None:
            return done
        return await fut

    async def wait_durable_async(self, sequence: int | None = None) -> None:
        """Waits, without blocking the event loop, until every event up to ``sequence``
        (default: everything submitted so far) is durable — sharing the group syncs of
        :meth:`submit_wire_async`. What an asyncio caller does after Deferred submits made on
        other threads (``ActionQueue.asubmit``). A failed sync raises its
        :class:`~actionqueue.errors.StorageFailedError`."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[int, int]] = loop.create_future()
        if not self._core.wait_async(sequence, loop, fut, _resolve_many):
            await fut

    async def submit_command_async(
        self, command: MutationCommand, durability: DurabilityPolicy | str
    ) -> AppliedOutcome:
        """:meth:`submit_command` for asyncio (see :meth:`submit_wire_async`)."""
        if not isinstance(command, MutationCommand):
            raise WrongTypeError(
                f"command: expected a MutationCommand, got {type(command).__name__}"
            )
        first, last = await self.submit_wire_async(
            [command.to_wire()], durability, command.sequence
        )
        return AppliedOutcome(first, last)

    def dispatch_ready(
        self,
        now: int,
        owner: str,
        limit: int,
        default_lease_ms: int,
        random: bytes,
        check_due: bool = True,
        busy_keys: Sequence[str] = (),
    ) -> list[tuple[bytes, bytes, int, int, bytes, int]] | None:
        """One dispatch step in one call into the core (the engine's hot path).

        ``None`` when ``check_due`` and work is due at ``now`` (a Scheduled run or retry, or
        an expired lease): promote / sweep first, then call again with ``check_due=False``.
        Otherwise picks up to ``limit`` Ready runs in selection order (concurrency keys
        honoured, as :meth:`ready_candidates`) and leases **and starts** them for ``owner`` in
        one Deferred record — Ready → Leased, ``LeaseAcquire``, Leased → Running,
        ``AttemptStart`` per run, validated like any submit — and returns ``(run_id, task_id,
        scheduled_at, attempt, attempt_id, lease_expires_at)`` per run: ``attempt`` is the
        attempt number now open, the lease is ``default_lease_ms`` or the task's timeout plus
        5 s if longer. ``[]`` when paused or nothing is Ready. ``random`` holds 16 random bytes
        per run (``os.urandom(16 * limit)``), made into version-4 attempt ids.
        ``busy_keys``: concurrency keys to treat as held besides those the log holds (the
        runtime's handlers still running after their outcome was recorded); their runs are
        skipped, not dropped.
        """
        return self._core.dispatch_ready(
            now, owner, limit, default_lease_ms, random, check_due, list(busy_keys)
        )

    def due_scheduled_ids(self, now: int, limit: int) -> list[tuple[bytes, bytes, int]]:
        """``(run_id, task_id, scheduled_at)`` of the runs :meth:`due_scheduled` would return,
        without whole run tuples (what a plain promotion needs)."""
        return self._core.due_scheduled_ids(now, limit)

    def due_retry_ids(self, now: int, limit: int) -> list[tuple[bytes, int | None]]:
        """``(run_id, not_before)`` of the runs :meth:`due_retries` would return, without
        whole run tuples (a retried run's tuple holds its every attempt and state change)."""
        return self._core.due_retry_ids(now, limit)

    def live_run_ids(self, task_id: Any) -> list[bytes]:
        """The ids of the task's non-terminal runs, in ordinal order (none for an unknown
        task), without the run tuples :meth:`runs_for_task` builds for every run it holds.
        ``task_id``: a ``TaskId`` or its 16 bytes."""
        return self._core.live_run_ids(_id_bytes(task_id, "task_id"))

    def hot_path(
        self,
    ) -> tuple[
        Callable[[Sequence[WireTuple]], tuple[int, int]],
        Callable[..., list[tuple[bytes, bytes, int, int, bytes, int]] | None],
    ]:
        """``(submit_deferred, dispatch_ready)`` as the core's own bound methods, for a caller
        that pays for every Python frame (the engine): ``submit_deferred(events)`` is
        ``submit_wire(events, DEFERRED)`` (keeping the GIL when the authority's lock is free),
        ``dispatch_ready`` is :meth:`dispatch_ready`."""
        return self._core.submit_deferred, self._core.dispatch_ready

    def submit_uniform_wire(
        self,
        template: WireTuple,
        payloads: list[tuple[bytes, str | None]],
        runs: Sequence[tuple[int, int]],
        origin: int,
        timestamp: int,
        ids: bytes,
        durability: DurabilityPolicy | str,
        *,
        ready: int = 0,
    ) -> tuple[int, int]:
        """Creates one task per ``(data, content_type)`` of ``payloads`` in **one** record,
        without a wire tuple per event: each is ``template`` (a TaskSpec wire tuple whose id
        and payload are replaced) with that payload, followed by a RunCreate per
        ``(ordinal, scheduled_at)`` of ``runs``, created at ``timestamp`` with schedule origin
        ``origin``. ``ids`` holds 16 bytes per task and per run, task by task (the task's id,
        then its runs'). The first ``ready`` runs of each task are promoted in the same record
        (a Scheduled → Ready transition at ``timestamp`` right after their RunCreate): for
        runs due and on time, what the scheduler's next tick would do; a run scheduled after
        ``timestamp`` is refused. Validated and applied like :meth:`submit_wire`; returns
        ``(first, last)``."""
        got = self._core.submit_uniform(
            template,
            payloads,
            list(runs),
            origin,
            timestamp,
            ids,
            _immediate(durability),
            ready,
        )
        assert got is not None  # only a nonblocking submit returns None
        return got

    def try_submit_uniform_wire(
        self,
        template: WireTuple,
        payloads: list[tuple[bytes, str | None]],
        runs: Sequence[tuple[int, int]],
        origin: int,
        timestamp: int,
        ids: bytes,
        *,
        ready: int = 0,
    ) -> tuple[int, int] | None:
        """:meth:`submit_uniform_wire` with Deferred durability that never waits: when the
        authority's lock is held (another writer) or an automatic snapshot is due, nothing is
        done and ``None`` is returned — for an event-loop thread, which hands the submit to a
        worker thread then instead of blocking its loop. Refusals raise as usual."""
        return self._core.submit_uniform(
            template, payloads, list(runs), origin, timestamp, ids, False, ready, True
        )

    def submit_many_wire(
        self, batches: Sequence[Sequence[WireTuple]], durability: DurabilityPolicy | str
    ) -> tuple[int, int]:
        """Submits each batch as its own atomic record in one call (with Immediate durability,
        one sync covers them all). Stops at the first refused batch and raises; earlier
        batches stay applied. Returns ``(first, last)`` over everything submitted."""
        return self._core.submit_many([list(b) for b in batches], _immediate(durability))

    def prune(
        self,
        before: int,
        durability: DurabilityPolicy | str = _DEFERRED,
        *,
        timestamp: int | None = None,
    ) -> PruneOutcome:
        """Retention: durably forgets terminal runs whose last change is before ``before``
        (ms) and finished tasks left with no runs; returns what was removed."""
        before = _nonneg(before, "before")
        at = now_ms() if timestamp is None else _nonneg(timestamp, "timestamp")
        first, _, runs, tasks = self._core.prune(before, at, _immediate(durability))
        return PruneOutcome(first, before, runs, tasks)

    def prune_keep_newest(
        self,
        keep: int,
        durability: DurabilityPolicy | str = _DEFERRED,
        *,
        timestamp: int | None = None,
    ) -> PruneOutcome | None:
        """Retention by count: prunes all but the ``keep`` most recently finished terminal
        runs (ties at the cutoff millisecond are kept). ``None`` when there is nothing to
        prune. The cutoff is computed and submitted atomically."""
        if type(keep) is not int or keep < 0:
            raise ValidationError(f"keep must be an int >= 0, got {keep!r}")
        # The range prune_cutoff takes: a larger count was a bare OverflowError from the core.
        keep = _nonneg(keep, "keep")
        at = now_ms() if timestamp is None else _nonneg(timestamp, "timestamp")
        r = self._core.prune_keeping(keep, at, _immediate(durability))
        if r is None:
            return None
        first, _, runs, tasks, before = r
        return PruneOutcome(first, before, runs, tasks)

    def flush(self) -> None:
        """Makes every submitted record durable."""
        self._core.flush()

    def snapshot(self) -> SnapshotInfo | None:
        """Takes a snapshot now, then checkpoints (deletes WAL segments and snapshots no
        longer needed). ``None`` when the authority has no snapshot directory. Writers wait
        while the snapshot is written."""
        s = self._core.snapshot()
        return None if s is None else SnapshotInfo(**s)

    def stats(self) -> AuthorityStats:
        """Counters of the authority and its WAL."""
        s = self._core.stats()
        last = s.pop("last_snapshot")
        return AuthorityStats(last_snapshot=None if last is None else SnapshotInfo(**last), **s)

    def close(self) -> None:
        """Flushes, snapshots (when configured and anything changed), closes the WAL and
        releases the directory lock. Later calls raise ``ClosedError``. Idempotent."""
        self._core.close()

    @property
    def failed(self) -> str | None:
        """The cause of the failed state, or ``None`` while healthy. Never raises."""
        return self._core.failed

    @property
    def closed(self) -> bool:
        return self._core.closed

    @property
    def wal_path(self) -> str:
        return self._core.wal_path

    @property
    def snapshot_dir(self) -> str | None:
        return self._core.snapshot_dir

    def __enter__(self) -> StorageMutationAuthority:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("failed" if self.failed else "open")
        return f"StorageMutationAuthority({self.wal_path!r}, {state})"
