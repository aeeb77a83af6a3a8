"""A concurrency key stays busy while a stopped handler's code still runs.

A thread cannot be stopped: with the thread executor (and an asyncio executor's sync handlers,
an ``async def`` handler that swallows its cancellation, a ``concurrent.futures`` thread pool)
a timed-out or canceled handler goes on after its outcome is recorded. The log releases the
run's key with that outcome; the runtime keeps the key busy until the handler returns, so the
key's next run never starts beside it. These tests used to see two handlers of one key at
once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rt_helpers import MakeQueue

from actionqueue import RunState
from actionqueue.engine import ManualClock
from actionqueue.errors import WaitTimeoutError

pytestmark = pytest.mark.timeout(120)


class Overlap:
    """Counts handlers of one key running at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.most = 0
        self.order: list[str] = []

    def enter(self, name: str) -> None:
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
            self.order.append(f"{name} start")

    def leave(self, name: str) -> None:
        with self.lock:
            self.active -= 1
            self.order.append(f"{name} end")


def _first_stuck_then_second(q: Any, overlap: Overlap, release: threading.Event) -> None:
    """Submits a stuck run and a second run on key ``k`` (handler ``h``, registered by the
    caller); checks that the second waits for the stuck handler to return."""
    first = q.submit("h", "first", concurrency_key="k")
    second = q.submit("h", "second", concurrency_key="k")
    q.wait(first, timeout=20)  # its Timeout is recorded; its handler still runs
    assert q.runs(first)[0].state is RunState.FAILED
    assert q.stats()["busy_keys"] == ["k"]
    assert q.metrics.value("busy_keys") == 1
    assert q.runs(second)[0].state is RunState.READY  # not dispatched beside it
    # Not idle: a run waits for the key, and the key for a handler that will return.
    with pytest.raises(WaitTimeoutError):
        q.run_until_idle(timeout=0.2)
    assert q.runs(second)[0].state is RunState.READY
    release.set()
    q.run_until_idle(timeout=20)
    assert q.runs(second)[0].state is RunState.COMPLETED
    assert overlap.most == 1
    assert overlap.order == ["first start", "first end", "second start", "second end"]
    assert q.stats()["busy_keys"] == []
    assert q.metrics.value("busy_keys") == 0


def _register_stuck_sync(q: Any, overlap: Overlap, release: threading.Event) -> None:
    """Handler ``h``: the run named "first" ignores its timeout until ``release``."""

    @q.handler("h", timeout=0.05, max_attempts=1)
    def h(ctx: Any, name: str) -> None:
        overlap.enter(name)
        if name == "first":
            release.wait(20)  # ignores ctx.cancelled
        overlap.leave(name)


@pytest.mark.parametrize(
    "executor", ["threads", "asyncio"], ids=["thread executor", "asyncio sync handler"]
)
def test_a_timed_out_sync_handler_keeps_the_key_until_its_thread_returns(
    make_queue: MakeQueue, executor: str
) -> None:
    q = make_queue(executor=executor, max_workers=4)
    overlap, release = Overlap(), threading.Event()
    _register_stuck_sync(q, overlap, release)
    _first_stuck_then_second(q, overlap, release)


def test_asyncio_handler_swallowing_its_cancellation_keeps_the_key(
    make_queue: MakeQueue,
) -> None:
    q = make_queue(executor="asyncio")
    overlap, release = Overlap(), threading.Event()

    @q.handler("h", timeout=0.05, max_attempts=1)
    async def h(ctx: Any, name: str) -> None:
        overlap.enter(name)
        if name == "first":
            while not release.is_set():
                with contextlib.suppress(asyncio.CancelledError):  # goes on regardless
                    await asyncio.sleep(0.01)
        overlap.leave(name)

    _first_stuck_then_second(q, overlap, release)


def test_a_thread_pool_future_keeps_the_key_until_its_task_ends(make_queue: MakeQueue) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        q = make_queue(executor=pool)
        overlap, release = Overlap(), threading.Event()
        _register_stuck_sync(q, overlap, release)
        _first_stuck_then_second(q, overlap, release)
        assert q.stop(timeout=10)


