"""Lease heartbeats of running attempts: a live owner never loses its lease."""

from __future__ import annotations

import threading
import time
from typing import Any

from rt_helpers import T0, MakeQueue

from actionqueue import RunState
from actionqueue.engine import ManualClock


def test_a_batch_that_fills_every_slot_wakes_the_loop_for_its_first_heartbeat(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    """The step that dispatches a batch must wake up for that batch's first heartbeat. With
    every slot taken it used to sleep until the next due work — the new leases' expiry — when
    the heartbeat is refused and the sweep records the live attempts as Lost."""
    q = make_queue(clock=clock, lease=3, max_workers=2)
    started = threading.Semaphore(0)
    release = threading.Event()

    @q.handler("long", max_attempts=1)
    def long(ctx: Any, payload: Any) -> Any:
        started.release()
        release.wait(30)
        return payload

    tids = q.submit_many("long", [1, 2])
    try:
        dispatched, wake = q._dispatcher.step()  # the loop's step, driven by hand
        assert dispatched == 2
        assert q._dispatcher.free() == 0
        assert wake == T0 + 3_000 // 3  # the first heartbeat, not the lease expiry
        assert started.acquire(timeout=10)
        assert started.acquire(timeout=10)
        for _ in range(6):  # two leases' worth of clock time, a heartbeat at each third
            clock.advance(1_000)
            dispatched, wake = q._dispatcher.step()
            assert dispatched == 0
            assert wake == clock.now() + 1_000
    finally:
        release.set()
    q.run_until_idle(timeout=10)
    for tid in tids:
        (run,) = q.runs(tid)
        assert run.state is RunState.COMPLETED
        assert [a.outcome.label for a in run.attempts] == ["Success"]
    assert q.metrics.value("heartbeats_total") == 12


def test_a_lease_expired_under_a_live_handler_stops_it_and_records_it_lost(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    """A clock jump past the lease is treated like a crash, but the handler is told: its
    ``ctx.cancelled`` is set with reason ``"lost"``, and the retry runs after it."""
    q = make_queue(clock=clock, lease=3, max_workers=1)
    first = threading.Event()
    reasons: list[str | None] = []

    @q.handler("long", max_attempts=2, backoff=None)
    def long(ctx: Any, payload: Any) -> str:
        if ctx.attempt == 1:
            first.set()
            ctx.cancelled.wait(30)
            reasons.append(ctx.cancelled.reason)
            return "too late"
        return "done"

    tid = q.submit("long")
    q._dispatcher.step()
    assert first.wait(10)
    clock.advance(60_000)  # far past the lease, with the handler still running
    q.run_until_idle(timeout=20)
    assert reasons == ["lost"]
    (run,) = q.runs(tid)
    assert run.state is RunState.COMPLETED
    assert [a.outcome.label for a in run.attempts] == ["Lost", "Success"]
    assert q.result(tid) == "done"
    # The sweep's Lost attempt is counted (it never was: the late result is dropped), so
    # every attempt started is counted once among the outcomes.
    m = q.metrics
    assert m.snapshot()["outcomes_total"] == {
        "handler=long,outcome=Lost": 1.0,
        "handler=long,outcome=Success": 1.0,
    }
    assert m.total("outcomes_total") == m.total("dispatched_total") == 2


def test_a_lost_attempts_late_result_leaves_the_next_attempt_in_flight(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    """Attempt 1 loses its lease under a thread that cannot be stopped; attempt 2 of the same
    run (no concurrency key: nothing keeps it back) is dispatched while it still runs. When
    attempt 1 returns, its (stale) result must not drop attempt 2 from the in-flight attempts:
    attempt 2 would no longer be heartbeated, would lose its lease under its live handler as
    time moves on, and would never be told to stop."""
    q = make_queue(clock=clock, lease=10, max_workers=2)
    a1_started, a1_done, a2_started, a2_go = (threading.Event() for _ in range(4))
    log: list[tuple[str, int]] = []

    def h(ctx: Any, p: str) -> None:
        log.append((p, ctx.attempt))
        if ctx.attempt == 1:
            a1_started.set()
            a2_started.wait(10)  # ignores ctx.cancelled, like any thread that cannot be stopped
            a1_done.set()
        else:
            a2_started.set()
            a2_go.wait(10)

    q.register("h", h)
    a = q.submit("h", "A", max_attempts=2)
    q.start()
    assert a1_started.wait(10)
    clock.advance(11_000)  # attempt 1's lease is gone: recorded Lost, attempt 2 dispatched
    assert a2_started.wait(10)
    assert a1_done.wait(10)
    time.sleep(0.3)  # attempt 1's late result is handed back and dropped (stale)
    for _ in range(5):  # time moves on normally: a live attempt is heartbeated
        time.sleep(0.1)
        clock.advance(3_000)
        time.sleep(0.1)
    (ra,) = q.runs(a)
    assert ra.state is RunState.RUNNING
    assert [x.outcome.label if x.outcome else None for x in ra.attempts] == ["Lost", None]
    a2_go.set()
    q.run_until_idle(timeout=20)
    assert [x.outcome.label for x in q.runs(a)[0].attempts] == ["Lost", "Success"]
    assert log == [("A", 1), ("A", 2)]


def test_a_lost_attempts_handler_keeps_its_key_until_it_returns(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    """The same lost lease with a concurrency key: the run's retry (which keeps the key) and
    the key's other run wait until the handler of the Lost attempt really returns — a key
    never has two handlers running at once in this process."""
    q = make_queue(clock=clock, lease=10, max_workers=2)
    a1_started, a1_go = threading.Event(), threading.Event()
    log: list[tuple[str, int]] = []

    def h(ctx: Any, p: str) -> None:
        log.append((p, ctx.attempt))
        if p == "A" and ctx.attempt == 1:
            a1_started.set()
            a1_go.wait(10)  # ignores ctx.cancelled
        log.append((p + " end", ctx.attempt))

    q.register("h", h)
    a = q.submit("h", "A", concurrency_key="k", max_attempts=2)
    b = q.submit("h", "B", concurrency_key="k")
    q.start()
    assert a1_started.wait(10)
    clock.advance(11_000)  # attempt 1's lease is gone: recorded Lost
    deadline = time.monotonic() + 10
    while q.runs(a)[0].attempts[0].outcome is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert q.stats()["busy_keys"] == ["k"]
    a1_go.set()
    q.run_until_idle(timeout=20)
    assert log[:2] == [("A", 1), ("A end", 1)]  # nothing else started before it returned
    assert [x.outcome.label for x in q.runs(a)[0].attempts] == ["Lost", "Success"]
    assert q.runs(b)[0].state is RunState.COMPLETED
    assert q.stats()["busy_keys"] == []
