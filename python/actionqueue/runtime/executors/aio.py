"""The asyncio executor: ``async def`` handlers on one event loop in a dedicated thread.

Timeouts and cancellation are real: the handler's task gets ``task.cancel()`` (so
``CancelledError`` is raised at its current ``await``) and the outcome is recorded at once.

Plain (sync) handlers also work here. They run on the executor's own threads (not the loop's
default pool), started as needed up to ``max_workers``; there — as with the thread executor —
cancel is only a signal. A thread stuck in a handler that timed out or was canceled is
*abandoned*: it no longer counts, and the next sync handler gets a fresh thread, as long as
at most ``max_abandoned`` threads (default ``4 * max_workers``) are abandoned; past that no new
thread starts (a warning is logged) and fewer sync handlers run at once until stuck ones
return (a returning abandoned thread serves again if the executor is short of threads, else
it ends). A sync handler waiting for a thread counts its timeout from the wait's start.
:meth:`AsyncioExecutor.shutdown` never waits for abandoned threads (daemon threads).

An ``async def`` handler that ignores its cancellation (catches ``CancelledError`` and goes on)
after a timeout or cancel is abandoned the same way: its outcome is recorded already, and
:meth:`AsyncioExecutor.shutdown` waits only for handlers whose outcome is not (as ``wait`` and
``timeout`` say); it then cancels what is left and gives it ``CANCEL_GRACE_S`` to end. Tasks
still running after that keep the loop's (daemon) thread going until they return.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import logging
import threading
import time
from typing import Any

from actionqueue.errors import ExecutorError, ValidationError
from actionqueue.runtime.context import CURRENT_HANDLER
from actionqueue.runtime.executors._budget import PoolThread, ThreadBudget
from actionqueue.runtime.executors.base import ExecutorAdapter, Job, interrupted
from actionqueue.runtime.outcomes import AttemptResult

__all__ = ["AsyncioExecutor"]

_LOG = logging.getLogger("actionqueue.runtime")

#: How long a shut-down executor's loop waits for the tasks it cancelled to end (their
#: ``except CancelledError`` / ``finally`` cleanup) before it abandons those that go on.
CANCEL_GRACE_S = 2.0
#: While draining: how often the jobs still waited for are re-read (a handler that times out
#: meanwhile and ignores its cancellation is no longer waited for).
DRAIN_RECHECK_S = 0.05


class _Call:
    """One sync handler call: its outcome goes to ``future`` (on the loop) as ``(ok, value)``."""

    __slots__ = ("args", "context", "fn", "future", "job", "task_over", "worker")

    def __init__(
        self,
        future: asyncio.Future[tuple[bool, Any]],
        job: Job,
        args: tuple[Any, ...],
    ) -> None:
        self.future = future
        self.job = job
        self.fn = job.fn
        self.args = args
        self.context = contextvars.copy_context()  # as asyncio.to_thread does
        #: the thread running it (``None``: queued, dropped or returned)
        self.worker: PoolThread | None = None
        #: the task awaiting it has stopped waiting (returned or stopped)
        self.task_over = False


class _SyncThreads(ThreadBudget):
    """The threads of an asyncio executor's sync handlers (see the module doc): started on
    demand up to ``max_workers``; a thread stuck in a stopped handler is abandoned, within a
    budget of ``max_workers + max_abandoned`` threads in all."""

    def __init__(self, max_workers: int, max_abandoned: int, prefix: str) -> None:
        super().__init__(max_workers, max_abandoned, prefix)
        self._calls: collections.deque[_Call] = collections.deque()

    def call(self, loop: asyncio.AbstractEventLoop, job: Job) -> _Call:
        """Queue ``job``'s handler call (from the loop thread); its outcome arrives in
        ``.future``."""
        call = _Call(loop.create_future(), job, (job.context, job.payload))
        with self._lock:
            if self._closed:
                raise ExecutorError("the asyncio executor is shut down")
            self._calls.append(call)
            self._hand_out_locked()
        return call

    def _hand_out_locked(self) -> None:
        """A call is queued: wake an idle worker, else start one if capacity allows."""
        if self._idle > self._waking:
            self._waking += 1
            self._cv.notify()
        elif self._may_spawn_locked():
            self._spawn_locked(self._work)
        # else: the next worker to finish takes it (or a returning abandoned thread, or the
        # call's task is stopped: timeout, cancel, shutdown)

    def abandon(self, call: _Call) -> None:
        """``call``'s task was stopped: a queued call never runs; a running one's thread no
        longer counts (its late outcome is dropped)."""
        with self._lock:
            w = call.worker
            if w is None:  # queued (or already finished)
                with contextlib.suppress(ValueError):
                    self._calls.remove(call)
                return
            if w.abandoned:
                return
            self._abandon_locked(w)
            if self._calls:
                self._hand_out_locked()
            if self._abandoned > self.max_abandoned:
                _LOG.warning(
                    "%d sync handler threads of the asyncio executor ignored their cancel "
                    "signal and are still running; not replacing them past max_abandoned=%d: "
                    "fewer than %d sync handlers run at once until they return",
                    self._abandoned,
                    self.max_abandoned,
                    self.max_workers,
                )

    def _work(self, w: PoolThread) -> None:
        while True:
            with self._lock:
                if not self._wait_for_work_locked(self._calls):
                    self._leave_locked(w)
                    return
                call = self._calls.popleft()
                call.worker = w
            outcome: tuple[bool, Any]
            if call.job.context.cancelled.is_set():
                # Stopped while it waited for this thread (its task is being cancelled): the
                # handler is not called, as on the thread executor.
                outcome = (False, asyncio.CancelledError())
            else:
                try:
                    outcome = (True, call.context.run(call.fn, *call.args))
                except BaseException as e:  # the handler's failure, not the thread's
                    outcome = (False, e)
            with self._lock:
                call.worker = None
                last = call.task_over  # its task stopped waiting: the handler ends here
                abandoned = w.abandoned
                # Back from a stuck handler: serve again if short of workers, else leave.
                stays = not abandoned or self._rejoin_locked(w)
            if last:
                call.job.leave()
            if not stays:
                return
            if not abandoned:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    call.future.get_loop().call_soon_threadsafe(_settle, call.future, outcome)

    def task_over(self, call: _Call) -> None:
        """``call``'s task stopped waiting for it (it returned, or was stopped and
        :meth:`abandon` ran): the handler's code ends now, unless a thread still runs it (that
        thread then says so when it returns)."""
        with self._lock:
            call.task_over = True
            running = call.worker is not None
        if not running:
            call.job.leave()

    def shutdown(self, wait: bool, timeout: float | None) -> None:
        """Idle workers leave; ``wait``: join the workers (up to ``timeout`` s each), never
        the abandoned threads."""
        with self._lock:
            workers = self._close_locked()
        if wait:
            self._join(workers, timeout)


def _settle(future: asyncio.Future[tuple[bool, Any]], outcome: tuple[bool, Any]) -> None:
    if not future.done():  # not cancelled meanwhile
        future.set_result(outcome)


class AsyncioExecutor(ExecutorAdapter):
    """Run handlers as tasks on a private event loop (``max_workers`` at once).

    ``max_abandoned``: how many threads stuck in a sync handler that timed out or was canceled
    are replaced with fresh ones (default ``4 * max_workers``); see the module doc.
    """

    name = "asyncio"
    hard_timeout = True

    def __init__(self, max_workers: int = 100, *, max_abandoned: int | None = None) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValidationError(f"max_workers must be an int >= 1, got {max_workers!r}")
        if max_abandoned is not None and (
            isinstance(max_abandoned, bool)
            or not isinstance(max_abandoned, int)
            or max_abandoned < 0
        ):
            raise ValidationError(f"max_abandoned must be an int >= 0, got {max_abandoned!r}")
        self.max_workers = max_workers
        self.max_abandoned = 4 * max_workers if max_abandoned is None else max_abandoned
        self._sync = _SyncThreads(max_workers, self.max_abandoned, "aq-asyncio-sync")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._live: set[asyncio.Task[None]] = set()
        #: the task of every handler running on the loop, with its job (loop thread only)
        self._running: dict[asyncio.Task[Any], Job] = {}
        #: set once the loop has stopped serving the executor (closed, or left running only
        #: for tasks that ignored their cancellation)
        self._stopped = threading.Event()
        # backlog = submitted - started; each counter has one writer (submitting thread / loop)
        self._submitted = 0
        self._started = 0

    @property
    def abandoned_threads(self) -> int:
        """Threads still running a sync handler that timed out or was canceled."""
        return self._sync.abandoned_threads

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        self.start()
        assert self._loop is not None
        return self._loop

    def start(self) -> None:
        with self._lock:
            if self._closed:
                raise ExecutorError("the asyncio executor is shut down")
            if self._loop is not None:
                return
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                try:
                    loop.run_forever()
                    self._wind_down(loop)
                finally:
                    self._stopped.set()

            self._thread = threading.Thread(target=run, name="aq-asyncio", daemon=True)
            self._thread.start()
            ready.wait()
            self._loop = loop

    def submit(self, job: Job) -> None:
        if self._closed:
            raise ExecutorError("the asyncio executor is shut down")
        asyncio.run_coroutine_threadsafe(self._run(job), self.loop)
        self._submitted += 1

    def submit_many(self, jobs: list[Job]) -> None:
        """One loop wake-up for the whole batch (instead of one per job)."""
        if self._closed:
            raise ExecutorError("the asyncio executor is shut down")
        self.loop.call_soon_threadsafe(self._spawn_all, jobs)
        self._submitted += len(jobs)

    def backlog(self) -> int:
        return max(0, self._submitted - self._started)

    def _spawn_all(self, jobs: list[Job]) -> None:
        create = self.loop.create_task
        live = self._live
        for job in jobs:
            task = create(self._run(job))
            live.add(task)  # the loop only keeps weak references to tasks
            task.add_done_callback(live.discard)

    def _wind_down(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop's thread, once the loop has stopped: cancel the tasks left and close the
        loop. The handlers whose outcome is not recorded get up to ``CANCEL_GRACE_S`` to end
        (their cleanup on ``CancelledError``); those recorded already (timed out, canceled:
        they ignored that cancellation) one more loop turn. A task still running then is
        abandoned, and the loop goes on serving it and its like here, in this daemon thread,
        until they return; nobody waits for it."""
        pending = asyncio.all_tasks(loop)
        for t in pending:
            t.cancel()
        if pending:
            running = self._running
            fresh = [t for t in pending if t not in running or not running[t].done]
            if fresh:
                loop.run_until_complete(asyncio.wait(fresh, timeout=CANCEL_GRACE_S))
            loop.run_until_complete(asyncio.sleep(0))  # the abandoned ones see the cancel
            stuck = [t for t in pending if not t.done()]
            if stuck:
                _LOG.warning(
                    "%d async handlers ignored their cancellation and still run after the "
                    "asyncio executor shut down; abandoned (their outcomes were recorded)",
                    len(stuck),
                )
                self._stopped.set()  # shutdown() returns now
                left = set(stuck)

                def gone(t: asyncio.Task[Any]) -> None:
                    left.discard(t)
                    if not left:
                        loop.stop()

                for t in stuck:
                    t.add_done_callback(gone)
                loop.run_forever()
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    async def _run(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._started += 1
        if job.done:  # canceled (and recorded) before it started: never call the handler
            return
        # Running from before the stop check (see ThreadExecutor._loop): until its coroutine ends,
        # or for a sync handler until its thread returns (see _SyncThreads.task_over).
        job.enter()
        if job.context.cancelled.is_set():  # stopped between the dispatch and here
            job.leave()
            job.finish(interrupted(job.context.cancelled.requested or "canceled", 0.0))
            return
        job.handle = task
        self._running[task] = job
        job.started = time.monotonic()

        # A stop request (cancel, timeout, shutdown) cancels the task on the loop.
        def _stop(_reason: str) -> None:
            loop.call_soon_threadsafe(task.cancel)

        job.context.cancelled.add_callback(_stop)
        timer = None
        if job.timeout is not None:
            timer = loop.call_later(job.timeout, self._expire, job)
        t0 = time.monotonic()
        # This task runs in its own context copy (and a sync call copies it on); a ContextVar
        # token instead of a context manager keeps the hot path free of generator objects.
        try:
            token = CURRENT_HANDLER.set(job.context)
            try:
                if job.is_async:
                    value: Any = await job.fn(job.context, job.payload)
                else:
                    value = await self._call_sync(loop, job)
            finally:
                CURRENT_HANDLER.reset(token)
                if job.is_async:
                    # Its coroutine has ended (returned, raised, stopped): before the outcome
                    # is recorded, which would else find it running and keep its key busy.
                    job.leave()
        except asyncio.CancelledError as e:
            reason = job.context.cancelled.requested
            if reason is None and self._closed:
                reason = "shutdown"  # the stopped loop cancels the tasks still pending
            if reason is None:
                # Not a stop request of ours: the handler (or a call it awaited) raised it
                # itself. A failure like any other; taken for a shutdown it gave the run back
                # without using an attempt, to be dispatched again at once, for ever.
                job.finish(AttemptResult.raised(e, time.monotonic() - t0))
            else:
                job.finish(interrupted(reason, time.monotonic() - t0))
        except BaseException as e:
            job.finish(AttemptResult.raised(e, time.monotonic() - t0))
        else:
            took = time.monotonic() - t0
            if job.timeout is not None and took > job.timeout:
                # It ran past its deadline without ever yielding to the loop (a blocking call
                # in an async handler), so the timer could not fire: a timeout all the same,
                # as on every other executor.
                job.finish(interrupted("timeout", took))
            else:
                job.finish(AttemptResult.returned(value, took))
        finally:
            del self._running[task]
            if timer is not None:
                timer.cancel()

    async def _call_sync(self, loop: asyncio.AbstractEventLoop, job: Job) -> Any:
        """A sync handler, on the executor's threads; stopping the task abandons its thread."""
        try:
            call = self._sync.call(loop, job)
        except BaseException:
            job.leave()
            raise
        try:
            try:
                ok, value = await call.future
            except asyncio.CancelledError:
                self._sync.abandon(call)
                raise
            if not ok:
                raise value
            if asyncio.iscoroutine(value):
                value = await value
            return value
        finally:
            self._sync.task_over(call)

    def _expire(self, job: Job) -> None:
        self.cancel(job, "timeout")

    def cancel(self, job: Job, reason: str = "canceled") -> None:
        # Record the outcome now: a handler that swallows CancelledError must not hold a slot.
        job.context.cancelled.request(reason)
        job.finish(interrupted(reason, job.elapsed()))

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if wait:
            # Let running handlers finish (up to timeout) before the loop stops: those whose
            # outcome is not recorded yet. One that timed out or was canceled and ignores its
            # cancellation is not waited for: nothing would end the wait.
            async def _drain() -> None:
                end = None if timeout is None else loop.time() + timeout
                while True:
                    waiting = [t for t, j in self._running.items() if not (j.done or t.done())]
                    if not waiting:
                        return
                    left = None if end is None else end - loop.time()
                    if left is not None and left <= 0:
                        return
                    await asyncio.wait(
                        waiting,
                        timeout=DRAIN_RECHECK_S if left is None else min(left, DRAIN_RECHECK_S),
                        return_when=asyncio.FIRST_COMPLETED,
                    )

            with contextlib.suppress(RuntimeError):  # the loop is closed already
                fut = asyncio.run_coroutine_threadsafe(_drain(), loop)
                with contextlib.suppress(concurrent.futures.TimeoutError):
                    fut.result(None if timeout is None else timeout + 1)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        # The loop cancels the tasks still running (a sync handler's thread is abandoned) and
        # closes, or leaves those ignoring their cancellation to run on (see _wind_down).
        self._stopped.wait(CANCEL_GRACE_S + 1 if wait else 0.1)
        self._sync.shutdown(wait, timeout)