def test_a_canceled_handler_keeps_its_key_too(make_queue: MakeQueue) -> None:
    q = make_queue(max_workers=4)
    overlap, release, started = Overlap(), threading.Event(), threading.Event()

    @q.handler("h", max_attempts=1)
    def h(ctx: Any, name: str) -> None:
        overlap.enter(name)
        if name == "first":
            started.set()
            release.wait(20)
        overlap.leave(name)

    first = q.submit("h", "first", concurrency_key="k")
    second = q.submit("h", "second", concurrency_key="k")
    q.start()
    assert started.wait(20)
    q.cancel(first)
    q.wait(first, timeout=20)
    assert q.runs(first)[0].state is RunState.CANCELED
    with pytest.raises(WaitTimeoutError):  # the loop runs, but not the key's next run
        q.wait(second, timeout=0.3)
    assert q.runs(second)[0].state is RunState.READY
    release.set()
    assert q.result(second, timeout=20) is None
    assert overlap.most == 1
    assert q.stop(timeout=10)


def test_other_keys_and_keyless_runs_are_not_held_back(make_queue: MakeQueue) -> None:
    q = make_queue(max_workers=4)
    release = threading.Event()

    @q.handler("h", timeout=0.05, max_attempts=1)
    def h(ctx: Any, name: str) -> str:
        if name == "stuck":
            release.wait(20)
        return name

    stuck = q.submit("h", "stuck", concurrency_key="k")
    q.wait(stuck, timeout=20)
    other = q.submit("h", "other", concurrency_key="j")
    free = q.submit("h", "free")
    try:
        assert q.result(other, timeout=20) == "other"
        assert q.result(free, timeout=20) == "free"
        # Nothing waits for "k": idle, although its stopped handler still runs.
        q.run_until_idle(timeout=20)
        assert q.stats()["busy_keys"] == ["k"]
    finally:
        release.set()


def test_a_handler_that_returns_before_its_outcome_is_looked_at_frees_the_key(
    make_queue: MakeQueue,
) -> None:
    """The ordinary path: a handler that stops on its signal leaves no busy key behind."""
    q = make_queue(max_workers=2)

    @q.handler("h", timeout=0.05, max_attempts=1)
    def h(ctx: Any, name: str) -> str:
        if name == "polite":
            ctx.cancelled.wait(20)
        return name

    polite = q.submit("h", "polite", concurrency_key="k")
    after = q.submit("h", "after", concurrency_key="k")
    assert q.result(after, timeout=20) == "after"
    assert q.runs(polite)[0].state is RunState.FAILED
    assert q.stats()["busy_keys"] == []


def test_processes_executor_never_keeps_a_key_busy(make_queue: MakeQueue) -> None:
    """A timed-out worker process is killed before its outcome is recorded: nothing lingers."""
    import rt_helpers as ph

    q = make_queue(executor="processes", max_workers=2)
    q.register("sleep", ph.sleep_long, timeout=0.3, max_attempts=1)
    q.register("echo", ph.echo)
    stuck = q.submit("sleep", concurrency_key="k")
    q.wait(stuck, timeout=60)
    assert q.stats()["busy_keys"] == []
    assert q.result(q.submit("echo", 7, concurrency_key="k"), timeout=60) == 7


def _dispatching_in_the_gap(q: Any, started: threading.Event) -> None:
    """Widens the gap between the log's cancel (which frees the key) and the signal to the
    handler (which keeps it busy): the running loop is woken there and given time to dispatch
    the key's next run, as any event (a submit, another result) may make it do."""
    for name in ("cancel_run", "cancel_task"):
        real = getattr(q.engine, name)

        def gap(*args: Any, _real: Any = real, **kw: Any) -> None:
            _real(*args, **kw)
            q._dispatcher.wake()
            started.wait(0.5)

        setattr(q.engine, name, gap)


