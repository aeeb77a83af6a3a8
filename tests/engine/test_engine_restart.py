"""Restart and crash scenarios: need durable state, so only the real authority runs them.

"Crash" = the authority handle is dropped and the data directory reopened; with Immediate
durability everything acknowledged is on disk, which is what a SIGKILL leaves behind.
"""

from __future__ import annotations

import pytest
from test_engine import drain, spec, states

from actionqueue.core import AttemptOutcome, Backoff, RunPolicy, RunState
from conftest import T0, Env

S = RunState
Out = AttemptOutcome


def test_repeat_accounting_survives_restart(real_env: Env) -> None:
    e = real_env.engine
    tid = e.submit(spec(RunPolicy.repeat(3, 1_000)))
    assert drain(e) == 1
    e = real_env.restart()
    for _ in range(5):
        drain(e)
        real_env.clock.advance(1_000)
    assert states(e, tid) == [S.COMPLETED] * 3
    e = real_env.restart()
    real_env.clock.advance(60_000)
    assert drain(e) == 0  # none extra after restart
    rec = e.get_task(tid)
    assert rec is not None
    assert rec.derived == 3


@pytest.mark.parametrize("step", ["scheduled", "ready", "leased", "running", "retry_wait", "done"])
def test_crash_at_every_step_then_restart(real_env: Env, step: str) -> None:
    e = real_env.engine
    origin = T0 + 1_000 if step == "scheduled" else T0
    tid = e.submit(spec(max_attempts=2, retry=Backoff.fixed(2_000)), origin=origin)
    if step == "ready":
        e.tick()
    elif step == "leased":
        e.tick()
        (run,) = e.runs_for_task(tid)
        rid = run.run_id.bytes
        real_env.auth.submit_wire(
            [(2, rid, 1, 2, None, None, T0), (5, rid, "w1", T0 + 10_000, T0)], e.durability
        )
    elif step in ("running", "retry_wait", "done"):
        (d,) = e.dispatch_next()
        if step == "retry_wait":
            e.finish_attempt(d.run_id, d.attempt_id, Out.RETRYABLE_FAILURE)
        elif step == "done":
            e.finish_attempt(d.run_id, d.attempt_id, Out.SUCCESS)
    before = states(e, tid)
    e = real_env.restart(crash=True)
    assert states(e, tid) == before  # recovery rebuilds exactly the same state
    # Time passes past any lease and backoff: the sweep recovers whatever was in flight.
    real_env.clock.advance(30_000)
    drain(e)
    # A Running run's attempt was recorded Lost by the sweep: it waits out its 2 s backoff.
    real_env.clock.advance(2_000)
    drain(e)
    (run,) = e.runs_for_task(tid)
    assert run.state is S.COMPLETED
    assert run.attempt_count <= 2
    if step == "done":
        assert len(run.attempts) == 1  # Completed stays Completed: never dispatched again
    if step == "running":
        assert [a.outcome for a in run.attempts] == [Out.LOST, Out.SUCCESS]


def test_pause_is_durable(real_env: Env) -> None:
    real_env.engine.pause()
    e = real_env.restart()
    assert e.is_paused
    e.submit(spec())
    assert e.dispatch_next() == []
    e.resume()
    assert drain(e) == 1


def test_key_gate_survives_restart(real_env: Env) -> None:
    e = real_env.engine
    e.submit(spec(key="k", max_attempts=2, retry=Backoff.fixed(5_000)))
    b = e.submit(spec(key="k"))
    (d,) = e.dispatch_next(limit=5)
    e.finish_attempt(d.run_id, d.attempt_id, Out.RETRYABLE_FAILURE)
    e = real_env.restart()
    assert e.dispatch_next(limit=5) == []  # still held in RetryWait after restart
    real_env.clock.advance(5_000)
    (d2,) = e.dispatch_next(limit=5)
    assert d2.run_id == d.run_id
    assert d2.attempt == 2  # the count came back from durable state
    e.finish_attempt(d2.run_id, d2.attempt_id, Out.SUCCESS)
    (d3,) = e.dispatch_next(limit=5)
    assert d3.task_id == b


def test_deferred_crash_loses_only_unflushed_records(real_env: Env) -> None:
    from actionqueue.core import DurabilityPolicy

    e = real_env.engine
    kept = e.submit(spec())
    e.submit(spec(), durability=DurabilityPolicy.DEFERRED)
    e = real_env.restart(crash=True)
    assert e.get_task(kept) is not None
    assert drain(e) >= 1
