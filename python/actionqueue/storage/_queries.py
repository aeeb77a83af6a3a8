"""Typed read access shared by the mutation authority and the replay reducer.

Both wrap a Rust object holding a projection (``_core.Authority`` / ``_core.Projection``) with
the same query methods. Shapes follow ``docs/DESIGN.md`` ("Storage surface seen from Python"):
typed lookups (``get_task``, ``get_run``, ``runs_for_task``, ``counts``) return typed objects;
index queries on the engine's hot path (``due_scheduled``, ``ready_candidates``, ...) return
the plain tuples the core produces, which ``RunInstance.from_wire`` turns into objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from actionqueue.core._validate import I64_MAX, check_int, wrong_type
from actionqueue.core.ids import RunId, TaskId
from actionqueue.core.run.run_instance import RunInstance
from actionqueue.core.run.state import RunState
from actionqueue.core.task.task_spec import TaskSpec
from actionqueue.errors import WrongTypeError

__all__ = ["CandidateTuple", "ProjectionQueries", "RunTuple", "TaskRecord"]

#: A run as it crosses out of Rust: the 15-item run tuple of DESIGN.md.
RunTuple = tuple[Any, ...]
#: ``(run_id, task_id, priority, scheduled_at, created_seq, concurrency_key)``; ids as bytes.
CandidateTuple = tuple[bytes, bytes, int, int, int, "str | None"]

_STATES = tuple(RunState)
_STATE_VALUES = frozenset(int(x) for x in RunState)


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A task as the durable state holds it.

    Attributes:
        spec: the task's :class:`TaskSpec`.
        origin: the schedule origin its runs derive from (ms since the epoch).
        created_at: when it was created.
        canceled_at: when it was canceled, or ``None``.
        derived: runs ever created for it (survives pruning): the next run's ordinal.
        non_terminal: how many of its runs are not terminal.
        last_scheduled_at: ``scheduled_at`` of its newest run still held (``None`` when none
            is held, e.g. before derivation or after every run was pruned).
    """

    spec: TaskSpec
    origin: int
    created_at: int
    canceled_at: int | None
    derived: int
    non_terminal: int
    last_scheduled_at: int | None

    @property
    def task_id(self) -> TaskId:
        """The task's id (``spec.task_id``)."""
        return self.spec.task_id

    @property
    def is_canceled(self) -> bool:
        """Whether the task was canceled."""
        return self.canceled_at is not None

    @classmethod
    def from_wire(cls, t: Sequence[Any]) -> TaskRecord:
        """Build from the task tuple ``(spec_wire, origin, created_at, canceled_at, derived,
        non_terminal, last_scheduled_at)``."""
        spec, origin, created_at, canceled_at, derived, non_terminal, last = t
        return cls(
            TaskSpec.from_wire(spec), origin, created_at, canceled_at, derived, non_terminal, last
        )


class _CoreQueries(Protocol):
    """The query methods ``_core.Authority`` and ``_core.Projection`` share."""

    def get_task(self, task_id: bytes) -> tuple[Any, ...] | None: ...
    def get_run(self, run_id: bytes) -> tuple[Any, ...] | None: ...
    def runs_for_task(self, task_id: bytes) -> list[tuple[Any, ...]]: ...
    def counts(self) -> list[int]: ...
    def next_due(self) -> int | None: ...
    def next_lease_expiry(self) -> int | None: ...
    def dispatch_state(self, now: int) -> tuple[bool, bool]: ...
    def due_scheduled(self, now: int, limit: int) -> list[tuple[Any, ...]]: ...
    def due_retries(self, now: int, limit: int) -> list[tuple[Any, ...]]: ...
    def expired_leases(self, now: int, limit: int) -> list[tuple[Any, ...]]: ...
    def runs_in_state(
        self, state: int, limit: int, after: bytes | None = None
    ) -> list[tuple[Any, ...]]: ...
    def runs_page(
        self,
        state: int,
        limit: int,
        cursor: bytes | None = None,
        *,
        tag: str | None = None,
        handler: str | None = None,
    ) -> tuple[list[tuple[Any, ...]], bytes | None]: ...
    def ready_candidates(
        self, limit: int
    ) -> list[tuple[bytes, bytes, int, int, int, str | None]]: ...
    def key_holder(self, key: str) -> bytes | None: ...
    def task_by_dedupe_key(self, key: str) -> bytes | None: ...
    def short_cron_windows(self) -> list[bytes]: ...
    def prune_cutoff(self, keep: int) -> int | None: ...
    def state_digest(self) -> str: ...
    @property
    def latest_sequence(self) -> int: ...
    @property
    def next_sequence(self) -> int: ...
    @property
    def is_paused(self) -> bool: ...
    @property
    def task_count(self) -> int: ...
    @property
    def run_count(self) -> int: ...


