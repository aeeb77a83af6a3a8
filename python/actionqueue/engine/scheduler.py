"""Scheduling decisions: promotion with misfire handling, retry wake-ups, the next wake-up.

Everything here is pure: functions take runs (``RunInstance`` snapshots from the Rust
projection), policies and ``now``, and return plans or commands (``sequence=None``) for the
mutation authority. Nothing reads a clock or touches storage.

Promotion and misfires
----------------------

A Scheduled run is *due* when ``scheduled_at <= now``. A due run is **missed** (a misfire)
when it is late by more than the grace: ``now - scheduled_at > grace``. A run late by exactly
``grace`` ms is on time. ``grace`` is the misfire policy's ``grace_ms``, or
:data:`~actionqueue.engine.derive.DEFAULT_GRACE_MS` (1 s) when it has none — a scheduler is
never woken at the exact millisecond, and a strict ``skip`` would otherwise drop runs that were
a few ms late; pass ``grace=0`` for strictness.

On-time due runs always become Ready (no history reason). Missed ones, per task:

=====================  ==========================================================================
misfire policy         missed runs
=====================  ==========================================================================
catch_up               all become Ready, reason ``"misfire: caught up 3m 5s late"``
catch_up(cap=C)        the most recent C become Ready; older ones are Canceled with
                       ``"misfire: catch-up cap C exceeded"``
coalesce               the most recent *due* run (missed or on time) runs once for all:
                       Ready with ``"misfire: coalesced N missed occurrences"``; the other missed
                       runs are Canceled with ``"misfire: coalesced into run <id>"``
skip                   all are Canceled with ``"misfire: skipped"``; the next occurrence runs
=====================  ==========================================================================

Runs derived after downtime may stand for whole stretches of occurrences (see
:mod:`actionqueue.engine.derive`); their counts appear in the reasons
(``"misfire: skipped (4312 occurrences)"``). :func:`plan_task_promotion` combines derivation
(window refill) and misfire planning for one task into one batch, which is what a scheduler
tick should submit per task.

Retries
-------

A run entering RetryWait after its n-th counted attempt gets
``not_before = entered_at + backoff.delay_for(n, rng)`` (:func:`retry_ready_at`); it becomes
Ready once ``not_before <= now`` (:func:`plan_retry_promotions`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from actionqueue.core._validate import I64_MAX
from actionqueue.core.ids import RunId, TaskId
from actionqueue.core.mutation import RunCreateCommand, RunStateTransitionCommand
from actionqueue.core.run.run_instance import RunInstance
from actionqueue.core.run.state import RunState
from actionqueue.core.task.constraints import Backoff
from actionqueue.core.task.run_policy import CronPolicy, MisfireKind, MisfirePolicy, RunPolicy
from actionqueue.engine.derive import (
    DerivationResult,
    FoldedOccurrences,
    derive_runs,
    effective_grace_ms,
    run_create_commands,
)
from actionqueue.engine.time.clock import Clock
from actionqueue.errors import ValidationError, WrongTypeError

__all__ = [
    "MisfirePlan",
    "PlannedTransition",
    "PromotionPlan",
    "is_misfire",
    "next_wakeup",
    "plan_misfire",
    "plan_retry_promotions",
    "plan_task_promotion",
    "retry_ready_at",
]

_SCHEDULED = RunState.SCHEDULED
_READY = RunState.READY
_CANCELED = RunState.CANCELED
_RETRY_WAIT = RunState.RETRY_WAIT


class _Rng(Protocol):
    def random(self) -> float: ...


class PlannedTransition(NamedTuple):
    """One planned state change of a run (becomes a ``RunStateTransitionCommand``)."""

    run_id: RunId
    from_state: RunState
    to_state: RunState
    reason: str | None = None

    def command(self, now: int) -> RunStateTransitionCommand:
        """The command for this change at ``now`` (``sequence=None``)."""
        return RunStateTransitionCommand(
            None, self.run_id, self.from_state, self.to_state, now, reason=self.reason
        )


@dataclass(frozen=True, slots=True)
class MisfirePlan:
    """The fate of a task's due Scheduled runs: each becomes Ready or Canceled.

    ``transitions`` are in ``scheduled_at`` order.
    """

    transitions: tuple[PlannedTransition, ...]

    @property
    def ready(self) -> tuple[PlannedTransition, ...]:
        """The runs that become Ready."""
        return tuple(t for t in self.transitions if t.to_state is _READY)

    @property
    def canceled(self) -> tuple[PlannedTransition, ...]:
        """The runs that are Canceled (with a ``"misfire: ..."`` reason)."""
        return tuple(t for t in self.transitions if t.to_state is _CANCELED)

    def commands(self, now: int) -> list[RunStateTransitionCommand]:
        """The transitions as commands at ``now``."""
        return [t.command(now) for t in self.transitions]


def caught_up_reason(late_ms: int) -> str:
    """The history reason of a run promoted ``late_ms`` after its time under catch-up.

    >>> caught_up_reason(5_000)
    'misfire: caught up 5 s late'
    """
    return f"misfire: caught up {_human_ms(late_ms)} late"


def _human_ms(ms: int) -> str:
    """``"250 ms"``, ``"42 s"``, ``"3h 2m 5s"``, ``"30d 0h 2m"`` — for history reasons."""
    if ms < 1_000:
        return f"{ms} ms"
    s = ms // 1_000
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    if d:
        return f"{d}d {h}h {m}m"
    if h:
        return f"{h}h {m}m {s}s"
    return f"{m}m {s}s"


def is_misfire(scheduled_at: int, now: int, grace_ms: int | None) -> bool:
    """Whether a run due at ``scheduled_at`` is *missed* at ``now``: late by more than the grace.

    ``grace_ms=None`` means :data:`~actionqueue.engine.derive.DEFAULT_GRACE_MS`.

    >>> is_misfire(1_000, 1_500, 500), is_misfire(1_000, 1_501, 500)
    (False, True)
    """
    return now - scheduled_at > effective_grace_ms(grace_ms)


def plan_misfire(
    due_runs: Iterable[RunInstance],
    misfire: MisfirePolicy,
    now: int,
    *,
    folded: Mapping[RunId, FoldedOccurrences] | None = None,
) -> MisfirePlan:
    """Plan the promotion of one task's due Scheduled runs under its misfire policy.

    ``due_runs`` are the task's Scheduled runs with ``scheduled_at <= now`` (any order).
    ``folded`` is :attr:`DerivationResult.folded` when some of them were just derived after
    downtime. See the module docs for the rules.

    >>> from actionqueue.core import MisfirePolicy, RunId, RunInstance, RunState, TaskId
    >>> tid = TaskId.new()
    >>> runs = [RunInstance(RunId.new(), tid, RunState.SCHEDULED, k, k * 60_000, 0)
    ...         for k in range(4)]
    >>> plan = plan_misfire(runs, MisfirePolicy.coalesce(grace=1_000), now=180_500)
    >>> [t.to_state.label for t in plan.transitions]
    ['Canceled', 'Canceled', 'Canceled', 'Ready']
    >>> plan.transitions[-1].reason
    'misfire: coalesced 3 missed occurrences'
    """
    if not isinstance(misfire, MisfirePolicy):
        raise WrongTypeError(
            f"misfire must be a MisfirePolicy, got {type(misfire).__name__} {misfire!r}"
        )
    runs = sorted(due_runs, key=lambda r: (r.scheduled_at, r.ordinal))
    for r in runs:
        if r.state is not _SCHEDULED or r.scheduled_at > now:
            raise ValidationError(
                f"plan_misfire takes due Scheduled runs (scheduled_at <= now={now}), got run "
                f"{r.run_id} in state {r.state} scheduled at {r.scheduled_at}"
            )
    if not runs:
        return MisfirePlan(())
    folds = folded or {}
    grace = effective_grace_ms(misfire.grace_ms)
    kind = misfire.kind
    fate: dict[RunId, PlannedTransition] = {}

    def ready(r: RunInstance, reason: str | None = None) -> None:
        fate[r.run_id] = PlannedTransition(r.run_id, _SCHEDULED, _READY, reason)

    def cancel(r: RunInstance, reason: str) -> None:
        fate[r.run_id] = PlannedTransition(r.run_id, _SCHEDULED, _CANCELED, reason)

    missed: list[RunInstance] = []
    for r in runs:
        f = folds.get(r.run_id)
        if f is not None and f.dropped:
            # Stands for a dropped stretch (skip / beyond the catch-up cap): always canceled.
            if kind is MisfireKind.CATCH_UP and misfire.cap is not None:
                cancel(r, f"misfire: catch-up cap {misfire.cap} exceeded ({f.occurrences_text})")
            else:
                cancel(r, f"misfire: skipped ({f.occurrences_text})")
        elif now - r.scheduled_at > grace:
            missed.append(r)
        else:
            ready(r)
    if missed:
        if kind is MisfireKind.CATCH_UP:
            cap = misfire.cap
            keep = missed if cap is None else missed[-cap:]
            if cap is not None:
                for r in missed[: len(missed) - len(keep)]:
                    cancel(r, f"misfire: catch-up cap {cap} exceeded")
            for r in keep:
                ready(r, caught_up_reason(now - r.scheduled_at))
        elif kind is MisfireKind.COALESCE:
            # The most recent due run (missed or on time) runs once for the whole window.
            survivor = next(
                r for r in reversed(runs) if not (r.run_id in folds and folds[r.run_id].dropped)
            )
            total = 0
            exact = True
            for r in missed:
                f = folds.get(r.run_id)
                total += 1 if f is None else f.count
                exact = exact and (f is None or f.exact)
                if r is not survivor:
                    cancel(r, f"misfire: coalesced into run {survivor.run_id}")
            n = f"{total}" if exact else f"{total}+"
            noun = "occurrence" if total == 1 and exact else "occurrences"
            ready(survivor, f"misfire: coalesced {n} missed {noun}")
        else:
            for r in missed:
                cancel(r, "misfire: skipped")
    return MisfirePlan(tuple(fate[r.run_id] for r in runs))


@dataclass(frozen=True, slots=True)
class PromotionPlan:
    """One task's scheduler tick: window refill plus promotion, as one atomic batch.

    Attributes:
        creates: the ``RunCreateCommand`` s (derived runs, in ordinal order).
        transitions: the Scheduled → Ready / Canceled changes.
        derivations: the derivation results, in order (the refill may take two steps).
        derived_total: runs derived for the task after this plan.
        last_scheduled_at: ``scheduled_at`` of the task's last derived run after this plan
            (the next tick's ``after``), or ``None`` if it has none.
        non_terminal: the task's non-terminal runs once the batch is applied.
        exhausted: whether the policy implies no further runs.
    """

    creates: tuple[RunCreateCommand, ...]
    transitions: tuple[PlannedTransition, ...]
    derivations: tuple[DerivationResult, ...]
    derived_total: int
    last_scheduled_at: int | None
    non_terminal: int
    exhausted: bool

    def commands(self, now: int) -> list[RunCreateCommand | RunStateTransitionCommand]:
        """Creates first, then transitions: submit as **one** batch."""
        out: list[RunCreateCommand | RunStateTransitionCommand] = list(self.creates)
        out.extend(t.command(now) for t in self.transitions)
        return out

    @property
    def is_empty(self) -> bool:
        return not self.creates and not self.transitions


def plan_task_promotion(
    clock: Clock,
    task_id: TaskId,
    run_policy: RunPolicy,
    due_runs: Iterable[RunInstance],
    *,
    now: int,
    already_derived: int,
    schedule_origin: int,
    after: int | None,
    non_terminal: int,
) -> PromotionPlan:
    """Plan one task's tick: refill a cron window (folding missed stretches) and promote.

    Args:
        clock: for ``created_at`` of derived runs.
        task_id / run_policy: the task.
        due_runs: its Scheduled runs with ``scheduled_at <= now``.
        now: the tick time.
        already_derived / schedule_origin / after / non_terminal: as for
            :func:`~actionqueue.engine.derive.derive_runs` (``non_terminal`` counts every
            non-terminal run of the task, the due ones included).

    Once and Repeat tasks derive everything at creation, so only promotion happens for them.
    For cron the refill runs after the due runs' fate is known, so runs canceled as misfires
    free their window slots in the same tick (otherwise a fully missed window would leave the
    task with nothing scheduled and no wake-up).
    """
    due = list(due_runs)
    creates: list[RunCreateCommand] = []
    transitions: list[PlannedTransition] = []
    derivations: list[DerivationResult] = []
    total = already_derived
    last = after
    nt = non_terminal
    exhausted = not isinstance(run_policy, CronPolicy)
    if isinstance(run_policy, CronPolicy):
        misfire = run_policy.misfire
        grace = effective_grace_ms(misfire.grace_ms)
        # Under coalesce, skip and capped catch-up the task's missed runs and the stretch
        # missed after them are one missed window, planned together in the first round. Most
        # missed runs are about to be canceled or superseded, so they do not hold window slots
        # for the refill; the ones that survive (the coalesce survivor, the runs a cap keeps)
        # do count once planned, and the future runs derived past the window are dropped again
        # below. Only the missed runs a cap keeps may overfill the window (the cap bounds them).
        folding = misfire.kind is not MisfireKind.CATCH_UP or misfire.cap is not None
        held = nt
        if folding:
            held -= sum(1 for r in due if now - r.scheduled_at > grace)
        # A second round is needed only when cancellations opened window slots; the first
        # round consumes every missed stretch, so later rounds derive on-time or future runs.
        for _ in range(3):
            d = derive_runs(
                clock,
                task_id,
                run_policy,
                total,
                schedule_origin,
                after=last,
                non_terminal=max(0, held),
                now=now,
            )
            batch_due = due + [r for r in d.derived if r.scheduled_at <= now]
            due = []
            plan = plan_misfire(batch_due, misfire, now, folded=d.folded)
            transitions.extend(plan.transitions)
            nt += len(d.derived) - len(plan.canceled)
            if nt > run_policy.window:
                trimmed = _trim_future(d, now, nt - run_policy.window)
                nt -= len(d.derived) - len(trimmed.derived)
                d = trimmed
            derivations.append(d)
            creates.extend(run_create_commands(d))
            total = d.derived_total
            exhausted = d.exhausted
            if d.derived:
                last = d.last_scheduled_at
            if exhausted or nt >= run_policy.window:
                break
            held = nt
    else:
        plan = plan_misfire(due, run_policy.misfire, now)
        transitions.extend(plan.transitions)
        nt -= len(plan.canceled)
    return PromotionPlan(
        tuple(creates), tuple(transitions), tuple(derivations), total, last, nt, exhausted
    )


def _trim_future(d: DerivationResult, now: int, excess: int) -> DerivationResult:
    """``d`` without up to ``excess`` of its last runs that are not due yet: the future runs
    derived past the window because missed runs the refill did not count survived their
    misfire planning. (Runs standing for missed stretches are due, so they always stay.)"""
    runs = d.derived
    keep = len(runs)
    while keep and excess and runs[keep - 1].scheduled_at > now:
        keep -= 1
        excess -= 1
    if keep == len(runs):
        return d
    dropped = len(runs) - keep
    return DerivationResult(runs[:keep], d.derived_total - dropped, False, d.folded)


def retry_ready_at(
    entered_at: int, backoff: Backoff, attempt_number: int, rng: _Rng | None = None
) -> int:
    """When a run that entered RetryWait at ``entered_at`` may become Ready again.

    ``attempt_number`` is the counted attempt that just failed (1 for the first). With jitter,
    ``rng.random()`` picks the offset: pass a seeded ``random.Random`` for determinism.

    >>> from actionqueue.core import Backoff
    >>> retry_ready_at(10_000, Backoff.exponential(100, 1_000), 3)
    10400
    """
    if not isinstance(backoff, Backoff):
        raise WrongTypeError(f"backoff must be a Backoff, got {type(backoff).__name__} {backoff!r}")
    return min(I64_MAX, entered_at + backoff.delay_for(attempt_number, rng or random))


def plan_retry_promotions(
    retry_wait_runs: Iterable[RunInstance], now: int, *, ordered: bool = False
) -> list[RunStateTransitionCommand]:
    """RetryWait → Ready for every run whose ``not_before <= now``.

    With ``ordered=True`` the runs are taken to arrive by ``not_before`` ascending (as the
    index yields them) and the scan stops at the first one not yet due.
    """
    out: list[RunStateTransitionCommand] = []
    for r in retry_wait_runs:
        if r.state is not _RETRY_WAIT:
            raise ValidationError(
                f"plan_retry_promotions takes RetryWait runs, got run {r.run_id} in {r.state}"
            )
        nb = r.not_before
        if nb is None or nb <= now:
            out.append(RunStateTransitionCommand(None, r.run_id, _RETRY_WAIT, _READY, now))
        elif ordered:
            break
    return out


def next_wakeup(
    next_scheduled_at: int | None = None,
    next_retry_at: int | None = None,
    next_lease_expiry: int | None = None,
) -> int | None:
    """When the engine next has something to do: the earliest of the next Scheduled run's
    ``scheduled_at``, the next RetryWait ``not_before`` and the next lease expiry; ``None``
    when nothing is pending (sleep until woken by a submit). A time ``<= now`` means "now".

    >>> next_wakeup(5_000, None, 3_000), next_wakeup()
    (3000, None)
    """
    best: int | None = None
    for t in (next_scheduled_at, next_retry_at, next_lease_expiry):
        if t is not None and (best is None or t < best):
            best = t
    return best
