"""Dispatch and finish plans, run end to end through a small reducer model."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from engine_model import Model

from actionqueue.core import (
    AttemptOutcome,
    Backoff,
    MisfirePolicy,
    RunPolicy,
    RunState,
    RunStateTransitionCommand,
    TaskConstraints,
    TaskId,
)
from actionqueue.engine import (
    COMMANDS_PER_DISPATCH,
    Candidate,
    DefaultSelector,
    derive_runs,
    dispatched_attempts,
    plan_dispatch,
    plan_expiry_sweep,
    plan_finish,
    plan_misfire,
    plan_retry_promotions,
    run_create_commands,
)
from actionqueue.engine.time.clock import ManualClock
from actionqueue.errors import ValidationError

Out = AttemptOutcome


def one_run(constraints: TaskConstraints) -> tuple[Model, ManualClock, TaskId]:
    model = Model()
    clock = ManualClock(1_000)
    tid = TaskId.new()
    model.add_task(tid, constraints)
    model.apply(run_create_commands(derive_runs(clock, tid, RunPolicy.once(), 0, clock.now())))
    model.apply(
        plan_misfire(model.in_state(RunState.SCHEDULED), MisfirePolicy(), clock.now()).commands(
            clock.now()
        )
    )
    return model, clock, tid


def dispatch(model: Model, clock: ManualClock) -> int:
    ready = [
        Candidate(
            r.run_id, r.task_id, r.effective_priority or 0, r.scheduled_at, r.created_seq or 0
        )
        for r in model.in_state(RunState.READY)
    ]
    picked = DefaultSelector(presorted=False).select(ready, 10, model.held_keys())
    cmds = plan_dispatch(picked, "w1", clock.now(), 30_000)
    model.apply(cmds)
    return len(dispatched_attempts(cmds))


def finish(model: Model, clock: ManualClock, outcome: AttemptOutcome) -> RunState:
    (run,) = model.in_state(RunState.RUNNING)
    c = model.constraints[run.task_id]
    model.apply(plan_finish(run, c, outcome, clock.now(), error="e", rng=random.Random(0)))
    return model.runs[run.run_id].state


def drive(model: Model, clock: ManualClock, outcomes: list[AttemptOutcome]) -> list[RunState]:
    states = []
    for outcome in outcomes:
        assert dispatch(model, clock) == 1
        states.append(finish(model, clock, outcome))
        clock.advance(60_000)
        model.apply(plan_retry_promotions(model.in_state(RunState.RETRY_WAIT), clock.now()))
    return states


def test_dispatch_emits_four_commands_per_run_in_order() -> None:
    model, clock, _ = one_run(TaskConstraints())
    (run,) = model.in_state(RunState.READY)
    cmds = plan_dispatch([run], "w1", clock.now(), 30_000)
    assert len(cmds) == COMMANDS_PER_DISPATCH
    assert [c.KIND for c in cmds] == [
        "RunStateTransition",
        "LeaseAcquire",
        "RunStateTransition",
        "AttemptStart",
    ]
    assert cmds[1].expires_at == clock.now() + 30_000  # type: ignore[attr-defined]
    model.apply(cmds)
    assert model.runs[run.run_id].state is RunState.RUNNING
    only_lease = plan_dispatch([run], "w1", 0, lambda c: 5, start=False)
    assert [c.KIND for c in only_lease] == ["RunStateTransition", "LeaseAcquire"]
    with pytest.raises(ValidationError, match="owner"):
        plan_dispatch([run], "", 0, 1)
    with pytest.raises(ValidationError, match="lease_ms"):
        plan_dispatch([run], "w", 0, 0)


def test_retry_cap_one_attempt() -> None:
    model, clock, _ = one_run(TaskConstraints(max_attempts=1))
    assert drive(model, clock, [Out.RETRYABLE_FAILURE]) == [RunState.FAILED]
    assert dispatch(model, clock) == 0
    assert model.attempts_started == 1


def test_retry_cap_three_attempts_same_run_unique_attempt_ids() -> None:
    model, clock, _ = one_run(TaskConstraints(max_attempts=3, retry=Backoff.fixed(10)))
    states = drive(model, clock, [Out.RETRYABLE_FAILURE] * 3)
    assert states == [RunState.RETRY_WAIT, RunState.RETRY_WAIT, RunState.FAILED]
    (run,) = model.runs.values()
    assert len({a.attempt_id for a in run.attempts}) == 3
    assert dispatch(model, clock) == 0


def test_timeout_and_mixed_outcomes() -> None:
    model, clock, _ = one_run(TaskConstraints(max_attempts=3))
    states = drive(model, clock, [Out.TIMEOUT, Out.RETRYABLE_FAILURE, Out.SUCCESS])
    assert states == [RunState.RETRY_WAIT, RunState.RETRY_WAIT, RunState.COMPLETED]
    (run,) = model.runs.values()
    assert [a.outcome for a in run.attempts] == [Out.TIMEOUT, Out.RETRYABLE_FAILURE, Out.SUCCESS]
    model2, clock2, _ = one_run(TaskConstraints(max_attempts=3))
    assert drive(model2, clock2, [Out.TIMEOUT, Out.TIMEOUT, Out.TIMEOUT])[-1] is RunState.FAILED


def test_terminal_failure_fails_at_once() -> None:
    model, clock, _ = one_run(TaskConstraints(max_attempts=5))
    assert drive(model, clock, [Out.TERMINAL_FAILURE]) == [RunState.FAILED]


def test_suspended_does_not_count() -> None:
    model, clock, _ = one_run(TaskConstraints(max_attempts=1))
    assert drive(model, clock, [Out.SUSPENDED]) == [RunState.SUSPENDED]
    (run,) = model.runs.values()
    assert run.attempt_count == 0
    model.apply(
        [RunStateTransitionCommand(None, run.run_id, RunState.SUSPENDED, RunState.READY, 1)]
    )
    assert drive(model, clock, [Out.RETRYABLE_FAILURE]) == [RunState.FAILED]
    assert model.attempts_started == 2


def test_not_before_from_backoff_or_explicit_delay() -> None:
    model, clock, _ = one_run(
        TaskConstraints(max_attempts=3, retry=Backoff.exponential(100, 1_000))
    )
    dispatch(model, clock)
    (run,) = model.in_state(RunState.RUNNING)
    c = model.constraints[run.task_id]
    move = plan_finish(run, c, Out.RETRYABLE_FAILURE, 5_000)[1]
    assert move.not_before == 5_100  # type: ignore[attr-defined]
    move = plan_finish(run, c, Out.RETRYABLE_FAILURE, 5_000, retry_delay=2.5)[1]
    assert move.not_before == 7_500  # type: ignore[attr-defined]
    move = plan_finish(run, c, Out.RETRYABLE_FAILURE, 5_000, retry_delay=timedelta(seconds=1))[1]
    assert move.not_before == 6_000  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="retry_delay"):
        plan_finish(run, c, Out.RETRYABLE_FAILURE, 5_000, retry_delay=-1)
    with pytest.raises(ValidationError, match="Running run with an open attempt"):
        plan_finish(
            model.runs[run.run_id].__class__(run.run_id, run.task_id, RunState.READY, 0, 0, 0),
            c,
            Out.SUCCESS,
            0,
        )


def test_lease_expiry_makes_the_run_eligible_again_and_keeps_lineage() -> None:
    model, clock, _ = one_run(TaskConstraints(max_attempts=2))
    dispatch(model, clock)
    clock.advance(30_000)
    model.apply(
        plan_expiry_sweep(
            ((r, model.constraints[r.task_id]) for r in model.in_state(RunState.RUNNING)),
            clock.now(),
        )
    )
    (run,) = model.runs.values()
    assert run.state is RunState.RETRY_WAIT
    model.apply(plan_retry_promotions([run], clock.now()))
    assert drive(model, clock, [Out.SUCCESS]) == [RunState.COMPLETED]
    (run,) = model.runs.values()
    assert [a.outcome for a in run.attempts] == [Out.LOST, Out.SUCCESS]
    assert any(h.reason == "lease expired: attempt lost" for h in run.history)