@pytest.mark.parametrize("target", ["run", "task"])
def test_a_cancel_keeps_the_key_busy_from_before_the_log_frees_it(
    make_queue: MakeQueue, target: str
) -> None:
    """q.cancel() records Canceled (the log frees the key) and only then signals the handler,
    which keeps the key busy from that point: a dispatch in between ran the key's next run
    beside the canceled handler (seen under load with a few ms between the two)."""
    q = make_queue(max_workers=4)
    overlap, release = Overlap(), threading.Event()
    first_started, second_started = threading.Event(), threading.Event()

    @q.handler("h", max_attempts=1)
    def h(ctx: Any, name: str) -> None:
        overlap.enter(name)
        if name == "first":
            first_started.set()
            release.wait(20)  # ignores ctx.cancelled
        else:
            second_started.set()
        overlap.leave(name)

    first = q.submit("h", "first", concurrency_key="k")
    second = q.submit("h", "second", concurrency_key="k")
    q.start()
    assert first_started.wait(20)
    _dispatching_in_the_gap(q, second_started)
    q.cancel(first if target == "task" else q.runs(first)[0].run_id)
    assert q.runs(first)[0].state is RunState.CANCELED
    assert q.runs(second)[0].state is RunState.READY
    assert q.stats()["busy_keys"] == ["k"]
    release.set()
    assert q.result(second, timeout=20) is None
    assert overlap.most == 1
    assert overlap.order == ["first start", "first end", "second start", "second end"]
    assert q.stop(timeout=10)
    assert q.stats()["busy_keys"] == []


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
@pytest.mark.parametrize("stop", ["cancel", "lost"])
def test_a_stopped_worker_process_keeps_its_key_until_it_is_killed(
    make_queue: MakeQueue, clock: ManualClock, tmp_path: Path, stop: str
) -> None:
    """A cancel frees the key in the log at once, and so does the sweep of a lease lost under
    a live handler (in the very step whose heartbeat found it lost), but a worker process is
    killed later, by its slot's thread: the key's next run must not start in another worker
    meanwhile."""
    import rt_helpers as ph

    q = make_queue(executor="processes", max_workers=2, clock=clock, lease=10)
    q.register("hold", ph.flock_and_sleep, max_attempts=1)
    q.register("free", ph.flock_free)
    lock = tmp_path / "lock"
    first = q.submit("hold", str(lock), concurrency_key="k")
    second = q.submit("free", str(lock), concurrency_key="k")
    q.start()
    deadline = time.monotonic() + 60
    while not (tmp_path / "lock.held").exists():  # the first worker holds the lock
        assert time.monotonic() < deadline
        time.sleep(0.01)
    (att,) = q._dispatcher.inflight.values()
    assert att.job is not None
    slot = att.job.handle
    real_kill = slot.kill

    def slow_kill() -> int | None:  # the worker lives on a while after the stop request
        slot.kill = real_kill
        with contextlib.suppress(Exception):
            end = time.monotonic() + 1
            while q.runs(second)[0].state is RunState.READY and time.monotonic() < end:
                time.sleep(0.01)
            if q.runs(second)[0].state is not RunState.READY:  # dispatched beside it
                q.wait(second, timeout=30)  # (let it look at the lock)
        return real_kill()

    slot.kill = slow_kill
    if stop == "cancel":
        q.cancel(first)
    else:
        clock.advance(11_000)  # past the lease: the next heartbeat is refused
    assert q.result(second, timeout=60) is True  # the first worker was gone
    (run,) = q.runs(first)
    assert run.state is (RunState.CANCELED if stop == "cancel" else RunState.FAILED)


