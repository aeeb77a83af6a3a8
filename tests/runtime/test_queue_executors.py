"""End to end with the asyncio, process and Dask executors: enforced timeouts, crashes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from typing import Any

import pytest
import rt_helpers as h
from rt_helpers import MakeQueue

import actionqueue as aq
from actionqueue import RunState
from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.engine import ManualClock

pytestmark = pytest.mark.timeout(120)


def test_asyncio_timeout_is_enforced(make_queue: MakeQueue) -> None:
    import asyncio

    q = make_queue(executor="asyncio")
    cancelled = threading.Event()

    @q.handler("sleepy", timeout=0.05, max_attempts=2)
    async def sleepy(ctx: Any, p: Any) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    tid = q.submit("sleepy")
    q.run_until_idle(timeout=20)
    (run,) = q.runs(tid)
    assert run.state is RunState.FAILED
    assert [a.outcome for a in run.attempts] == [AttemptOutcome.TIMEOUT] * 2
    assert cancelled.wait(5)


def test_asyncio_cancel_of_a_running_task(make_queue: MakeQueue) -> None:
    import asyncio

    q = make_queue(executor="asyncio")
    started = threading.Event()

    @q.handler("forever")
    async def forever(ctx: Any, p: Any) -> None:
        started.set()
        await asyncio.sleep(60)

    q.start()
    tid = q.submit("forever")
    assert started.wait(10)
    q.cancel(tid)
    q.wait(tid, timeout=10)
    assert q.runs(tid)[0].state is RunState.CANCELED
    assert q.stop(timeout=10)


@pytest.mark.timeout(60)
def test_close_does_not_wait_for_an_async_handler_that_ignores_its_cancel(
    make_queue: MakeQueue,
) -> None:
    """BUG: an ``async def`` handler that swallows ``CancelledError`` after a cancel (or a
    timeout) has its outcome recorded at once, yet close() waited for its task for ever: the
    executor's drain waited for every task on the loop, then the loop thread for the cancelled
    ones. A script ending with such a handler never exited (the exit-time close hung). Now the
    task is abandoned, as a stuck sync handler's thread is."""
    q = make_queue(executor="asyncio")
    started, release, done = threading.Event(), threading.Event(), threading.Event()

    @q.handler("stubborn")
    async def stubborn(ctx: Any, p: Any) -> None:
        started.set()
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):  # ignored: goes on
                await asyncio.sleep(0.01)
        done.set()

    q.start()
    tid = q.submit("stubborn")
    try:
        assert started.wait(10)
        q.cancel(tid)
        q.wait(tid, timeout=10)
        assert q.runs(tid)[0].state is RunState.CANCELED
        closer = threading.Thread(target=q.close, daemon=True)
        closer.start()
        closer.join(20)  # a safety net: the old close never returned
        assert not closer.is_alive(), "close() waited for a canceled handler ignoring it"
        assert q.closed
        assert not done.is_set()
    finally:
        release.set()
    assert done.wait(10)  # abandoned, not killed: it ran on until it returned


@pytest.mark.timeout(30)
def test_asyncio_never_calls_the_handler_of_a_run_canceled_before_it_started(
    make_queue: MakeQueue,
) -> None:
    """BUG: a run canceled after its dispatch, while its task waited for the executor's loop,
    still had its handler called — after Canceled was recorded and its concurrency key handed
    to the next run, so two handlers of one key ran at once."""
    q = make_queue(executor="asyncio")
    release = threading.Event()
    entered: list[Any] = []

    @q.handler("blocker")
    async def blocker(ctx: Any, p: Any) -> None:
        release.wait(10)  # holds the executor's loop (legal, if unkind)

    @q.handler("keyed", concurrency_key="db")
    async def keyed(ctx: Any, p: Any) -> Any:
        entered.append(p)
        return p

    q.start()
    q.submit("blocker")
    a = q.submit("keyed", "A")
    executor = q._dispatcher.executor
    deadline = time.monotonic() + 10
    while executor.backlog() < 1:  # A handed to the executor, its task not started (blocked)
        assert time.monotonic() < deadline
        time.sleep(0.005)
    q.cancel(a)
    b = q.submit("keyed", "B")
    release.set()
    assert q.result(b, timeout=10) == "B"
    assert q.runs(a)[0].state is RunState.CANCELED
    assert entered == ["B"]
    assert q.stop(timeout=10)


