"""The default executor: a bounded pool of threads, cooperative timeouts.

Python cannot stop a thread from outside. At an attempt's deadline the executor sets the
handler's cancel signal (``ctx.cancelled``, reason ``"timeout"``) and records **Timeout at
once**; the thread may keep running until the handler returns, and whatever it returns then is
ignored. So that a stuck handler does not eat the pool, its thread is *abandoned*: it leaves
the pool when the handler finally returns, and a replacement thread starts now (up to
``max_abandoned`` stuck threads; past that, capacity shrinks until they return and a warning
is logged). Cancel works the same way. For a hard stop, use the process executor.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading

from actionqueue.errors import ExecutorError, ValidationError
from actionqueue.runtime.executors.base import ExecutorAdapter, Job, interrupted, run_local
from actionqueue.runtime.executors.watcher import DeadlineWatcher

__all__ = ["ThreadExecutor"]

_LOG = logging.getLogger("actionqueue.runtime")


class _Worker:
    __slots__ = ("abandoned", "job", "thread")

    def __init__(self) -> None:
        self.job: Job | None = None
        self.abandoned = False
        self.thread: threading.Thread | None = None


class ThreadExecutor(ExecutorAdapter):
    """Run handlers on ``max_workers`` threads (``async def`` handlers get their own loop)."""

    name = "threads"
    inline_completion = True

    def __init__(
        self,
        max_workers: int = 8,
        *,
        max_abandoned: int | None = None,
        thread_name_prefix: str = "aq-worker",
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValidationError(f"max_workers must be an int >= 1, got {max_workers!r}")
        self.max_workers = max_workers
        self.max_abandoned = 4 * max_workers if max_abandoned is None else max_abandoned
        self._prefix = thread_name_prefix
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()
        self._abandoned = 0
        self._counter = 0
        self._watcher = DeadlineWatcher(f"{thread_name_prefix}-deadlines")
        self._closed = False

    @property
    def abandoned_threads(self) -> int:
        """Threads still running a handler that timed out or was canceled."""
        return self._abandoned

    def start(self) -> None:
        with self._lock:
            while len([w for w in self._workers if not w.abandoned]) < self.max_workers:
                self._spawn_locked()

    def _spawn_locked(self) -> None:
        w = _Worker()
        self._counter += 1
        t = threading.Thread(
            target=self._loop, args=(w,), name=f"{self._prefix}-{self._counter}", daemon=True
        )
        w.thread = t
        self._workers.add(w)
        t.start()

    def submit(self, job: Job) -> None:
        if self._closed:
            raise ExecutorError("the thread executor is shut down")
        if not self._workers:
            self.start()
        self._queue.put(job)

    def _loop(self, w: _Worker) -> None:
        q = self._queue
        while True:
            job = q.get()
            if job is None:
                break
            if job.done:  # canceled before it started
                continue
            w.job = job
            job.handle = w
            if job.context.cancelled.is_set():  # stopped between the queue and here
                w.job = None
                job.finish(interrupted(job.context.cancelled.reason or "canceled", 0.0))
                continue
            timer = None
            if job.timeout is not None:
                timer = self._watcher.schedule(job.timeout, functools.partial(self._expire, job))
            result = run_local(job)
            if timer is not None:
                self._watcher.cancel(timer)
            w.job = None
            job.finish(result)
            if w.abandoned:
                break
        with self._lock:
            self._workers.discard(w)
            if w.abandoned:
                self._abandoned -= 1

    def _expire(self, job: Job) -> None:
        self._stop_job(job, "timeout")

    def cancel(self, job: Job, reason: str = "canceled") -> None:
        self._stop_job(job, reason)

    def _stop_job(self, job: Job, reason: str) -> None:
        job.context.cancelled.set(reason)
        if not job.finish(interrupted(reason, job.elapsed())):
            return
        w = job.handle
        if not isinstance(w, _Worker):
            return  # not started yet: the worker will skip it
        with self._lock:
            if w.job is not job or w.abandoned or self._closed:
                return
            # The handler may keep running; free its slot for the next attempt.
            w.abandoned = True
            self._abandoned += 1
            if self._abandoned <= self.max_abandoned:
                self._spawn_locked()
            else:
                _LOG.warning(
                    "%d handler threads ignored their cancel signal and are still running; "
                    "not replacing them (max_abandoned=%d): pool capacity is reduced",
                    self._abandoned,
                    self.max_abandoned,
                )

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers)
        for _ in workers:
            self._queue.put(None)
        if wait:
            for w in workers:
                if w.thread is not None and w.thread is not threading.current_thread():
                    w.thread.join(timeout)
        self._watcher.stop()
