"""Executors: threads, asyncio, processes, any concurrent.futures executor (and Dask)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rt_helpers as h

from actionqueue.errors import ExecutorError, ValidationError, WrongTypeError
from actionqueue.runtime.executors import (
    AsyncioExecutor,
    FuturesExecutor,
    ProcessExecutor,
    ThreadExecutor,
    make_executor,
)
from actionqueue.runtime.outcomes import ResultKind

# --- threads ---------------------------------------------------------------------------------


@pytest.fixture
def threads() -> Iterator[ThreadExecutor]:
    ex = ThreadExecutor(2)
    ex.start()
    yield ex
    ex.shutdown(wait=False)


@pytest.mark.timeout(20)
def test_threads_return_and_raise(threads: ThreadExecutor) -> None:
    r = h.run(threads, h.echo, {"a": 1})
    assert (r.kind, r.value) == (ResultKind.RETURNED, {"a": 1})
    r = h.run(threads, h.boom, 1)
    assert r.kind is ResultKind.RAISED
    assert r.error is not None
    assert r.error.message == "boom 1"
    # async def handlers run too (on a loop of their own)
    assert h.run(threads, h.async_echo, 5).value == 5


@pytest.mark.timeout(20)
@pytest.mark.parametrize("fn", [h.sys_exit, h.keyboard_interrupt])
def test_threads_survive_base_exceptions(threads: ThreadExecutor, fn: Any) -> None:
    r = h.run(threads, fn)
    assert r.kind is ResultKind.RAISED
    assert r.error is not None
    assert r.error.base_exception
    # the pool still works, with all its threads
    assert h.run(threads, h.echo, 1).value == 1
    assert h.run(threads, h.echo, 2).value == 2


@pytest.mark.timeout(20)
def test_thread_timeout_is_cooperative_and_recorded_at_once(threads: ThreadExecutor) -> None:
    job, w = h.submit(threads, h.wait_cancel, timeout=0.05)
    r = w.wait()
    assert r.kind is ResultKind.TIMED_OUT
    assert job.context.cancelled.reason == "timeout"


@pytest.mark.timeout(20)
def test_a_stuck_thread_is_replaced(threads: ThreadExecutor) -> None:
    release = threading.Event()

    def stuck(ctx: Any, payload: Any) -> str:
        release.wait(20)  # ignores the cancel signal
        return "late"

    jobs = [h.submit(threads, stuck, timeout=0.05) for _ in range(2)]
    for _, w in jobs:
        assert w.wait().kind is ResultKind.TIMED_OUT
    assert threads.abandoned_threads == 2
    # Both original threads are stuck, yet new work runs on replacements.
    assert h.run(threads, h.echo, "fresh").value == "fresh"
    release.set()
    for job, w in jobs:
        assert len(w.results) == 1  # the late return is ignored
        assert job.result is not None
        assert job.result.kind is ResultKind.TIMED_OUT


def _stuck_until(release: threading.Event, ran: list[Any] | None = None) -> Any:
    def stuck(ctx: Any, payload: Any) -> str:
        if ran is not None:
            ran.append(payload)
        release.wait(20)  # ignores the cancel signal
        return "late"

    return stuck


def _wait_for(cond: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.001)


@pytest.mark.timeout(20)
def test_capacity_comes_back_when_abandoned_threads_return() -> None:
    # Past max_abandoned no replacement starts; the pool used to stay without a worker for
    # good (returning abandoned threads just left), so queued jobs never ran.
    ex = ThreadExecutor(1, max_abandoned=1)
    release = threading.Event()
    try:
        for expected_live in (1, 0):  # the 1st stuck thread is replaced, the 2nd is not
            _, w = h.submit(ex, _stuck_until(release), timeout=0.02)
            assert w.wait().kind is ResultKind.TIMED_OUT
            assert ex.live_workers == expected_live
        assert ex.abandoned_threads == 2
        # Queued with no worker left: it waits (its timeout is far off)...
        job, w = h.submit(ex, h.echo, "queued", timeout=30)
        assert ex.backlog() == 1
        assert not job.done
        # ... until a stuck handler returns: that thread becomes a worker again and runs it.
        release.set()
        r = w.wait()
        assert (r.kind, r.value) == (ResultKind.RETURNED, "queued")
        _wait_for(lambda: ex.abandoned_threads == 0)
        assert ex.live_workers == 1
        assert len(ex._workers) == 1
        # The thread budget is whole again: a new stuck handler is replaced at once.
        again = threading.Event()
        _, w = h.submit(ex, _stuck_until(again), timeout=0.02)
        assert w.wait().kind is ResultKind.TIMED_OUT
        assert (ex.live_workers, ex.abandoned_threads) == (1, 1)
        assert h.run(ex, h.echo, "fresh").value == "fresh"
        again.set()
    finally:
        release.set()
        ex.shutdown()


@pytest.mark.timeout(20)
def test_with_no_worker_left_a_queued_job_waits_at_most_its_timeout() -> None:
    ex = ThreadExecutor(1, max_abandoned=0)
    release = threading.Event()
    ran: list[Any] = []
    try:
        stuck_job, w = h.submit(ex, _stuck_until(release, ran), "stuck", timeout=0.02)
        assert w.wait().kind is ResultKind.TIMED_OUT
        assert (ex.live_workers, ex.abandoned_threads) == (0, 1)
        # A queued job with a timeout times out without running (duration: its wait)...
        _, w = h.submit(ex, _stuck_until(release, ran), "queued", timeout=0.02)
        r = w.wait()
        assert r.kind is ResultKind.TIMED_OUT
        assert r.duration >= 0.02
        assert ran == ["stuck"]
        assert ex.backlog() == 0
        # ... one without a timeout waits; shutdown does not wait for the stuck thread, and
        # ends the job nothing can run now.
        _, w = h.submit(ex, h.echo, "no timeout")
        assert ex.backlog() == 1
        ex.shutdown(wait=True, timeout=None)
        r = w.wait()
        assert (r.kind, r.detail) == (ResultKind.INTERRUPTED, "shutdown")
        assert ex.abandoned_threads == 1
    finally:
        release.set()
    # The abandoned thread ends when its handler returns (shut down: it does not rejoin).
    thread = stuck_job.handle.thread
    thread.join(10)
    assert not thread.is_alive()
    assert ex.abandoned_threads == 0


@pytest.mark.timeout(20)
def test_thread_batches_fan_out_and_report_their_backlog(threads: ThreadExecutor) -> None:
    # Slow handlers of one batch still run side by side (the woken worker wakes the next).
    gate = threading.Barrier(2, timeout=10)

    def meet(ctx: Any, payload: Any) -> str:
        gate.wait()
        return threading.current_thread().name

    pairs = [h.submit(threads, meet, i) for i in range(2)]
    names = {w.wait().value for _, w in pairs}
    assert len(names) == 2
    # Jobs waiting for a thread are the backlog; it drains to 0.
    release = threading.Event()
    started = threading.Semaphore(0)

    def hold(ctx: Any, payload: Any) -> None:
        started.release()
        release.wait(10)

    busy = [h.submit(threads, hold) for _ in range(2)]
    for _ in busy:
        assert started.acquire(timeout=10)
    queued = [h.submit(threads, h.echo, i) for i in range(3)]
    assert threads.backlog() == 3
    release.set()
    assert [w.wait().value for _, w in queued] == [0, 1, 2]
    for _, w in busy:
        w.wait()
    assert threads.backlog() == 0


@pytest.mark.timeout(20)
def test_thread_cancel(threads: ThreadExecutor) -> None:
    started = threading.Event()

    def waits(ctx: Any, payload: Any) -> None:
        started.set()
        ctx.cancelled.wait(20)
        ctx.raise_if_cancelled()

    job, w = h.submit(threads, waits)
    assert started.wait(10)
    threads.cancel(job)
    r = w.wait()
    assert (r.kind, r.detail) == (ResultKind.INTERRUPTED, "canceled")


def test_thread_executor_validation_and_shutdown() -> None:
    with pytest.raises(ValidationError):
        ThreadExecutor(0)
    with pytest.raises(ValidationError):
        ThreadExecutor(1, max_abandoned=-1)
    ex = ThreadExecutor(1)
    ex.shutdown()
    with pytest.raises(ExecutorError):
        h.submit(ex, h.echo)


# --- asyncio ---------------------------------------------------------------------------------


@pytest.fixture
def aio() -> Iterator[AsyncioExecutor]:
    ex = AsyncioExecutor(10)
    yield ex
    ex.shutdown(wait=False)


@pytest.mark.timeout(20)
def test_asyncio_runs_async_and_sync_handlers(aio: AsyncioExecutor) -> None:
    assert h.run(aio, h.async_echo, [1]).value == [1]
    assert h.run(aio, h.echo, "sync").value == "sync"
    r = h.run(aio, h.async_boom)
    assert r.kind is ResultKind.RAISED
    assert r.error is not None
    assert r.error.message == "async boom"
    assert aio.backlog() == 0  # every submitted job has started


@pytest.mark.timeout(20)
def test_asyncio_backlog_counts_jobs_not_started(aio: AsyncioExecutor) -> None:
    aio.start()
    hold = threading.Event()
    aio.loop.call_soon_threadsafe(hold.wait, 10)  # the loop is busy: nothing starts
    pairs = [h.submit(aio, h.async_echo, i) for i in range(3)]
    assert aio.backlog() == 3
    hold.set()
    assert [w.wait().value for _, w in pairs] == [0, 1, 2]
    assert aio.backlog() == 0


@pytest.mark.timeout(20)
def test_asyncio_timeout_really_cancels_the_task(aio: AsyncioExecutor) -> None:
    cancelled = threading.Event()

    async def sleeper(ctx: Any, payload: Any) -> None:
        import asyncio

        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    r = h.run(aio, sleeper, timeout=0.05)
    assert r.kind is ResultKind.TIMED_OUT
    assert cancelled.wait(10)


@pytest.mark.timeout(20)
def test_asyncio_cancel(aio: AsyncioExecutor) -> None:
    job, w = h.submit(aio, h.async_sleep_long)
    while job.handle is None:  # the task is created on the loop thread
        time.sleep(0.001)
    aio.cancel(job)
    r = w.wait()
    assert (r.kind, r.detail) == (ResultKind.INTERRUPTED, "canceled")


@pytest.mark.timeout(20)
def test_asyncio_abandons_stuck_sync_threads_within_a_budget() -> None:
    # Sync handlers used to run in the loop's default pool, where a stuck one kept its thread.
    with pytest.raises(ValidationError, match="max_abandoned"):
        AsyncioExecutor(1, max_abandoned=-1)
    ex = AsyncioExecutor(1, max_abandoned=1)
    release = threading.Event()
    try:
        for _ in range(2):  # the 1st stuck thread is replaced, the 2nd is past the budget
            _, w = h.submit(ex, _stuck_until(release), timeout=0.02)
            assert w.wait().kind is ResultKind.TIMED_OUT
        # (the outcome is recorded at once; the loop then cancels the task: abandoned)
        _wait_for(lambda: ex.abandoned_threads == 2)
        # No thread left: a queued sync handler waits at most its timeout...
        r = h.run(ex, h.echo, "late", timeout=0.05)
        assert r.kind is ResultKind.TIMED_OUT
        assert ex.abandoned_threads == 2  # (it never ran: no thread was abandoned for it)
        # ... or until a stuck handler returns: that thread serves again.
        _, w = h.submit(ex, h.echo, "queued", timeout=30)
        release.set()
        r = w.wait()
        assert (r.kind, r.value) == (ResultKind.RETURNED, "queued")
        _wait_for(lambda: ex.abandoned_threads == 0)
        assert h.run(ex, h.echo, "again").value == "again"
        assert ex._sync.live_workers == 1
        # async handlers never needed a thread
        assert h.run(ex, h.async_echo, 1).value == 1
    finally:
        release.set()
        ex.shutdown(wait=False)


@pytest.mark.timeout(20)
def test_asyncio_shutdown_drains_sync_handlers_but_not_abandoned_threads() -> None:
    ex = AsyncioExecutor(2)
    stuck, running = threading.Event(), threading.Event()
    try:
        _, w = h.submit(ex, _stuck_until(stuck), timeout=0.02)
        assert w.wait().kind is ResultKind.TIMED_OUT

        def slow(ctx: Any, payload: Any) -> str:
            running.set()
            time.sleep(0.05)
            return "drained"

        _, w = h.submit(ex, slow)
        assert running.wait(10)
        ex.shutdown(wait=True)  # waits for the running handler, not the abandoned one
        assert (w.results[0].kind, w.results[0].value) == (ResultKind.RETURNED, "drained")
        assert not stuck.is_set()
        assert ex.abandoned_threads == 1
    finally:
        stuck.set()


# --- processes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def procs() -> Iterator[ProcessExecutor]:
    ex = ProcessExecutor(2)
    ex.start()
    yield ex
    ex.shutdown(wait=False)


@pytest.mark.timeout(60)
def test_processes_run_in_other_processes(procs: ProcessExecutor) -> None:
    r = h.run(procs, h.getpid)
    assert r.kind is ResultKind.RETURNED
    assert r.value != os.getpid()
    facts = h.run(procs, h.ctx_facts).value
    assert facts["attempt"] == 1
    assert h.run(procs, h.async_echo, "a").value == "a"
    r = h.run(procs, h.key_error, "k")
    assert r.kind is ResultKind.RAISED
    assert r.error is not None
    assert "builtins.KeyError" in r.error.type_names


@pytest.mark.timeout(60)
def test_process_timeout_kills_the_worker_and_the_pool_recovers(procs: ProcessExecutor) -> None:
    t0 = time.monotonic()
    r = h.run(procs, h.sleep_long, timeout=0.3)
    assert r.kind is ResultKind.TIMED_OUT
    assert time.monotonic() - t0 < 2
    assert h.run(procs, h.echo, "after").value == "after"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("fn", "needle"), [(h.segfault, "SIGSEGV"), (h.hard_exit, "code 7")])
def test_a_dying_worker_fails_the_attempt_only(
    procs: ProcessExecutor, fn: Any, needle: str
) -> None:
    before = procs.started_processes
    r = h.run(procs, fn)
    assert r.kind is ResultKind.CRASHED
    assert needle in (r.detail or "")
    assert h.run(procs, h.echo, "still here").value == "still here"
    # Occupy every slot at once, so the slot whose worker died must start a new one (a single
    # follow-up job may simply land on the other, healthy slot).
    pending = [h.submit(procs, h.wait_cancel) for _ in range(procs.max_workers)]
    for job, _ in pending:
        while job.handle is None:
            time.sleep(0.005)
    assert procs.started_processes > before
    for job, w in pending:
        procs.cancel(job)
        assert w.wait().kind is ResultKind.INTERRUPTED


@pytest.mark.timeout(60)
@pytest.mark.parametrize("end", ["timeout", "cancel"])
def test_killing_a_worker_kills_the_processes_its_handler_started(
    procs: ProcessExecutor, tmp_path: Path, end: str
) -> None:
    pid_file = tmp_path / "grandchild.pid"
    job, w = h.submit(
        procs, h.start_child_and_sleep, str(pid_file), timeout=30 if end == "cancel" else 5
    )
    deadline = time.monotonic() + 20
    while not pid_file.exists():
        assert time.monotonic() < deadline, "the handler did not start its child"
        time.sleep(0.02)
    grandchild = int(pid_file.read_text())
    if end == "cancel":
        procs.cancel(job)
    r = w.wait()
    assert r.kind is (ResultKind.INTERRUPTED if end == "cancel" else ResultKind.TIMED_OUT)
    assert h.wait_gone(grandchild, 10), "the handler's child outlived the killed worker"
    assert h.run(procs, h.echo, "after").value == "after"


@pytest.mark.timeout(60)
def test_programs_started_by_a_worker_keep_the_default_stop_signals(
    procs: ProcessExecutor,
) -> None:
    """Workers shrug off SIGINT/SIGTERM sent to the whole service (the owner drains), but with
    Python handlers: an ignored disposition would be inherited by the programs they start."""
    assert h.run(procs, h.child_signal_dispositions).value == "False False"


@pytest.mark.timeout(60)
def test_a_timeout_of_centuries_is_waited_for_not_an_overflow(procs: ProcessExecutor) -> None:
    """BUG: the slot waited for the whole remaining time at once; a ``timeout=`` of 1000 years
    (a valid duration) overflowed ``select`` and failed the attempt with OverflowError."""
    r = h.run(procs, h.echo, "x", timeout=1000 * 365 * 86_400.0)
    assert (r.kind, r.value) == (ResultKind.RETURNED, "x")


@pytest.mark.timeout(60)
def test_process_cancel_kills(procs: ProcessExecutor) -> None:
    job, w = h.submit(procs, h.sleep_long)
    while job.handle is None:
        time.sleep(0.005)
    procs.cancel(job)
    r = w.wait()
    assert (r.kind, r.detail) == (ResultKind.INTERRUPTED, "canceled")


@pytest.mark.timeout(60)
def test_unshippable_handlers_and_results_are_clear_failures(procs: ProcessExecutor) -> None:
    r = h.run(procs, lambda ctx, p: 1)
    assert r.kind is ResultKind.RAISED
    assert r.error is not None
    assert r.error.control == "fail"
    assert "module level" in r.error.message
    r = h.run(procs, h.unpicklable_result)
    assert r.kind is ResultKind.RAISED
    assert r.error is not None
    assert "cannot be sent back" in r.error.message
    # Terminal, as an unencodable return value is elsewhere: retrying would only run the
    # handler's side effects again (it was a retried TypeError).
    assert r.error.control == "fail"


@pytest.mark.timeout(60)
def test_a_handler_the_worker_cannot_import_is_a_clear_terminal_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """BUG: a handler that pickles here but cannot be loaded in the worker (defined in
    ``python -c``, a notebook or an interactive session — ``__main__`` without a file —, or in
    a module the worker cannot import) made the worker die unpickling it: "worker process
    died: exited with code 1", a retryable failure, retried into the same wall with a fresh
    worker each time. Now the worker reports it as the handler's terminal failure, and serves
    on."""
    import types

    mod = types.ModuleType("aq_only_in_the_owner")

    def handler(ctx: Any, payload: Any) -> str:
        return "ran"

    handler.__module__, handler.__qualname__ = mod.__name__, "handler"
    mod.handler = handler  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, mod.__name__, mod)  # importable here, not in a worker
    procs = ProcessExecutor(1)  # one slot: the follow-up job runs on the same worker
    try:
        r = h.run(procs, handler)
        assert r.kind is ResultKind.RAISED, r.detail
        assert r.error is not None
        assert r.error.control == "fail"
        assert "cannot be loaded in the worker process" in r.error.message
        assert "aq_only_in_the_owner" in r.error.message
        assert h.run(procs, h.echo, "after").value == "after"
        assert procs.started_processes == 1  # no worker died
    finally:
        procs.shutdown(wait=False)


@pytest.mark.timeout(60)
def test_a_result_that_does_not_unpickle_in_the_owner_is_a_terminal_failure() -> None:
    """BUG: a return value that pickles in the worker but not back (an exception class with
    its own ``__init__``) raised in the slot's thread: the attempt was a RetryableFailure
    carrying the runtime's own traceback, the handler — which had succeeded — ran again, and
    the worker was discarded. Now it is a terminal failure naming the cause, as a value that
    cannot be sent back is; the worker serves on."""
    procs = ProcessExecutor(1)  # one slot: the follow-up job runs on the same worker
    try:
        r = h.run(procs, h.unloadable_result)
        assert r.kind is ResultKind.RAISED
        assert r.error is not None
        assert r.error.control == "fail"
        assert "cannot be received from the worker process" in r.error.message
        assert "NeedsTwoArgs" in r.error.message
        assert h.run(procs, h.echo, "after").value == "after"
        assert procs.started_processes == 1  # the worker was kept
    finally:
        procs.shutdown(wait=False)


def test_a_worker_that_cannot_start_is_named_even_without_a_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from actionqueue.runtime.executors import processes

    def no_start(self: Any) -> None:
        raise EOFError  # what a child that exits while starting gives: no message

    monkeypatch.setattr(processes._Slot, "ensure_process", no_start)
    ex = ProcessExecutor(1)
    try:
        r = h.run(ex, h.echo)
    finally:
        ex.shutdown()
    assert r.kind is ResultKind.CRASHED
    assert r.detail == "could not start a worker process: EOFError"


def test_process_executor_refuses_fork() -> None:
    with pytest.raises(ValidationError, match="fork"):
        ProcessExecutor(1, mp_context="fork")


# --- concurrent.futures and Dask -------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_thread_pool_executor_gets_the_live_context() -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        ex = FuturesExecutor(pool)
        assert (ex.max_workers, ex.remote) == (2, False)
        assert h.run(ex, h.echo, 1).value == 1
        _, w = h.submit(ex, h.wait_cancel, timeout=0.05)
        assert w.wait().kind is ResultKind.TIMED_OUT


@pytest.mark.timeout(60)
def test_a_process_pool_executor_runs_remote() -> None:
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        ex = FuturesExecutor(pool)
        assert ex.remote
        assert h.run(ex, h.getpid).value != os.getpid()
        r = h.run(ex, h.boom, 2)
        assert r.kind is ResultKind.RAISED


@pytest.mark.timeout(60)
def test_a_process_pool_result_that_cannot_travel_back_is_a_terminal_failure() -> None:
    """BUG: with a ProcessPoolExecutor (or a Dask client) a return value that does not pickle
    on the worker failed the future: the attempt was recorded Lost and retried, so the handler,
    which had run, ran again up to max_attempts. Results are now pickled on the worker: one
    that does not pickle there, or not unpickle here, is the handler's terminal failure."""
    from actionqueue.runtime.executors.processes import default_mp_context

    with concurrent.futures.ProcessPoolExecutor(1, mp_context=default_mp_context()) as pool:
        ex = FuturesExecutor(pool)
        for fn, needle in [
            (h.unpicklable_result, "cannot be sent back from the worker"),
            (h.unloadable_result, "cannot be received from the worker"),
        ]:
            r = h.run(ex, fn)
            assert r.kind is ResultKind.RAISED, r.detail
            assert r.error is not None
            assert r.error.control == "fail"
            assert needle in r.error.message
        assert h.run(ex, h.echo, [1, "a"]).value == [1, "a"]  # the pool is not broken