@pytest.mark.timeout(20)
def test_asyncio_stuck_sync_handlers_neither_use_up_the_threads_nor_hold_close(
    make_queue: MakeQueue,
) -> None:
    """Timed-out sync handlers used to keep the loop's default pool (``asyncio.to_thread``)
    for good — the next sync handler then timed out without having run — and ``close()``
    waited for them in ``loop.shutdown_default_executor()``."""
    q = make_queue(executor="asyncio", max_workers=8)
    gate = threading.Event()
    q.register("stuck", lambda ctx, p: gate.wait(20), timeout=0.05, max_attempts=1)
    q.register("quick", lambda ctx, p: "ok", timeout=5, max_attempts=1)
    try:
        # 32: as many as the largest default pool (min(32, cpus + 4)), all stuck for good
        stuck = q.submit_many("stuck", [None] * 32)
        q.run_until_idle(timeout=10)
        for tid in stuck:
            assert q.runs(tid)[0].attempts[0].outcome is AttemptOutcome.TIMEOUT
        tid = q.submit("quick")
        q.run_until_idle(timeout=10)
        assert q.result(tid) == "ok"
        ex: Any = q.executor
        end = time.monotonic() + 10  # abandoned on the loop right after Timeout is recorded
        while ex.abandoned_threads != 32:
            assert time.monotonic() < end
            time.sleep(0.001)
        closer = threading.Thread(target=q.close)
        closer.start()
        closer.join(5)
        assert not closer.is_alive(), "close() waited for the abandoned threads"
        assert not gate.is_set()  # the stuck handlers were still blocked
    finally:
        gate.set()


def test_processes_timeout_kill_crash_and_keep_going(make_queue: MakeQueue) -> None:
    q = make_queue(executor="processes", max_workers=2)
    q.register("pid", h.getpid)
    q.register("sleep", h.sleep_long, timeout=0.3)
    q.register("segv", h.segfault, max_attempts=2)
    t_pid = q.submit("pid")
    t_sleep = q.submit("sleep")
    t_segv = q.submit("segv")
    q.run_until_idle(timeout=60)
    assert q.result(t_pid) != os.getpid()
    (s,) = q.runs(t_sleep)
    assert (s.state, s.attempts[0].outcome) == (RunState.FAILED, AttemptOutcome.TIMEOUT)
    (c,) = q.runs(t_segv)
    assert c.state is RunState.FAILED
    assert [a.outcome for a in c.attempts] == [AttemptOutcome.RETRYABLE_FAILURE] * 2
    assert "worker process died: killed by SIGSEGV" in (c.attempts[0].error or "")
    # the pool was replaced; the queue keeps going
    assert q.result(q.submit("pid"), timeout=30) != os.getpid()


def test_a_ctrl_c_reaching_a_worker_process_does_not_fail_its_attempt(
    make_queue: MakeQueue,
) -> None:
    """Ctrl-C goes to the whole process group; the owner drains (run_forever), so the worker's
    attempt must finish instead of failing with KeyboardInterrupt."""
    q = make_queue(executor="processes", max_workers=1)
    q.register("h", h.ctrl_c_in_worker, max_attempts=1)
    tid = q.submit("h")
    q.run_until_idle(timeout=60)
    (run,) = q.runs(tid)
    assert [a.outcome for a in run.attempts] == [AttemptOutcome.SUCCESS]
    assert q.result(tid) == "finished"


