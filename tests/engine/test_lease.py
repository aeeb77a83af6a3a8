"""Lease boundaries, heartbeats, durations, release and the expiry sweep."""

from __future__ import annotations

import random

import pytest

from actionqueue.core import (
    AttemptFinishCommand,
    AttemptId,
    AttemptOutcome,
    Backoff,
    Lease,
    LeaseExpireCommand,
    RetryOn,
    RunId,
    RunInstance,
    RunState,
    RunStateTransitionCommand,
    TaskConstraints,
    TaskId,
)
from actionqueue.engine import (
    DEFAULT_LEASE_MS,
    LEASE_TIMEOUT_MARGIN_MS,
    extend,
    heartbeat_interval_ms,
    is_expired,
    lease_duration_ms,
    plan_expiry,
    plan_expiry_sweep,
    plan_heartbeat,
    plan_release,
)
from actionqueue.engine.time.clock import ManualClock
from actionqueue.errors import LeaseError, ValidationError

TID = TaskId.new()


def leased(expires_at: int | None, owner: str = "w1") -> RunInstance:
    lease = None if expires_at is None else Lease(owner, expires_at)
    return RunInstance(RunId.new(), TID, RunState.LEASED, 0, 0, 0, lease=lease)


def running(expires_at: int | None, attempts: int = 1, open_attempt: bool = True) -> RunInstance:
    lease = None if expires_at is None else Lease("w1", expires_at)
    return RunInstance(
        RunId.new(),
        TID,
        RunState.RUNNING,
        0,
        0,
        0,
        attempt_count=attempts,
        current_attempt=AttemptId.new() if open_attempt else None,
        lease=lease,
    )


def test_expiry_boundary_and_clock_moved_back() -> None:
    clock = ManualClock(1_000)
    lease = Lease("w1", clock.now() + 30_000)
    clock.set(lease.expires_at - 1)
    assert not is_expired(lease, clock.now())
    clock.set(lease.expires_at)
    assert is_expired(lease, clock.now())
    clock.set(500)  # moved back: live again
    assert not is_expired(lease, clock.now())
    run = leased(lease.expires_at)
    assert plan_expiry(run, TaskConstraints(), lease.expires_at - 1) == []
    assert len(plan_expiry(run, TaskConstraints(), lease.expires_at)) == 2


def test_heartbeat_never_shortens() -> None:
    assert extend(Lease("w", 100), 10, 50) == Lease("w", 100)
    assert extend(Lease("w", 100), 80, 50) == Lease("w", 130)
    run = leased(10_000)
    cmd = plan_heartbeat(run, "w1", 1_000, 30_000)
    assert (cmd.owner, cmd.expires_at, cmd.timestamp) == ("w1", 31_000, 1_000)
    assert plan_heartbeat(run, "w1", 1_000, 5_000).expires_at == 10_000
    with pytest.raises(LeaseError, match="not leased by 'w2'"):
        plan_heartbeat(run, "w2", 1_000, 30_000)
    with pytest.raises(LeaseError, match="expired"):
        plan_heartbeat(run, "w1", 10_000, 30_000)


def test_lease_durations() -> None:
    assert lease_duration_ms() == DEFAULT_LEASE_MS == 30_000
    assert lease_duration_ms(TaskConstraints(timeout=1.0)) == DEFAULT_LEASE_MS
    long = TaskConstraints(timeout=120.0)
    assert lease_duration_ms(long) == 120_000 + LEASE_TIMEOUT_MARGIN_MS
    assert lease_duration_ms(long) > long.timeout_ms  # type: ignore[operator]
    assert heartbeat_interval_ms(30_000) == 10_000
    with pytest.raises(ValidationError):
        lease_duration_ms(None, 0)


def test_release_returns_a_leased_run_to_ready_with_history() -> None:
    run = leased(10_000)
    release, back = plan_release(run, "w1", 5)
    assert release.KIND == "LeaseRelease"
    assert isinstance(back, RunStateTransitionCommand)
    assert (back.previous_state, back.new_state, back.reason) == (
        RunState.LEASED,
        RunState.READY,
        "lease released",
    )
    with pytest.raises(LeaseError):
        plan_release(run, "other", 5)
    with pytest.raises(LeaseError, match="only a Leased run"):
        plan_release(running(10_000), "w1", 5)


def test_expired_leased_run_goes_back_to_ready() -> None:
    run = leased(100)
    expire, back = plan_expiry(run, TaskConstraints(), 100)
    assert isinstance(expire, LeaseExpireCommand)
    assert expire.owner == "w1"
    assert isinstance(back, RunStateTransitionCommand)
    assert (back.new_state, back.reason) == (RunState.READY, "lease expired")


def test_expired_running_run_loses_its_attempt_and_retries_with_backoff() -> None:
    run = running(100, attempts=1)
    c = TaskConstraints(max_attempts=3, retry=Backoff.fixed(2_000))
    expire, finish, move = plan_expiry(run, c, 150)
    assert isinstance(expire, LeaseExpireCommand)
    assert isinstance(finish, AttemptFinishCommand)
    assert (finish.attempt_id, finish.outcome) == (run.current_attempt, AttemptOutcome.LOST)
    assert isinstance(move, RunStateTransitionCommand)
    assert (move.new_state, move.not_before) == (RunState.RETRY_WAIT, 2_150)


def test_expired_running_run_fails_when_attempts_are_used_up_or_lost_not_retryable() -> None:
    run = running(100, attempts=3)
    *_, move = plan_expiry(run, TaskConstraints(max_attempts=3), 100)
    assert isinstance(move, RunStateTransitionCommand)
    assert move.new_state is RunState.FAILED
    assert "3 of 3" in (move.reason or "")
    strict = TaskConstraints(max_attempts=5, retry_on=RetryOn(lost=False))
    *_, move = plan_expiry(running(100, attempts=1), strict, 100)
    assert move.new_state is RunState.FAILED  # type: ignore[attr-defined]


def test_runs_without_a_lease_are_swept_too() -> None:
    cmds = plan_expiry(leased(None), TaskConstraints(), 0)
    assert [c.KIND for c in cmds] == ["RunStateTransition"]
    no_attempt = running(None, attempts=0, open_attempt=False)
    (move,) = plan_expiry(no_attempt, TaskConstraints(), 7)
    assert isinstance(move, RunStateTransitionCommand)
    assert (move.new_state, move.not_before) == (RunState.RETRY_WAIT, 7)


def test_sweep_stops_at_the_first_live_lease_when_ordered() -> None:
    c = TaskConstraints()
    runs = [(leased(None), c), (leased(50), c), (leased(500), c), (leased(60), c)]
    assert len(plan_expiry_sweep(runs, 100)) == 1 + 2
    assert len(plan_expiry_sweep(runs, 100, ordered=False)) == 1 + 2 + 2
    other_states = [(RunInstance(RunId.new(), TID, RunState.READY, 0, 0, 0), c)]
    assert plan_expiry_sweep(other_states, 100) == []


def test_jittered_sweep_is_deterministic() -> None:
    c = TaskConstraints(max_attempts=5, retry=Backoff.exponential(1_000, 10_000, jitter=0.3))
    run = running(0, attempts=2)
    a = plan_expiry(run, c, 10, random.Random(1))[-1]
    b = plan_expiry(run, c, 10, random.Random(1))[-1]
    assert a == b