@pytest.mark.parametrize("executor", ["threads", "asyncio", "pool"])
@pytest.mark.parametrize("where", ["leased", "starting", "submitting"])
def test_a_cancel_landing_while_a_step_starts_the_run_stops_it_and_keeps_its_key(
    make_queue: MakeQueue, executor: str, where: str
) -> None:
    """A cancel recorded after a step leased the run but before its attempt was in flight
    (``leased``), before its job existed (``starting``) or before the executor had it
    (``submitting``) found nothing to signal: the handler ran on unsignalled, with its key
    free in the log, beside the key's next run."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        if executor == "pool":
            q = make_queue(executor=pool)
        else:
            q = make_queue(executor=executor, max_workers=4)
        overlap = Overlap()
        saw_cancel: list[bool] = []

        @q.handler("h", max_attempts=1)
        def h(ctx: Any, name: str) -> None:
            overlap.enter(name)
            if name == "first":
                saw_cancel.append(ctx.cancelled.wait(0.3))
                time.sleep(0.1)  # and goes on a while all the same
            overlap.leave(name)

        first = q.submit("h", "first", concurrency_key="k")
        second = q.submit("h", "second", concurrency_key="k")
        d = q._dispatcher
        fired: list[bool] = []

        def cancel_once() -> None:
            if not fired:
                fired.append(True)
                q.cancel(first)

        if where == "leased":
            real_dispatch = q.engine.dispatch_next

            def dispatch(*args: Any, **kw: Any) -> Any:
                got = real_dispatch(*args, **kw)
                if got:
                    cancel_once()
                return got

            q.engine.dispatch_next = dispatch  # type: ignore[method-assign]
        elif where == "starting":
            real_start = d._start

            def start(att: Any) -> bool:
                cancel_once()
                return real_start(att)

            d._start = start  # type: ignore[method-assign]
        else:
            real_submit = q.executor.submit_many

            def submit_many(jobs: list[Any]) -> None:
                cancel_once()
                real_submit(jobs)

            q.executor.submit_many = submit_many  # type: ignore[method-assign]
        q.run_until_idle(timeout=20)
        assert fired
        assert q.runs(first)[0].state is RunState.CANCELED
        assert q.runs(second)[0].state is RunState.COMPLETED
        assert saw_cancel in ([], [True])  # never ran, or was told to stop
        assert overlap.most == 1
        assert q.stats()["busy_keys"] == []


def test_a_run_waiting_for_the_worker_a_stopped_task_holds_is_not_idle(
    make_queue: MakeQueue,
) -> None:
    """A timed-out ``concurrent.futures`` task holds its worker until it ends (the runtime
    hands out nothing in its place): a Ready run waiting for that worker waits for a handler
    that will return, like one waiting for a busy key. run_until_idle() returned at once,
    leaving it Ready."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        q = make_queue(executor=pool)
        release = threading.Event()

        @q.handler("h", max_attempts=1)
        def h(ctx: Any, name: str) -> str:
            if name == "stuck":
                release.wait(20)  # ignores ctx.cancelled
            return name

        try:
            stuck = q.submit("h", "stuck", timeout=0.05)
            q.wait(stuck, timeout=20)
            assert q.runs(stuck)[0].state is RunState.FAILED
            nxt = q.submit("h", "next")
            with pytest.raises(WaitTimeoutError):
                q.run_until_idle(timeout=0.3)
            assert q.runs(nxt)[0].state is RunState.READY
            release.set()
            q.run_until_idle(timeout=20)
            assert q.result(nxt, timeout=1) == "next"
            # Nothing Ready: idle although the worker is still held.
            release.clear()
            again = q.submit("h", "stuck", timeout=0.05)
            q.wait(again, timeout=20)
            q.run_until_idle(timeout=20)
        finally:
            release.set()


def test_an_async_handler_that_returns_leaves_no_busy_key_behind(make_queue: MakeQueue) -> None:
    """An ``async def`` handler's code ends when its coroutine does: its outcome was recorded
    while it still counted as running, so every keyed attempt kept its key busy for a moment
    (listed in stats()["busy_keys"], the key's next run held back, one more loop wake-up)."""
    q = make_queue(executor="asyncio")
    kept: list[str] = []
    d = q._dispatcher
    real = d._keep_key_busy

    def spy(key: str, job: Any) -> None:
        kept.append(key)
        real(key, job)

    d._keep_key_busy = spy  # type: ignore[method-assign]

    @q.handler("h", max_attempts=1)
    async def h(ctx: Any, n: int) -> int:
        await asyncio.sleep(0)
        if n % 2:
            raise ValueError(n)
        return n

    ids = [q.submit("h", n, concurrency_key=f"k{n % 3}") for n in range(12)]
    q.run_until_idle(timeout=20)
    assert [q.runs(t)[0].state for t in ids] == [RunState.COMPLETED, RunState.FAILED] * 6
    assert kept == []
    assert q.stats()["busy_keys"] == []