def test_a_handler_no_worker_process_can_load_is_refused_at_register(
    make_queue: MakeQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BUG: a lambda, a closure, or a function of a ``__main__`` that workers cannot import (a
    notebook, ``python -c``) was accepted by ``register`` under the processes executor (and a
    ProcessPoolExecutor), then failed every run submitted for it — with a process pool as
    Lost, retried up to max_attempts. Refused at register now (nothing is started)."""
    import concurrent.futures
    import types

    def closure(ctx: Any, p: Any) -> Any:
        return p

    in_main = types.ModuleType("__main__")  # what `python -c` or a notebook runs: no file

    def main_fn(ctx: Any, p: Any) -> Any:
        return p

    main_fn.__module__, main_fn.__qualname__ = "__main__", "main_fn"
    in_main.main_fn = main_fn  # type: ignore[attr-defined]  # it pickles (by reference)

    with concurrent.futures.ProcessPoolExecutor(1) as pool:
        for executor in ("processes", pool):
            q = make_queue(executor=executor)
            with pytest.raises(aq.errors.ValidationError, match="does not pickle"):
                q.register("lambda", lambda ctx, p: p)
            with pytest.raises(aq.errors.ValidationError, match="does not pickle"):
                q.handler("closure")(closure)
            with monkeypatch.context() as m:
                m.setitem(sys.modules, "__main__", in_main)
                with pytest.raises(aq.errors.ValidationError, match="__main__"):
                    q.register("main", main_fn)
            assert q.handlers.names() == []
            q.register("echo", h.echo)  # importable by name: fine
            q.close()
    q = make_queue(executor="threads")  # runs them in this process: anything callable
    q.register("lambda", lambda ctx, p: p)
    q.handler("closure")(closure)


def test_processes_cancel_kills_the_worker(make_queue: MakeQueue) -> None:
    q = make_queue(executor="processes", max_workers=1)
    q.register("sleep", h.sleep_long)
    q.start()
    tid = q.submit("sleep")
    while not q._dispatcher.inflight:
        q._dispatcher.wait_in_flight(0)
        threading.Event().wait(0.01)
    q.cancel(tid)
    q.wait(tid, timeout=30)
    assert q.runs(tid)[0].state is RunState.CANCELED
    q.register("echo", h.echo)
    assert q.result(q.submit("echo", 1), timeout=30) == 1


def test_dask_local_cluster_runs_handlers_on_worker_processes(make_queue: MakeQueue) -> None:
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            # A free port. With None the scheduler's HTTP server still tries 8787 first and
            # warns when another process holds it (an error under filterwarnings = error).
            dashboard_address=":0",
            silence_logs=40,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        q = make_queue(executor=client)
        q.register("pid", h.getpid)
        q.register("boom", h.boom, max_attempts=2)
        ids = q.submit_many("pid", range(6))
        bad = q.submit("boom", 1)
        q.run_until_idle(timeout=60)
        pids = {q.result(t) for t in ids}
        assert os.getpid() not in pids
        (run,) = q.runs(bad)
        assert run.state is RunState.FAILED
        assert [a.outcome for a in run.attempts] == [AttemptOutcome.RETRYABLE_FAILURE] * 2
        assert "ValueError: boom 1" in (run.attempts[0].error or "")
        assert q.metrics.value("outcomes_total", handler="pid", outcome="Success") == 6
        q.close()


@pytest.mark.parametrize("executor", ["threads", "asyncio"])
def test_a_handler_raising_a_cancellation_nobody_asked_for_fails_like_any_error(
    make_queue: MakeQueue, clock: ManualClock, executor: str
) -> None:
    """``asyncio.CancelledError`` from an inner call, or ``aq.Cancelled`` raised by the handler
    on its own, is a failure counted against ``max_attempts`` — it used to be taken for a
    shutdown: the run was given back without using an attempt and dispatched again, for ever."""
    q = make_queue(executor=executor, clock=clock)

    async def inner_cancelled(ctx: Any, p: Any) -> None:
        raise asyncio.CancelledError

    def sync_cancelled(ctx: Any, p: Any) -> None:
        raise asyncio.CancelledError

    def says_shutdown(ctx: Any, p: Any) -> None:
        raise aq.Cancelled("shutdown")

    handlers = {"a": inner_cancelled, "s": sync_cancelled, "c": says_shutdown}
    for name, fn in handlers.items():
        q.register(name, fn, max_attempts=2)
    tids = [q.submit(name) for name in handlers]
    q.run_until_idle(timeout=20, advance_clock=True)  # through the retry backoff
    for tid in tids:
        (run,) = q.runs(tid)
        assert run.state is RunState.FAILED
        assert [a.outcome.label for a in run.attempts] == ["RetryableFailure"] * 2


@pytest.mark.timeout(30)
def test_a_refusing_executor_stops_the_driver_instead_of_releasing_runs_for_ever(
    make_queue: MakeQueue,
) -> None:
    """BUG: a shut-down (or broken) executor refused every batch, the runs were given back and
    leased again at once — a record each time, ~100 attempts a second — and
    run_until_idle(timeout=...) never returned. Now the driver gives the runs back once and
    raises ExecutorError."""
    import concurrent.futures
    import logging

    pool = concurrent.futures.ThreadPoolExecutor(1)
    pool.shutdown()
    q = make_queue(executor=pool)
    q.register("h", lambda ctx, p: p)
    tid = q.submit("h", 1, max_attempts=3)
    logging.disable(logging.ERROR)
    try:
        with pytest.raises(aq.errors.ExecutorError, match="refused work"):
            q.run_until_idle(timeout=10)
    finally:
        logging.disable(logging.NOTSET)
    (run,) = q.runs(tid)
    assert run.state is RunState.READY
    assert len(run.attempts) == 1  # given back once, no attempt used up
    assert run.attempt_count == 0


@pytest.mark.timeout(60)
def test_waiting_for_a_background_loop_that_a_refusing_executor_stopped_raises(
    make_queue: MakeQueue,
) -> None:
    """BUG: once the background loop stopped on a refusing executor (a Dask client or cluster
    closed under the queue, a pool shut down or broken), ``wait`` / ``result`` /
    ``run_until_idle`` went on waiting for it until their timeout — for ever without one —
    and ``q.running`` stayed True. They now raise the loop's ExecutorError."""
    import concurrent.futures
    import logging

    pool = concurrent.futures.ThreadPoolExecutor(1)
    q = make_queue(executor=pool)
    q.register("h", lambda ctx, p: p)
    q.start()
    assert q.result(q.submit("h", 1), timeout=30) == 1
    pool.shutdown()  # what closing a Dask client does to the adapter: every submit refused
    tid = q.submit("h", 2)
    logging.disable(logging.ERROR)
    try:
        # (The timeouts are a safety net: they were what ended these calls.)
        with pytest.raises(aq.errors.ExecutorError, match="refused work"):
            q.wait(tid, timeout=30)
        assert not q.running
        with pytest.raises(aq.errors.ExecutorError, match="refused work"):
            q.result(tid, timeout=30)
        with pytest.raises(aq.errors.ExecutorError, match="refused work"):
            q.run_until_idle(timeout=30)
    finally:
        logging.disable(logging.NOTSET)
    (run,) = q.runs(tid)
    assert (run.state, run.attempt_count) == (RunState.READY, 0)  # given back, nothing used
    assert q.stop(timeout=10)


@pytest.mark.timeout(30)
def test_futures_attempts_never_wait_behind_a_timed_out_task_still_running(
    make_queue: MakeQueue,
) -> None:
    """BUG: after a timeout the adapter counted the worker free while the task still ran on
    it; the next attempts waited in the pool's queue with their timeout running and timed out
    without ever being called. Now they stay Ready until the worker is free."""
    import concurrent.futures

    release = threading.Event()
    called: list[int] = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        q = make_queue(executor=pool)
        q.register("stuck", lambda ctx, p: release.wait(20), timeout=0.2)
        q.register("quick", lambda ctx, p: called.append(p), timeout=0.2, max_attempts=2)
        q.start()
        stuck = q.submit("stuck")
        q.wait(stuck, timeout=10)  # Timeout recorded; the task still runs on the only worker
        quick = [q.submit("quick", i) for i in range(2)]
        time.sleep(0.5)  # longer than the quick runs' timeout: none of them started meanwhile
        assert [q.runs(t)[0].state for t in quick] == [RunState.READY] * 2
        release.set()
        for t in quick:
            q.wait(t, timeout=10)
        assert sorted(called) == [0, 1]
        assert all(len(q.runs(t)[0].attempts) == 1 for t in quick)
        assert q.stop(timeout=10)


def test_a_future_the_executor_cancels_by_itself_is_lost_and_retried(
    make_queue: MakeQueue,
) -> None:
    """BUG: a future cancelled by the executor (a Dask client closed with tasks in flight) was
    recorded as the runtime's own cancel: TerminalFailure, no retry."""
    import concurrent.futures

    class Dropping:  # a futures executor whose first task is dropped, the others run
        def __init__(self) -> None:
            self.pool = concurrent.futures.ThreadPoolExecutor(1)
            self.dropped = False

        def submit(self, fn: Any, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
            if not self.dropped:
                self.dropped = True
                f: concurrent.futures.Future[Any] = concurrent.futures.Future()
                f.cancel()
                return f
            return self.pool.submit(fn, *args, **kwargs)

    ex = Dropping()
    q = make_queue(executor=ex, clock=ManualClock(h.T0))
    q.register("h", lambda ctx, p: p, max_attempts=2, backoff=aq.fixed(0))
    tid = q.submit("h", 7)
    q.run_until_idle(advance_clock=True, timeout=20)
    (run,) = q.runs(tid)
    assert run.state is RunState.COMPLETED
    assert [a.outcome for a in run.attempts] == [AttemptOutcome.LOST, AttemptOutcome.SUCCESS]
    ex.pool.shutdown()


@pytest.mark.timeout(90)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_process_does_not_outlive_its_killed_owner(tmp_path: Any) -> None:
    """BUG: after a kill -9 of the queue's process, a worker process went on running its
    handler (for as long as the handler took), beside the retry that the next owner of the
    queue started once the lease expired. Workers now end when their owner dies, and so do
    the processes their handler started."""
    import signal
    import subprocess
    from pathlib import Path

    child = Path(__file__).with_name("orphan_child.py")
    pid_file = tmp_path / "worker.pid"
    owner = subprocess.Popen(
        [sys.executable, str(child), str(tmp_path / "q"), str(pid_file)],
        cwd=child.parent,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(child.parent), *sys.path])),
    )
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists():  # the handler is running in a worker process
            assert owner.poll() is None, "the owner exited early"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        worker, tool = map(int, pid_file.read_text().split())
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)
        assert h.wait_gone(worker, 10), "the worker outlived its killed owner"
        assert h.wait_gone(tool, 10), "the handler's own process outlived the killed owner"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(10)


