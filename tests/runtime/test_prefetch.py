"""Prefetch: while handlers are quick the loop leases up to ``prefetch`` runs per worker (the
extra ones wait in the thread executor's queue); handler concurrency stays ``max_workers``."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from rt_helpers import MakeQueue

from actionqueue.errors import ValidationError
from actionqueue.runtime.context import ContextSnapshot, HandlerContext
from actionqueue.runtime.executors.base import Job
from actionqueue.runtime.executors.threads import ThreadExecutor

pytestmark = pytest.mark.timeout(60)


def test_quick_handlers_lease_ahead_within_the_bound(make_queue: MakeQueue) -> None:
    q = make_queue(executor=ThreadExecutor(2, prefetch=4), durability="deferred")
    lock = threading.Lock()
    running = 0
    most_running = 0
    most_in_flight = 0
    loop = q._dispatcher
    # "Quick" is measured in real time; a generous bar keeps a loaded machine from failing this.
    loop.quick_attempt_s = 10.0

    def quick(ctx: Any, payload: Any) -> None:
        nonlocal running, most_running, most_in_flight
        with lock:
            running += 1
            most_running = max(most_running, running)
            most_in_flight = max(most_in_flight, len(loop.executing))
            running -= 1

    q.register("quick", quick)
    # Before any result, nothing says the handlers are quick: one run per worker.
    assert loop.free() == 2
    q.submit_many("quick", [b"x"] * 300)
    q.run_until_idle()
    assert q.stats()["runs"]["Completed"] == 300
    assert loop.avg_attempt_s is not None
    assert loop.avg_attempt_s < loop.quick_attempt_s
    assert loop.free() == 8  # 4 per worker, nothing in flight
    assert most_running <= 2
    assert 2 < most_in_flight <= 8


def test_slow_handlers_get_no_prefetch(make_queue: MakeQueue) -> None:
    q = make_queue(executor=ThreadExecutor(2, prefetch=4), durability="deferred")
    loop = q._dispatcher
    loop.quick_attempt_s = 10.0
    q.register("noop", lambda ctx, payload: None)
    q.submit_many("noop", [b"x"] * 50)
    q.run_until_idle()
    assert loop.free() == 8
    # Handlers slower than the bar (recorded durations are handler time, not queue time):
    # one run per worker again.
    loop.quick_attempt_s = 0.0
    assert loop.free() == 2


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "4"])
def test_prefetch_is_validated(bad: Any) -> None:
    with pytest.raises(ValidationError, match="prefetch must be an int >= 1"):
        ThreadExecutor(2, prefetch=bad)


def test_prefetch_one_never_queues_ahead(make_queue: MakeQueue) -> None:
    q = make_queue(executor=ThreadExecutor(2, prefetch=1), durability="deferred")
    q.register("noop", lambda ctx, payload: None)
    q.submit_many("noop", [b"x"] * 50)
    q.run_until_idle()
    assert q._dispatcher.free() == 2


def test_a_queued_jobs_time_starts_when_a_worker_runs_it() -> None:
    ex = ThreadExecutor(1, prefetch=4)
    snap = ContextSnapshot("t", "r", "a", 1, 1, 0, None, "h", 30.0)
    first_end: list[float] = []
    left: list[float | None] = []
    done = threading.Event()

    def first(ctx: Any, payload: Any) -> None:
        first_end.append(time.monotonic())

    def second(ctx: Any, payload: Any) -> None:
        left.append(ctx.time_left())

    jobs = [
        Job(first, None, HandlerContext(snap)),
        Job(second, None, HandlerContext(snap), timeout=30.0, on_done=lambda j, r: done.set()),
    ]
    try:
        ex.submit_many(jobs)  # one worker: the second job waits in the queue for the first
        assert done.wait(30)
    finally:
        ex.shutdown()
    assert jobs[1].started >= first_end[0]
    assert jobs[1].context._started >= first_end[0]
    assert left[0] is not None
    assert 0 < left[0] <= 30.0


@pytest.mark.parametrize("prefetch", [4, 1])
def test_priority_order_with_a_key_is_the_lease_order(make_queue: MakeQueue, prefetch: int) -> None:
    # docs/runtime.md (Prefetch): with one worker, X and Y (priority 10, key k) and Z (priority
    # 0). Y cannot be leased while X holds k; with prefetch Z is leased in X's batch and queued,
    # so it runs before Y. Without prefetch the order is strict: X, Y, Z.
    q = make_queue(executor=ThreadExecutor(1, prefetch=prefetch), durability="deferred")
    q._dispatcher.quick_attempt_s = 10.0  # "quick" is real time: a loaded machine must not matter
    order: list[str] = []
    q.register("h", lambda ctx, p: order.append(p))
    q.submit_many("h", [f"warm{i}" for i in range(20)])
    q.run_until_idle()  # the first results are in: the handlers are quick
    order.clear()
    q.pause()
    q.submit("h", "X", priority=10, concurrency_key="k")
    q.submit("h", "Y", priority=10, concurrency_key="k")
    q.submit("h", "Z", priority=0)
    q.resume()
    q.run_until_idle()
    assert order == (["X", "Z", "Y"] if prefetch > 1 else ["X", "Y", "Z"])


def test_results_of_a_prefetched_batch_do_not_wait_for_its_slow_last_job(
    make_queue: MakeQueue,
) -> None:
    """One worker, a batch of three quick runs then a slow one: the quick results are
    recorded while the slow handler still runs. They waited for it: results of a batch whose
    jobs were still queued woke nobody (the batch's last job was to record them), so with a
    slow last job the quick runs stayed Running in the log as long as it ran."""
    from actionqueue.engine import ManualClock

    clock = ManualClock(1_700_000_000_000)
    q = make_queue(executor=ThreadExecutor(1, prefetch=4), durability="deferred", clock=clock)
    q._dispatcher.quick_attempt_s = 10.0  # every handler counts as quick: prefetch is on
    release, slow_started = threading.Event(), threading.Event()
    q.register("quick", lambda ctx, p: p)

    def slow(ctx: Any, p: Any) -> None:
        slow_started.set()
        release.wait(30)

    q.register("slow", slow)
    q.submit_many("quick", [0, 1])
    q.run_until_idle(timeout=20)  # results recorded: the loop now knows its handlers
    q.pause()
    quick = q.submit_many("quick", [1, 2, 3], priority=5)
    q.submit("slow", 0)
    q.start()
    q.resume()
    try:
        assert slow_started.wait(20)
        for t in quick:
            q.wait(t, timeout=20)  # before the fix: only once the slow handler returned
        assert not release.is_set()
        assert [q.result(t) for t in quick] == [1, 2, 3]
    finally:
        release.set()
    assert q.stop(timeout=20)
