"""The asyncio executor: ``async def`` handlers on one event loop in a dedicated thread.

Timeouts and cancellation are real: the handler's task gets ``task.cancel()`` (so
``CancelledError`` is raised at its current ``await``) and the outcome is recorded at once.
Plain (sync) handlers also work here; they run in the loop's default thread pool through
``asyncio.to_thread``, where — as with the thread executor — cancel is only a signal.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from typing import Any

from actionqueue.errors import ExecutorError, ValidationError
from actionqueue.runtime.context import CURRENT_HANDLER
from actionqueue.runtime.executors.base import ExecutorAdapter, Job, interrupted
from actionqueue.runtime.outcomes import AttemptResult

__all__ = ["AsyncioExecutor"]


class AsyncioExecutor(ExecutorAdapter):
    """Run handlers as tasks on a private event loop (``max_workers`` at once)."""

    name = "asyncio"
    hard_timeout = True

    def __init__(self, max_workers: int = 100) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValidationError(f"max_workers must be an int >= 1, got {max_workers!r}")
        self.max_workers = max_workers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._live: set[asyncio.Task[None]] = set()
        # backlog = submitted - started; each counter has one writer (submitting thread / loop)
        self._submitted = 0
        self._started = 0

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
                loop.run_forever()
                # Stopped: cancel what is left and close cleanly.
                pending = asyncio.all_tasks(loop)
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()

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

    async def _run(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._started += 1
        job.handle = task
        job.started = time.monotonic()

        # A stop request (cancel, timeout, shutdown) cancels the task on the loop.
        def _stop(_reason: str) -> None:
            loop.call_soon_threadsafe(task.cancel)

        job.context.cancelled.add_callback(_stop)
        timer = None
        if job.timeout is not None:
            timer = loop.call_later(job.timeout, self._expire, job)
        t0 = time.monotonic()
        # This task runs in its own context copy (and to_thread copies it on); a ContextVar
        # token instead of a context manager keeps the hot path free of generator objects.
        try:
            token = CURRENT_HANDLER.set(job.context)
            try:
                if job.is_async:
                    value: Any = await job.fn(job.context, job.payload)
                else:
                    value = await asyncio.to_thread(job.fn, job.context, job.payload)
                    if asyncio.iscoroutine(value):
                        value = await value
            finally:
                CURRENT_HANDLER.reset(token)
        except asyncio.CancelledError as e:
            reason = job.context.cancelled.reason
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
            job.finish(AttemptResult.returned(value, time.monotonic() - t0))
        finally:
            if timer is not None:
                timer.cancel()

    def _expire(self, job: Job) -> None:
        self.cancel(job, "timeout")

    def cancel(self, job: Job, reason: str = "canceled") -> None:
        # Record the outcome now: a handler that swallows CancelledError must not hold a slot.
        job.context.cancelled.set(reason)
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
            # Let running handlers finish (up to timeout) before the loop stops.
            async def _drain() -> None:
                me = asyncio.current_task()
                others = [t for t in asyncio.all_tasks() if t is not me]
                if others:
                    await asyncio.wait(others, timeout=timeout)

            fut = asyncio.run_coroutine_threadsafe(_drain(), loop)
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                fut.result(None if timeout is None else timeout + 1)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout if wait else 0.1)