def _raise_broken(ctx: Any, which: int) -> None:
    from test_outcomes import BROKEN_EXCEPTIONS

    raise BROKEN_EXCEPTIONS[which]


async def _araise_broken(ctx: Any, which: int) -> None:
    _raise_broken(ctx, which)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("executor", ["threads", "asyncio"])
@pytest.mark.parametrize("which", [0, 1, 2], ids=["notes", "str-interrupt", "syntax"])
def test_a_handler_exception_that_cannot_be_described_fails_its_run(
    make_queue: MakeQueue, executor: str, which: int
) -> None:
    """BUG: the worker died describing the exception; the run stayed Running (its lease
    renewed for ever) and close() never returned."""
    q = make_queue(executor=executor)
    q.register("h", _araise_broken if executor == "asyncio" else _raise_broken, max_attempts=1)
    t = q.submit("h", which)
    q.run_until_idle(timeout=20)
    (run,) = q.runs(t)
    assert run.state is RunState.FAILED
    assert run.attempts[0].error
    q.close(timeout=20)


def _stop_myself(ctx: Any, reason: str) -> None:
    ctx.cancelled.set(reason)  # e.g. to stop helper threads it started
    ctx.raise_if_cancelled()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("executor", ["threads", "asyncio"])
@pytest.mark.parametrize("reason", ["shutdown", "canceled", "timeout"])
def test_a_handler_setting_its_own_cancel_signal_is_not_a_runtime_stop_request(
    make_queue: MakeQueue, executor: str, reason: str
) -> None:
    """BUG: the handler's own ``ctx.cancelled.set(reason)`` was taken for the runtime's request:
    "shutdown" gave the run back without using an attempt, to be dispatched again at once, for
    ever (550 calls in 3 s); "canceled" failed the run at once with attempts left."""
    q = make_queue(executor=executor)
    calls: list[int] = []

    def counted(ctx: Any, r: str) -> None:
        calls.append(ctx.attempt)
        _stop_myself(ctx, r)

    async def acounted(ctx: Any, r: str) -> None:
        counted(ctx, r)

    q.register("h", acounted if executor == "asyncio" else counted, max_attempts=3)
    t = q.submit("h", reason)
    q.run_until_idle(timeout=20)
    (run,) = q.runs(t)
    assert run.state is RunState.FAILED
    assert calls == [1, 2, 3]
    assert [a.outcome for a in run.attempts] == [AttemptOutcome.RETRYABLE_FAILURE] * 3


@pytest.mark.timeout(60)
def test_an_async_handler_blocking_past_its_timeout_is_a_timeout(make_queue: MakeQueue) -> None:
    """BUG: an ``async def`` handler that blocked the loop (a ``time.sleep``) past its timeout
    was recorded Success: the timer could not fire while the loop was blocked. On threads the
    same body is a Timeout, as the outcomes table says."""
    q = make_queue(executor="asyncio")

    async def blocking(ctx: Any, p: Any) -> str:
        time.sleep(0.6)  # blocks the loop: the misuse under test
        return "done"

    q.register("h", blocking, timeout=0.2, max_attempts=1)
    t = q.submit("h")
    q.run_until_idle(timeout=30)
    (run,) = q.runs(t)
    assert [a.outcome for a in run.attempts] == [AttemptOutcome.TIMEOUT]
    assert run.state is RunState.FAILED
