"""The Python face of the Rust indexes: typed, read-only views over the authority's queries.

The Rust projection keeps every run in the ordered index of its state (SPEC §8 "index"):
Scheduled by ``scheduled_at``, Ready in selection order, Leased/Running by lease expiry
(lease-less runs first), RetryWait by ``not_before``, the others by their last change; plus
per-task run lists, per-key holders and the dedupe keys of live tasks. They are updated by the
reducer event by event, never rebuilt by scanning. :class:`RunIndex` wraps those queries with
typed results; the engine's hot path calls the raw queries directly.

>>> from actionqueue.engine.index import RunIndex
>>> RunIndex.__doc__.splitlines()[0]
'Typed accessors over the authority\\'s index queries.'
"""

from __future__ import annotations

from actionqueue.core.ids import RunId, TaskId
from actionqueue.core.run.run_instance import RunInstance
from actionqueue.core.run.state import RunState
from actionqueue.engine.ports import AuthorityPort, TaskRecordLike
from actionqueue.engine.selection import Candidate
from actionqueue.errors import ValidationError

__all__ = ["RunIndex"]

_from_wire = RunInstance.from_wire


def _check_limit(limit: int) -> int:
    if type(limit) is not int or limit < 0:
        raise ValidationError(f"limit must be an int >= 0, got {limit!r}")
    return limit


class RunIndex:
    """Typed accessors over the authority's index queries.

    Args:
        authority: anything implementing :class:`~actionqueue.engine.ports.AuthorityPort`.
    """

    __slots__ = ("_auth",)

    def __init__(self, authority: AuthorityPort) -> None:
        self._auth = authority

    # --- by state ----------------------------------------------------------------------------

    def due_scheduled(self, now: int, limit: int = 1_000) -> list[RunInstance]:
        """Scheduled runs with ``scheduled_at <= now``, earliest first."""
        return [_from_wire(w) for w in self._auth.due_scheduled(now, _check_limit(limit))]

    def due_retries(self, now: int, limit: int = 1_000) -> list[RunInstance]:
        """RetryWait runs with ``not_before <= now``, earliest first."""
        return [_from_wire(w) for w in self._auth.due_retries(now, _check_limit(limit))]

    def expired_leases(self, now: int, limit: int = 1_000) -> list[RunInstance]:
        """Leased, then Running runs whose lease is expired at ``now`` or missing."""
        return [_from_wire(w) for w in self._auth.expired_leases(now, _check_limit(limit))]

    def ready(self, limit: int = 100) -> list[Candidate]:
        """Ready runs in selection order, held keys skipped (see ``ready_candidates``)."""
        out = []
        for rid, tid, prio, at, seq, key in self._auth.ready_candidates(_check_limit(limit)):
            out.append(Candidate(RunId.from_bytes(rid), TaskId.from_bytes(tid), prio, at, seq, key))
        return out

    def count(self, state: RunState) -> int:
        """How many runs are in ``state``."""
        return self._auth.counts().get(RunState.from_wire(state), 0)

    def counts(self) -> dict[RunState, int]:
        """Run counts for all nine states (zeros included)."""
        got = self._auth.counts()
        return {s: got.get(s, 0) for s in RunState}

    # --- times -------------------------------------------------------------------------------

    def next_due(self) -> int | None:
        """The earliest Scheduled ``scheduled_at`` / RetryWait ``not_before``, or ``None``."""
        return self._auth.next_due()

    def next_lease_expiry(self) -> int | None:
        """The earliest lease expiry among Leased/Running runs, or ``None``."""
        return self._auth.next_lease_expiry()

    # --- per task / per key ------------------------------------------------------------------

    def task(self, task_id: TaskId) -> TaskRecordLike | None:
        return self._auth.get_task(task_id)

    def runs_for_task(self, task_id: TaskId) -> list[RunInstance]:
        """The task's runs still held (pruned ones are gone), in ordinal order."""
        return self._auth.runs_for_task(task_id)

    def key_holder(self, key: str) -> RunId | None:
        """The run holding concurrency key ``key`` (Leased/Running, or waiting to retry under
        ``hold_during_retry``), or ``None``."""
        b = self._auth.key_holder(key)
        return None if b is None else RunId.from_bytes(b)

    def task_by_dedupe_key(self, key: str) -> TaskId | None:
        """The *live* task holding dedupe key ``key``, or ``None``."""
        b = self._auth.task_by_dedupe_key(key)
        return None if b is None else TaskId.from_bytes(b)
