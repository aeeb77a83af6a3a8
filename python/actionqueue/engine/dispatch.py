"""Hot-loop building blocks: the commands of a dispatch and of a finished attempt.

Both are pure and cheap (a handful of command constructions per run); the wiring step submits
what they return as one atomic batch.

* :func:`plan_dispatch` — for each selected run: Ready → Leased, ``LeaseAcquire``,
  Leased → Running, ``AttemptStart`` with a fresh :class:`~actionqueue.core.ids.AttemptId`
  (four commands per run, in that order; with ``start=False`` only the first two).
* :func:`plan_finish` — ``AttemptFinish`` with the outcome, then Running → the state
  :func:`~actionqueue.core.run.attempt.decide` picks, with ``not_before`` for RetryWait from
  the task's backoff (or an explicit ``retry_delay``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Protocol

from actionqueue.core._validate import I64_MAX
from actionqueue.core.ids import AttemptId, RunId
from actionqueue.core.mutation import (
    AttemptFinishCommand,
    AttemptStartCommand,
    LeaseAcquireCommand,
    MutationCommand,
    RunStateTransitionCommand,
)
from actionqueue.core.run.attempt import AttemptOutcome, decide
from actionqueue.core.run.run_instance import RunInstance
from actionqueue.core.run.state import RunState
from actionqueue.core.task.constraints import TaskConstraints
from actionqueue.core.time import DurationLike, to_duration_ms
from actionqueue.errors import ValidationError

__all__ = [
    "COMMANDS_PER_DISPATCH",
    "HasRunId",
    "dispatched_attempts",
    "plan_dispatch",
    "plan_finish",
]

#: Commands :func:`plan_dispatch` emits per run when ``start=True``.
COMMANDS_PER_DISPATCH = 4

_READY = RunState.READY
_LEASED = RunState.LEASED
_RUNNING = RunState.RUNNING
_RETRY_WAIT = RunState.RETRY_WAIT
_FAILED = RunState.FAILED
_SUSPENDED = AttemptOutcome.SUSPENDED
_new_attempt = AttemptId.new


class HasRunId(Protocol):
    """Anything naming a run: a selection ``Candidate``, a ``RunInstance``..."""

    @property
    def run_id(self) -> RunId: ...


class _Rng(Protocol):
    def random(self) -> float: ...


def plan_dispatch(
    candidates: Iterable[HasRunId],
    owner: str,
    now: int,
    lease_ms: int | Callable[[HasRunId], int],
    *,
    start: bool = True,
) -> list[MutationCommand]:
    """The commands that lease (and start) each selected Ready run for ``owner``.

    ``lease_ms`` is the lease duration, or a function of the candidate (e.g. from its task's
    timeout via :func:`~actionqueue.engine.lease.lease_duration_ms`). The attempt ids are in
    the ``AttemptStartCommand`` s (see :func:`dispatched_attempts`).

    >>> from actionqueue.core import RunId
    >>> from actionqueue.engine.selection import Candidate
    >>> from actionqueue.core import TaskId
    >>> c = Candidate(RunId.new(), TaskId.new(), 0, 0, 1)
    >>> [cmd.KIND for cmd in plan_dispatch([c], "worker-1", 1_000, 30_000)]
    ['RunStateTransition', 'LeaseAcquire', 'RunStateTransition', 'AttemptStart']
    """
    if type(owner) is not str or not owner:
        raise ValidationError(f"owner must be a non-empty str, got {owner!r}")
    fixed = lease_ms if type(lease_ms) is int else None
    if fixed is not None and fixed <= 0:
        raise ValidationError(f"lease_ms must be > 0, got {fixed}")
    out: list[MutationCommand] = []
    append = out.append
    for c in candidates:
        rid = c.run_id
        ms = fixed if fixed is not None else lease_ms(c)  # type: ignore[operator]
        append(RunStateTransitionCommand(None, rid, _READY, _LEASED, now))
        append(LeaseAcquireCommand(None, rid, owner, min(I64_MAX, now + ms), now))
        if start:
            append(RunStateTransitionCommand(None, rid, _LEASED, _RUNNING, now))
            append(AttemptStartCommand(None, rid, _new_attempt(), now))
    return out


def dispatched_attempts(commands: Iterable[MutationCommand]) -> list[tuple[RunId, AttemptId]]:
    """``(run_id, attempt_id)`` of every ``AttemptStartCommand`` in a dispatch batch."""
    return [(c.run_id, c.attempt_id) for c in commands if type(c) is AttemptStartCommand]


def plan_finish(
    run: RunInstance,
    constraints: TaskConstraints,
    outcome: AttemptOutcome,
    now: int,
    error: str | None = None,
    output: bytes | None = None,
    retry_delay: DurationLike | None = None,
    rng: _Rng | None = None,
) -> list[MutationCommand]:
    """``[AttemptFinish, Running → next]`` for the open attempt of a Running run.

    ``next`` is ``decide(outcome, run.attempt_count, max_attempts, retry_on)``: the attempt was
    counted when it started, so ``run.attempt_count`` already includes it (a Suspended attempt
    is given back by the reducer and never exhausts the cap). Entering RetryWait sets
    ``not_before = now + delay``, where ``delay`` is ``retry_delay`` if given (int ms, float s
    or timedelta) or else the task's backoff for this attempt number (jitter from ``rng``).

    >>> from actionqueue.core import AttemptId, RunId, RunInstance, RunState, TaskId
    >>> from actionqueue.core import AttemptOutcome, Backoff, TaskConstraints
    >>> run = RunInstance(RunId.new(), TaskId.new(), RunState.RUNNING, 0, 0, 0,
    ...                   attempt_count=1, current_attempt=AttemptId.new())
    >>> c = TaskConstraints(max_attempts=3, retry=Backoff.fixed(500))
    >>> cmds = plan_finish(run, c, AttemptOutcome.RETRYABLE_FAILURE, 10_000, error="boom")
    >>> cmds[1].new_state.label, cmds[1].not_before
    ('RetryWait', 10500)
    """
    attempt = run.current_attempt
    if run.state is not _RUNNING or attempt is None:
        raise ValidationError(
            f"plan_finish needs a Running run with an open attempt, got run {run.run_id} in "
            f"{run.state} with current_attempt={attempt}"
        )
    rid = run.run_id
    counted = run.attempt_count
    target = decide(outcome, counted, constraints.max_attempts, constraints.retry_on)
    if type(outcome) is not AttemptOutcome:
        outcome = AttemptOutcome.from_wire(outcome, "outcome")
    not_before = None
    reason: str | None = None
    if target is _RETRY_WAIT:
        if retry_delay is None:
            delay = constraints.retry.delay_for(counted, rng or random)
        else:
            delay = to_duration_ms(retry_delay, "retry_delay")
            if delay < 0:
                raise ValidationError(f"retry_delay must be >= 0, got {retry_delay!r}")
        not_before = min(I64_MAX, now + delay)
        reason = f"{outcome}: attempt {counted} of {constraints.max_attempts}"
    elif target is _FAILED and outcome is not AttemptOutcome.TERMINAL_FAILURE:
        reason = f"{outcome}: attempt {counted} of {constraints.max_attempts}, no retry"
    return [
        AttemptFinishCommand(None, rid, attempt, outcome, now, error=error, output=output),
        RunStateTransitionCommand(
            None, rid, _RUNNING, target, now, not_before=not_before, reason=reason
        ),
    ]