def _id_bytes(value: object, name: str) -> bytes:
    """Ids may be given as ``TaskId``/``RunId`` (or any object with ``.bytes``) or raw bytes."""
    if type(value) is bytes:
        return value
    b = getattr(value, "bytes", None)
    if isinstance(b, bytes):
        return b
    raise WrongTypeError(f"{name}: expected an id or 16 bytes, got {type(value).__name__}")


def _nonneg(value: object, name: str) -> int:
    """A time (ms) or count argument: an int in the log's range, checked here so that anything
    else is a typed error naming it, not the core's ``OverflowError`` / ``TypeError``."""
    return check_int(value, name, minimum=0, maximum=I64_MAX)


def _state_value(state: object) -> int:
    if not isinstance(state, int) or isinstance(state, bool) or state not in _STATE_VALUES:
        raise WrongTypeError(f"state must be a RunState, got {state!r:.80}")
    return int(state)


def _key(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise wrong_type(name, "a str", value)
    return value


class ProjectionQueries:
    """Query methods over ``self._core`` (see the module docs for the shapes)."""

    __slots__ = ()

    @property
    def _q(self) -> _CoreQueries:
        raise NotImplementedError

    # --- sequences and flags ---------------------------------------------------------------

    @property
    def latest_sequence(self) -> int:
        """Sequence of the last applied event (0 when nothing was applied)."""
        return self._q.latest_sequence

    @property
    def next_sequence(self) -> int:
        """The sequence the next record will start with."""
        return self._q.next_sequence

    @property
    def is_paused(self) -> bool:
        """Whether the engine is paused (durably)."""
        return self._q.is_paused

    @property
    def task_count(self) -> int:
        """Tasks held (pruned ones are gone)."""
        return self._q.task_count

    @property
    def run_count(self) -> int:
        """Runs held (pruned ones are gone)."""
        return self._q.run_count

    # --- typed lookups ---------------------------------------------------------------------

    def get_task(self, task_id: TaskId | bytes) -> TaskRecord | None:
        """The task, or ``None`` when unknown (or pruned)."""
        t = self._q.get_task(_id_bytes(task_id, "task_id"))
        return None if t is None else TaskRecord.from_wire(t)

    def get_run(self, run_id: RunId | bytes) -> RunInstance | None:
        """The run with its histories, or ``None`` when unknown (or pruned)."""
        r = self._q.get_run(_id_bytes(run_id, "run_id"))
        return None if r is None else RunInstance.from_wire(r)

    def runs_for_task(self, task_id: TaskId | bytes) -> list[RunInstance]:
        """The task's runs still held, in ordinal order (``[]`` for an unknown task)."""
        return [
            RunInstance.from_wire(r) for r in self._q.runs_for_task(_id_bytes(task_id, "task_id"))
        ]

    def counts(self) -> dict[RunState, int]:
        """Runs per state (every state present, zeros included)."""
        return dict(zip(_STATES, self._q.counts(), strict=True))

    # --- index queries (raw tuples) --------------------------------------------------------

    def next_due(self) -> int | None:
        """The earliest Scheduled ``scheduled_at`` or RetryWait ``not_before``, or ``None``."""
        return self._q.next_due()

    def next_lease_expiry(self) -> int | None:
        """The earliest lease expiry of a Leased/Running run (the most negative int when one
        has no lease at all: it is due for the sweep now), or ``None``."""
        return self._q.next_lease_expiry()

    def dispatch_state(self, now: int) -> tuple[bool, bool]:
        """``(work_due, paused)`` at ``now`` in one call: whether a Scheduled run or a retry
        is due or a lease has expired (what :meth:`next_due` / :meth:`next_lease_expiry`
        would say), and :attr:`is_paused`."""
        return self._q.dispatch_state(_nonneg(now, "now"))

    def due_scheduled(self, now: int, limit: int) -> list[RunTuple]:
        """Run tuples of Scheduled runs with ``scheduled_at <= now``, earliest first."""
        return self._q.due_scheduled(_nonneg(now, "now"), _nonneg(limit, "limit"))

    def due_retries(self, now: int, limit: int) -> list[RunTuple]:
        """Run tuples of RetryWait runs with ``not_before <= now``, earliest first."""
        return self._q.due_retries(_nonneg(now, "now"), _nonneg(limit, "limit"))

    def expired_leases(self, now: int, limit: int) -> list[RunTuple]:
        """Run tuples of Leased, then Running, runs whose lease is expired at ``now`` (or
        missing)."""
        return self._q.expired_leases(_nonneg(now, "now"), _nonneg(limit, "limit"))

    def runs_in_state(
        self, state: RunState | int, limit: int, after: RunId | bytes | None = None
    ) -> list[RunTuple]:
        """Run tuples of one state in its index order; ``after`` (the id of the last run of a
        previous page) continues a listing from where that run is *now* — use
        :meth:`runs_page` to page while the state changes (a run that moved or was pruned
        meanwhile would restart, skip or break the listing)."""
        a = None if after is None else _id_bytes(after, "after")
        return self._q.runs_in_state(_state_value(state), _nonneg(limit, "limit"), a)

    def runs_page(
        self,
        state: RunState | int,
        limit: int,
        cursor: bytes | None = None,
        *,
        tag: str | None = None,
        handler: str | None = None,
    ) -> tuple[list[RunTuple], bytes | None]:
        """One page of a state's run tuples in index order, and the cursor to pass for the
        next page (``None`` once the listing is over). The cursor is a position in the index,
        not a run: whatever happens to the runs already listed (finished, retried, pruned),
        the next page starts right after the last one — every run that stays in the state
        meanwhile is listed exactly once.

        ``tag`` / ``handler`` keep only the runs of tasks carrying that tag / routed to that
        handler, filtered in the core (a task looked up once per page, no tuple built for a
        run left out). Such a page examines a bounded number of runs (8,192), so it may hold
        fewer than ``limit`` rows, or none, and still have a next cursor."""
        if cursor is not None and not isinstance(cursor, bytes):
            raise WrongTypeError(f"cursor must be bytes or None, got {type(cursor).__name__}")
        for name, value in (("tag", tag), ("handler", handler)):
            if value is not None and not isinstance(value, str):
                raise WrongTypeError(f"{name} must be a str or None, got {type(value).__name__}")
        if tag is None and handler is None:
            return self._q.runs_page(_state_value(state), _nonneg(limit, "limit"), cursor)
        return self._q.runs_page(
            _state_value(state), _nonneg(limit, "limit"), cursor, tag=tag, handler=handler
        )

    def ready_candidates(self, limit: int) -> list[CandidateTuple]:
        """Ready runs in selection order as ``(run_id, task_id, priority, scheduled_at,
        created_seq, concurrency_key)``; runs whose key is held, or taken by an earlier
        candidate of the same answer, are skipped (so all of them can be leased at once)."""
        return self._q.ready_candidates(_nonneg(limit, "limit"))

    def key_holder(self, key: str) -> bytes | None:
        """Id bytes of the run holding concurrency key ``key``, or ``None``."""
        return self._q.key_holder(_key(key, "key"))

    def task_by_dedupe_key(self, key: str) -> bytes | None:
        """Id bytes of the live task holding dedupe key ``key``, or ``None``."""
        return self._q.task_by_dedupe_key(_key(key, "key"))

    def short_cron_windows(self) -> list[bytes]:
        """Id bytes of the live cron tasks holding fewer non-terminal runs than their window
        while runs remain to derive, in creation order: tasks whose window could not be
        refilled where the queue ran (their zone unknown there, or no occurrence left). The
        engine's first tick refills them."""
        return self._q.short_cron_windows()

    def prune_cutoff(self, keep: int) -> int | None:
        """The ``before`` that keeps the ``keep`` most recently finished terminal runs, or
        ``None`` when there are no more than ``keep``."""
        return self._q.prune_cutoff(_nonneg(keep, "keep"))

    def state_digest(self) -> str:
        """Deterministic digest (BLAKE3, hex) of the durable state: same events, same digest."""
        return self._q.state_digest()