@pytest.mark.timeout(30)
def test_a_future_failing_outside_the_handler_is_lost() -> None:
    class Broken(concurrent.futures.Executor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
            f: concurrent.futures.Future[Any] = concurrent.futures.Future()
            f.set_exception(ConnectionError("worker gone"))
            return f

    r = h.run(FuturesExecutor(Broken(), max_workers=1), h.echo)
    assert r.kind is ResultKind.LOST
    assert "worker gone" in (r.detail or "")


def test_make_executor() -> None:
    assert make_executor("threads", 3).max_workers == 3
    assert make_executor("asyncio").name == "asyncio"
    assert make_executor("processes", 1).name == "processes"
    ex = ThreadExecutor(1)
    assert make_executor(ex) is ex
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert make_executor(pool).name == "futures"
    with pytest.raises(ValidationError, match="'threads', 'asyncio'"):
        make_executor("gpu")
    with pytest.raises(WrongTypeError):
        make_executor(42)


@pytest.mark.timeout(120)
def test_dask_client_executes_on_worker_processes() -> None:
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
        ex = make_executor(client)
        assert (ex.name, ex.max_workers, ex.remote) == ("dask", 2, True)
        pids = {h.run(ex, h.getpid).value for _ in range(4)}
        assert os.getpid() not in pids
        r = h.run(ex, h.boom, 3)
        assert r.kind is ResultKind.RAISED
        assert r.error is not None
        assert r.error.message == "boom 3"
        # A result that cannot travel back is the handler's terminal failure, not Lost (and
        # retried: the handler ran again).
        r = h.run(ex, h.unpicklable_result)
        assert (r.kind, r.error and r.error.control) == (ResultKind.RAISED, "fail")
        assert "cannot be sent back from the worker" in r.error.message
        # callbacks arrive off the caller's thread; the runtime records them on its own threads
        assert not ex.inline_completion


def test_asyncio_sync_thread_skips_a_call_stopped_while_it_waited() -> None:
    """A sync handler's call taken by a thread after its stop request (the task's cancel not
    yet processed) is not run, as on the thread executor (it used to run)."""
    from actionqueue.runtime.context import HandlerContext
    from actionqueue.runtime.executors.aio import _SyncThreads
    from actionqueue.runtime.executors.base import Job

    threads = _SyncThreads(1, 4, "t")
    gate, called = threading.Event(), []

    def job(fn: Any, payload: Any = None) -> Job:
        return Job(fn, payload, HandlerContext(h.snapshot(), payload))

    async def main() -> tuple[bool, Any]:
        loop = asyncio.get_running_loop()
        first = job(lambda ctx, p: gate.wait(10))
        stopped = job(lambda ctx, p: called.append(p), "x")
        busy = threads.call(loop, first)  # holds the only thread
        queued = threads.call(loop, stopped)
        stopped.context.cancelled.request("canceled")
        gate.set()
        await busy.future
        return await queued.future

    try:
        ok, value = asyncio.run(main())
    finally:
        threads.shutdown(True, 10)
    assert not ok
    assert isinstance(value, asyncio.CancelledError)
    assert called == []
