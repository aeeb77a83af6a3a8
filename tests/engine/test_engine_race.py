"""The engine's hint caches under concurrency: a finish and a dispatch interleaved.

``finish_attempt`` runs on worker threads while the driver calls ``dispatch_next``. A retry
with no backoff is Ready as soon as the finish batch is applied, so a dispatch that runs in
the window between "batch applied" and "hints updated" must not see stale hints (a wrong
``attempt`` number, and a later finish refused by the authority, leaving the run Running).
The authority below pauses right after applying the finish batch, which opens that window
deterministically.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from fake_authority import FakeAuthority

from actionqueue.core import (
    AttemptOutcome,
    DurabilityPolicy,
    RunPolicy,
    RunState,
    TaskConstraints,
    TaskId,
    TaskSpec,
)
from actionqueue.engine import Engine, ManualClock

T0 = 1_700_000_000_000


class PausingAuthority(FakeAuthority):
    """Pauses inside ``submit_wire`` after applying a batch holding an AttemptFinish."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.applied = threading.Event()
        self.proceed = threading.Event()

    def submit_wire(
        self,
        events: Sequence[tuple[Any, ...]],
        durability: DurabilityPolicy,
        expected_first: int | None = None,
    ) -> tuple[int, int]:
        out = super().submit_wire(events, durability, expected_first)
        if self.armed and any(e[0] == 4 for e in events):
            self.armed = False
            self.applied.set()
            self.proceed.wait(10)
        return out


def _engine(auth: FakeAuthority, durability: DurabilityPolicy) -> Engine:
    return Engine(
        auth,
        ManualClock(T0),
        owner="w1",
        rng=random.Random(3),
        default_lease_ms=10_000,
        durability=durability,
    )


@pytest.mark.parametrize("durability", [DurabilityPolicy.IMMEDIATE, DurabilityPolicy.DEFERRED])
def test_dispatch_during_finish_sees_the_new_attempt_count(durability: DurabilityPolicy) -> None:
    auth = PausingAuthority()
    engine = _engine(auth, durability)
    spec = TaskSpec(TaskId.new(), b"", RunPolicy.once(), TaskConstraints(max_attempts=2))
    engine.submit(spec)
    (d1,) = engine.dispatch_next(limit=1)
    assert d1.attempt == 1

    auth.armed = True
    states: list[RunState] = []
    finisher = threading.Thread(
        target=lambda: states.append(
            engine.finish_attempt(d1.run_id, d1.attempt_id, AttemptOutcome.RETRYABLE_FAILURE)
        )
    )
    finisher.start()
    assert auth.applied.wait(10)
    # The finish batch is applied (the run is RetryWait, due now) but finish_attempt has
    # not returned: dispatch now, from another thread.
    got: list[Any] = []
    dispatcher = threading.Thread(target=lambda: got.extend(engine.dispatch_next(limit=1)))
    dispatcher.start()
    dispatcher.join(1.0)  # a fixed engine makes it wait for the finish to complete
    auth.proceed.set()
    finisher.join(10)
    dispatcher.join(10)
    assert not finisher.is_alive()
    assert not dispatcher.is_alive()
    assert states == [RunState.RETRY_WAIT]
    if not got:  # the dispatch ran before the retry was promoted: take it now
        got = engine.dispatch_next(limit=1)
    (d2,) = got
    assert d2.run_id == d1.run_id
    assert d2.attempt == 2, f"stale attempt count: attempt {d2.attempt}, expected 2"
    # The second (last) attempt fails: the run must end Failed, not stay Running.
    assert (
        engine.finish_attempt(d2.run_id, d2.attempt_id, AttemptOutcome.RETRYABLE_FAILURE)
        is RunState.FAILED
    )
    (run,) = engine.runs_for_task(spec.task_id)
    assert run.state is RunState.FAILED
    assert len(run.attempts) == 2


def test_finish_racing_a_cancel_returns_canceled() -> None:
    """The run is canceled after finish_attempt read its hint but before it wrote: the finish
    must notice (under the engine lock) and report Canceled, not a refusal."""
    auth = FakeAuthority()
    engine = _engine(auth, DurabilityPolicy.IMMEDIATE)
    engine.submit(TaskSpec(TaskId.new(), b"", RunPolicy.once()))
    (d,) = engine.dispatch_next(limit=1)
    out: list[Any] = []

    def finish() -> None:
        try:
            out.append(engine.finish_attempt(d.run_id, d.attempt_id, AttemptOutcome.SUCCESS))
        except Exception as e:  # pragma: no cover - the failure this test guards against
            out.append(e)

    with engine._lock:  # the finisher reads its hint, then waits for the lock
        finisher = threading.Thread(target=finish)
        finisher.start()
        finisher.join(0.5)
        engine.cancel_run(d.run_id)  # re-entrant: this thread holds the lock
    finisher.join(10)
    assert out == [RunState.CANCELED]
    (run,) = auth.runs.values()
    assert run.state is RunState.CANCELED
