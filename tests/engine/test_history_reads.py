"""The engine's recurring work never reads a run's whole history: a run retried n times holds
n attempts and ~4n state changes, and a query that returns whole run tuples costs O(n) for it.
Reading one per retry made a run with ``max_attempts=5000`` cost O(n²) (4.3 ms per attempt at
5,000 attempts, 0.7 ms at 1,000; 0.25 ms flat with the lean query)."""

from __future__ import annotations

import random
from typing import Any

from test_engine import spec

from actionqueue.core import AttemptOutcome, Backoff, RunState
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
