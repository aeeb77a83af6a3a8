"""``RunInstance``: a typed, immutable view of one run, built from what the Rust core reports.

The Rust projection owns run state; Python gets plain tuples (the *run tuple* of
``docs/DESIGN.md``) and turns them into these objects with :meth:`RunInstance.from_wire`.
A ``RunInstance`` is a snapshot: it does not change when the run does — ask the queue again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from actionqueue.core.ids import AttemptId, RunId, TaskId
from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.core.run.state import TERMINAL_STATES, RunState
from actionqueue.errors import ValidationError, WrongTypeError

__all__ = ["AttemptRecord", "Lease", "RunInstance", "StateChange"]

_RUNNING = RunState.RUNNING


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a run (``owner``) and until when (``expires_at``, ms since the epoch)."""

    owner: str
    expires_at: int

    def is_expired(self, now: int) -> bool:
        """Whether the lease has run out at ``now`` (expiry is inclusive: ``now >= expires_at``)."""
        return now >= self.expires_at


@dataclass(frozen=True, slots=True)
class StateChange:
    """One entry of a run's state history.

    ``from_state`` is ``None`` for the entry that records the run's creation (into Scheduled).
    ``reason`` is free text such as ``"lease expired"`` or ``"misfire: skipped"``.
    """

    from_state: RunState | None
    to_state: RunState
    at: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt of a run. ``finished_at`` and ``outcome`` are ``None`` while it is open."""

    attempt_id: AttemptId
    started_at: int
    finished_at: int | None = None
    outcome: AttemptOutcome | None = None
    error: str | None = None
    output: bytes | None = None

    @property
    def is_open(self) -> bool:
        """Whether the attempt has not finished yet."""
        return self.finished_at is None


@dataclass(frozen=True, slots=True)
class RunInstance:
    """One scheduled occurrence of a task, as the durable state describes it.

    Attributes:
        run_id: the run's id (also available as :attr:`id`).
        task_id: the task it belongs to.
        state: its current :class:`RunState`.
        ordinal: 0-based position among the task's runs (run *k* of a Repeat policy).
        scheduled_at: when it is due (ms since the epoch).
        created_at: when it was created.
        attempt_count: attempts that count toward ``max_attempts`` (Suspended ones do not).
        current_attempt: the open attempt's id; only ever set while ``state`` is Running.
        effective_priority: the task's priority, recorded when the run became Ready
            (``None`` until then).
        last_state_change_at: when ``state`` was entered (defaults to ``created_at``).
        not_before: in RetryWait, when it may become Ready again; otherwise usually ``None``.
        lease: the live lease while Leased/Running, else ``None``.
        history: every state change, oldest first (the first records creation).
        attempts: every attempt, oldest first.
        created_seq: the WAL sequence of the event that created the run (the last tie-break of
            selection order), or ``None`` when the producer did not report it.
    """

    run_id: RunId
    task_id: TaskId
    state: RunState
    ordinal: int
    scheduled_at: int
    created_at: int
    attempt_count: int = 0
    current_attempt: AttemptId | None = None
    effective_priority: int | None = None
    # -1 means "not given": filled in with created_at (times are never negative).
    last_state_change_at: int = -1
    not_before: int | None = None
    lease: Lease | None = None
    history: tuple[StateChange, ...] = ()
    attempts: tuple[AttemptRecord, ...] = ()
    created_seq: int | None = None

    def __post_init__(self) -> None:
        # Cheap invariant checks only: instances are mostly built from trusted Rust output.
        if not isinstance(self.run_id, RunId):
            raise WrongTypeError(
                f"RunInstance.run_id must be a RunId, got {type(self.run_id).__name__} "
                f"{self.run_id!r}"
            )
        if not isinstance(self.task_id, TaskId):
            raise WrongTypeError(
                f"RunInstance.task_id must be a TaskId, got {type(self.task_id).__name__} "
                f"{self.task_id!r}"
            )
        if not isinstance(self.state, RunState):
            raise WrongTypeError(
                f"RunInstance.state must be a RunState, got {type(self.state).__name__} "
                f"{self.state!r}; use RunState(value) to convert a wire value"
            )
        if self.current_attempt is not None and self.state is not _RUNNING:
            raise ValidationError(
                f"RunInstance.current_attempt is {self.current_attempt} but state is "
                f"{self.state}; only a Running run has an open attempt"
            )
        if self.last_state_change_at == -1:
            object.__setattr__(self, "last_state_change_at", self.created_at)

    @property
    def id(self) -> RunId:
        """The run's id (seed spelling of :attr:`run_id`)."""
        return self.run_id

    @property
    def is_terminal(self) -> bool:
        """Whether the run is Completed, Failed or Canceled."""
        return self.state in TERMINAL_STATES

    @property
    def open_attempt(self) -> AttemptRecord | None:
        """The attempt that has not finished yet, if any."""
        if self.current_attempt is None:
            return None
        for attempt in reversed(self.attempts):
            if attempt.attempt_id == self.current_attempt:
                return attempt
        return None

    @classmethod
    def from_wire(cls, wire: Sequence[Any]) -> RunInstance:
        """Build a ``RunInstance`` from the run tuple of ``docs/DESIGN.md``.

        ``(run_id, task_id, state, ordinal, scheduled_at, created_at, attempt_count,
        current_attempt_id | None, effective_priority | None, last_state_change_at,
        not_before | None, (owner, expires_at) | None,
        [(from_state | None, to_state, at, reason | None), ...],
        [(attempt_id, started_at, finished_at | None, outcome | None, error | None,
        output | None), ...][, created_seq])``

        Ids are 16 raw bytes, states and outcomes their int wire values, times int ms.
        """
        n = len(wire)
        if n not in (14, 15):
            raise ValidationError(
                f"a run tuple has 14 or 15 items (see docs/DESIGN.md), got {n}: {wire!r:.200}"
            )
        current = wire[7]
        lease = wire[11]
        state_of = RunState.from_wire
        outcome_of = AttemptOutcome.from_wire
        attempt_id_of = AttemptId.from_bytes
        return cls(
            run_id=RunId.from_bytes(wire[0]),
            task_id=TaskId.from_bytes(wire[1]),
            state=state_of(wire[2], "run state"),
            ordinal=wire[3],
            scheduled_at=wire[4],
            created_at=wire[5],
            attempt_count=wire[6],
            current_attempt=None if current is None else attempt_id_of(current),
            effective_priority=wire[8],
            last_state_change_at=wire[9],
            not_before=wire[10],
            lease=None if lease is None else Lease(lease[0], lease[1]),
            history=tuple(
                StateChange(
                    None if src is None else state_of(src, "history from_state"),
                    state_of(dst, "history to_state"),
                    at,
                    reason,
                )
                for src, dst, at, reason in wire[12]
            ),
            attempts=tuple(
                AttemptRecord(
                    attempt_id_of(aid),
                    started,
                    finished,
                    None if outcome is None else outcome_of(outcome, "attempt outcome"),
                    error,
                    None if output is None else bytes(output),
                )
                for aid, started, finished, outcome, error, output in wire[13]
            ),
            created_seq=wire[14] if n == 15 else None,
        )

    def to_wire(self) -> tuple[Any, ...]:
        """The run tuple this instance was (or could have been) built from; inverse of
        :meth:`from_wire`. Useful for tests and for a pure-Python model of the reducer."""
        lease = self.lease
        wire: tuple[Any, ...] = (
            self.run_id.bytes,
            self.task_id.bytes,
            int(self.state),
            self.ordinal,
            self.scheduled_at,
            self.created_at,
            self.attempt_count,
            None if self.current_attempt is None else self.current_attempt.bytes,
            self.effective_priority,
            self.last_state_change_at,
            self.not_before,
            None if lease is None else (lease.owner, lease.expires_at),
            [
                (
                    None if h.from_state is None else int(h.from_state),
                    int(h.to_state),
                    h.at,
                    h.reason,
                )
                for h in self.history
            ],
            [
                (
                    a.attempt_id.bytes,
                    a.started_at,
                    a.finished_at,
                    None if a.outcome is None else int(a.outcome),
                    a.error,
                    a.output,
                )
                for a in self.attempts
            ],
        )
        if self.created_seq is not None:
            wire += (self.created_seq,)
        return wire
