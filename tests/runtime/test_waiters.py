"""Threads in ``wait()`` / ``result()`` are woken for their own target, not for every result.

Every recorded result used to wake every waiting thread, each of which then looked its target
up and slept again: O(waiters) per result, O(waiters²) in all. 1,000 threads each waiting for
its own task (a 2 ms handler, 4 workers) took 9.3 s of CPU and 9.2 s of wall time, against
0.55 s / 0.71 s now; with no loop running (the waiters drive in turn) 11.5 s -> 0.8 s.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import pytest
from rt_helpers import MakeQueue

import actionqueue as aq
from actionqueue.engine import ManualClock

DECOY = bytes(range(1, 17))
OTHER = bytes(range(2, 18))


@contextmanager
def watched(q: aq.ActionQueue, *keys: bytes) -> Iterator[dict[bytes, int]]:
    """Registers a waiter's condition for each key (a decoy first: the driver's role, offered
    when a driver stops, goes to the first waiter) and counts their notifications."""
    d = q._dispatcher
    counts = dict.fromkeys(keys, 0)
    with ExitStack() as stack:
        for key in (DECOY, *keys):
            cond = stack.enter_context(d.watching(key))
            if key in counts:

                def notify(n: int = 1, key: bytes = key, real=cond.notify) -> None:
                    counts[key] += 1
                    real(n)

                cond.notify = notify  # type: ignore[method-assign]
        yield counts


def test_a_result_wakes_the_waiters_of_its_run_and_task_only(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    q = make_queue(clock=clock)
    q.register("n", lambda ctx, p: p)
    q.pause()
    tid = q.submit("n", 1)
    (run,) = q.runs(tid)
    with watched(q, tid.bytes, run.run_id.bytes, OTHER) as counts:
        q.resume()  # may end any wait (a pause, a cancel...): wakes every waiter
        assert set(counts.values()) == {1}
        q.run_until_idle(timeout=30)
        assert q.result(tid) == 1
        assert counts[tid.bytes] >= 2
        assert counts[run.run_id.bytes] >= 2
        for i in range(20):  # submits, dispatches, results of other tasks
            q.submit("n", i)
            q.submit_many("n", [i, i])
            q.run_until_idle(timeout=30)
        assert counts[OTHER] == 1
        q.cancel(q.submit("n", 0, delay=60))  # a cancel may end any wait
        assert counts[OTHER] == 2


def test_a_run_a_tick_ends_wakes_its_waiters(make_queue: MakeQueue, clock: ManualClock) -> None:
    """A misfire cancel (or an expiry-sweep failure) ends a run with no result recorded."""
    q = make_queue(clock=clock)
    q.register("n", lambda ctx, p: p)
    skip = aq.RunPolicy.repeat(3, 1_000, misfire=aq.MisfirePolicy.skip(grace=0))
    tid = q.submit("n", 1, policy=skip)
    r0, r1, r2 = (r.run_id for r in q.runs(tid))
    with watched(q, r1.bytes) as counts:
        clock.advance(10_000)  # runs 1 and 2 are late: skipped; run 0 (Ready) runs
        q.run_until_idle(timeout=30)
        states = [q.get_run(r).state for r in (r0, r1, r2)]  # type: ignore[union-attr]
        assert states == [aq.RunState.COMPLETED, aq.RunState.CANCELED, aq.RunState.CANCELED]
        assert counts[r1.bytes] >= 1


def test_many_threads_waiting_with_no_loop_take_turns_driving(make_queue: MakeQueue) -> None:
    """With no loop running, one waiter drives; when its target is done it hands the role to
    another waiter instead of waking them all."""
    q = make_queue(max_workers=2)
    q.register("n", lambda ctx, p: p)
    q.pause()
    ids = q.submit_many("n", list(range(60)))
    got: dict[int, object] = {}
    errors: list[BaseException] = []

    def wait_for(i: int) -> None:
        try:
            got[i] = q.result(ids[i], timeout=60)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=wait_for, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    q.resume()
    for t in threads:
        t.join(90)
    assert not errors
    assert got == {i: i for i in range(60)}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("looping", [False, True], ids=["no-loop", "loop"])
def test_pending_awaits_do_not_hold_the_loops_default_executor(
    make_queue: MakeQueue, looping: bool
) -> None:
    """``aresult`` / ``await_task`` waited on a thread of the loop's default executor: a few
    waits for tasks due later (as many as its threads: 6 on a 2-core machine) blocked every
    other ``asyncio.to_thread`` call of the application — ``asubmit_many`` included — and
    the next awaits, until those tasks ran. Here the default executor has one thread."""
    q = make_queue()
    q.register("echo", lambda ctx, p: p)
    if looping:
        q.start()
    later = [q.submit("echo", i, delay=3600) for i in range(4)]

    async def main() -> list[object]:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=1))
        pending = [asyncio.ensure_future(q.aresult(t)) for t in later[:2]]
        pending += [asyncio.ensure_future(q.await_task(t)) for t in later[2:]]
        await asyncio.sleep(0)
        try:
            ids = await asyncio.wait_for(q.asubmit_many("echo", [1, 2]), 20)
            return [
                await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 20),
                *[await asyncio.wait_for(q.aresult(t), 20) for t in ids],
            ]
        finally:
            for p in pending:
                p.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            assert all(p.cancelled() for p in pending)

    assert asyncio.run(main()) == ["free", 1, 2]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("waiter", ["wait", "result"])
def test_an_immediate_wait_returns_once_the_outcome_is_durable(
    make_queue: MakeQueue, waiter: str
) -> None:
    """Results are applied first and synced with the driver's next step. ``wait`` /
    ``result`` returned as soon as the run was Completed in memory: a crash right after
    could lose the output the caller was handed, and the run would run again. Here the
    driver's sync is held back; the waiter must make the outcome durable itself."""
    q = make_queue()

    @q.handler("h")
    def h(ctx: object, p: int) -> int:
        return p + 1

    d = q._dispatcher
    release = threading.Event()
    real_sync = d._sync

    def held_sync(settling: list[object]) -> None:
        if settling:  # results to sync (a lease batch alone goes through)
            release.wait(10)
        real_sync(settling)  # type: ignore[arg-type]

    d._sync = held_sync  # type: ignore[method-assign]
    q.start()
    try:
        t = q.submit("h", 1)
        got = q.result(t, timeout=10) if waiter == "result" else q.wait(t, timeout=10)
        st = q.authority.stats()
        assert st.synced_sequence >= q.authority.latest_sequence
        assert got == (2 if waiter == "result" else None)
        assert q.stats()["in_flight"] == 0
        assert q.progress(q.runs(t)[0].run_id) is None
    finally:
        release.set()
