"""What the engine needs from the storage authority: a ``Protocol``, nothing more.

The engine never imports :mod:`actionqueue.storage`; it drives any object with the methods
below. ``actionqueue.storage.mutation.StorageMutationAuthority`` (the Rust authority) is the real
one; ``tests/engine/fake_authority.py`` is a pure-Python model used to test the engine alone.
Names and return shapes follow ``docs/DESIGN.md`` ("Storage surface seen from Python"):

* writes go through :meth:`AuthorityPort.submit_wire` — a list of event tuples applied as **one
  atomic record** (all or nothing), returning ``(first_sequence, last_sequence)``;
* queries that return runs hand back *run tuples* (``RunInstance.from_wire`` turns one into a
  :class:`~actionqueue.core.run.run_instance.RunInstance`); ids are 16 raw bytes on that level;
* typed lookups (``get_task``, ``get_run``, ``runs_for_task``) return typed objects.

A refused batch raises a :class:`~actionqueue.errors.CommandRejectedError` (or a subclass:
``InvalidTransitionError``, ``LeaseError``, ``SequenceError``), an unknown id a
:class:`~actionqueue.errors.NotFoundError`; nothing is changed in either case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from actionqueue.core.ids import RunId, TaskId
from actionqueue.core.mutation import DurabilityPolicy
from actionqueue.core.run.run_instance import RunInstance
from actionqueue.core.run.state import RunState
from actionqueue.core.task.task_spec import TaskSpec

__all__ = [
    "AuthorityPort",
    "CandidateTuple",
    "EventTuple",
    "RunTuple",
    "TaskRecordLike",
    "task_is_finished",
]

#: An event as it crosses into Rust: ``(tag, fields...)`` — see DESIGN.md "Wire tuples".
EventTuple = tuple[Any, ...]
#: A run as it crosses out of Rust: the 14/15-item run tuple of DESIGN.md.
RunTuple = Sequence[Any]
#: ``(run_id, task_id, priority, scheduled_at, created_seq, concurrency_key)``; ids as bytes.
CandidateTuple = tuple[bytes, bytes, int, int, int, "str | None"]


class TaskRecordLike(Protocol):
    """A task as the authority reports it (``TaskRecord``)."""

    @property
    def spec(self) -> TaskSpec: ...

    @property
    def origin(self) -> int:
        """The schedule origin its runs derive from (ms)."""
        ...

    @property
    def created_at(self) -> int: ...

    @property
    def canceled_at(self) -> int | None: ...

    @property
    def derived(self) -> int:
        """Runs ever created for the task (survives pruning): the next ordinal."""
        ...

    @property
    def non_terminal(self) -> int:
        """How many of its runs are not terminal."""
        ...

    @property
    def last_scheduled_at(self) -> int | None:
        """``scheduled_at`` of its last derived run (the cron window's ``after``)."""
        ...


def task_is_finished(rec: TaskRecordLike) -> bool:
    """Whether every run ``rec``'s policy implies exists and is terminal (never, for a cron
    task without ``max_occurrences``). Cancellation is not looked at."""
    if rec.non_terminal:
        return False
    total = rec.spec.run_policy.total_runs()
    return total is not None and rec.derived >= total


class AuthorityPort(Protocol):
    """The authority methods the engine uses (see the module docs for shapes)."""

    # --- writes ------------------------------------------------------------------------------

    def submit_wire(
        self,
        events: Sequence[EventTuple],
        durability: DurabilityPolicy,
        expected_first: int | None = None,
    ) -> tuple[int, int]:
        """Validate (dry-run the reducer), append as one record, sync per ``durability``, apply."""
        ...

    def flush(self) -> None: ...

    # --- state -------------------------------------------------------------------------------

    @property
    def is_paused(self) -> bool: ...

    @property
    def latest_sequence(self) -> int: ...

    # --- typed lookups -----------------------------------------------------------------------

    def get_task(self, task_id: TaskId) -> TaskRecordLike | None: ...

    def get_run(self, run_id: RunId) -> RunInstance | None: ...

    def runs_for_task(self, task_id: TaskId) -> list[RunInstance]: ...

    def counts(self) -> Mapping[RunState, int]: ...

    # --- index queries (raw tuples, the engine's hot path) -----------------------------------

    def next_due(self) -> int | None:
        """The earliest Scheduled ``scheduled_at`` or RetryWait ``not_before``."""
        ...

    def next_lease_expiry(self) -> int | None:
        """The earliest lease expiry of a Leased/Running run (very negative: one has none)."""
        ...

    def due_scheduled(self, now: int, limit: int) -> list[RunTuple]: ...

    def due_retries(self, now: int, limit: int) -> list[RunTuple]: ...

    def expired_leases(self, now: int, limit: int) -> list[RunTuple]: ...

    def ready_candidates(self, limit: int) -> list[CandidateTuple]:
        """Ready runs in selection order; runs whose key is held, or taken by an earlier
        candidate of the same answer, are skipped (so all of them can be leased at once)."""
        ...

    def key_holder(self, key: str) -> bytes | None: ...

    def task_by_dedupe_key(self, key: str) -> bytes | None: ...
