"""The default executor: a bounded pool of threads, cooperative timeouts.

Python cannot stop a thread from outside. At an attempt's deadline the executor sets the
handler's cancel signal (``ctx.cancelled``, reason ``"timeout"``) and records **Timeout at
once**; the thread may keep running until the handler returns, and whatever it returns then is
ignored. So that a stuck handler does not eat the pool, its thread is *abandoned*: it leaves
the pool when the handler finally returns, and a replacement thread starts now (up to
``max_abandoned`` stuck threads; past that, capacity shrinks until they return and a warning
is logged). Cancel works the same way. For a hard stop, use the process executor.

Hand-off: queued jobs wait in one deque and **at most one idle worker is being woken at a
time**. A woken worker takes a job and, if more are waiting, wakes the next idle worker before
running it, so a batch fans out to as many threads as it keeps busy: a batch of slow handlers
spreads over the pool one wake-up latency apart, while a batch of quick ones is mostly run by
the first worker (waking a thread costs more than running a no-op handler: this is what takes
a dispatch batch from one wake-up per job to about two per batch).

Prefetch: while handlers are quick (attempts under a millisecond on average), the runtime
leases up to ``prefetch`` (default 4) runs per worker at once; the extra ones wait in the
deque. A job's time (its timeout, ``ctx.time_left()``, its recorded duration) starts when a
worker runs it, not when it was queued. ``prefetch=1`` never queues more than one job per
worker.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time

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
        prefetch: int = 4,
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValidationError(f"max_workers must be an int >= 1, got {max_workers!r}")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ValidationError(f"prefetch must be an int >= 1 (1: none), got {prefetch!r}")
        self.max_workers = max_workers
        self.prefetch = prefetch
        self.max_abandoned = 4 * max_workers if max_abandoned is None else max_abandoned
        self._prefix = thread_name_prefix
        self._lock = threading.Lock()
        #: queued jobs; guarded by ``_lock`` (``_cv``'s lock: ``with self._lock`` costs no
        #: Python call, ``with self._cv`` two)
        self._jobs: collections.deque[Job] = collections.deque()
        self._cv = threading.Condition(self._lock)
        #: workers waiting in ``_cv`` / woken and not yet running (at most one: see the doc)
        self._idle = 0
        self._waking = 0
        self._tls = threading.local()
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
        self.submit_many([job])

    def submit_many(self, jobs: list[Job]) -> None:
        """Queue a batch; wakes one idle worker (which wakes the next if work is left)."""
        if self._closed:
            raise ExecutorError("the thread executor is shut down")
        if not self._workers:
            self.start()
        with self._lock:
            self._jobs.extend(jobs)
            self._wake_one_locked()

    def backlog(self) -> int:
        return len(self._jobs)

    def on_worker_thread(self) -> bool:
        return getattr(self._tls, "worker", False)

    def _wake_one_locked(self) -> None:
        if self._jobs and self._idle and not self._waking:
            self._waking += 1
            self._cv.notify()

    def _next_job(self, w: _Worker) -> Job | None:
        """The next queued job (``None``: shutting down), waking one more worker if jobs
        are left behind it."""
        with self._lock:
            while not self._jobs:
                if self._closed or w.abandoned:
                    return None
                self._idle += 1
                try:
                    self._cv.wait()
                finally:
                    self._idle -= 1
                    if self._waking:
                        self._waking -= 1
            job = self._jobs.popleft()
            self._wake_one_locked()
            return job

    def _loop(self, w: _Worker) -> None:
        self._tls.worker = True
        while True:
            job = self._next_job(w)
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
            # A prefetched job may have waited in the queue: its time starts now.
            job.started = job.context._started = t0 = time.monotonic()
            timer = None
            if job.timeout is not None:
                timer = self._watcher.schedule(job.timeout, functools.partial(self._expire, job))
            result = run_local(job, t0)
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
        if job.done:
            job.context.cancelled.set(reason)
            return
        w = job.handle
        if isinstance(w, _Worker):  # started: free its slot before the outcome is published
            with self._lock:
                if w.job is job and not w.abandoned and not self._closed and not job.done:
                    # The handler may keep running; its slot goes to a new thread now. (If the
                    # handler returns first after all, the worker leaves anyway: no harm.)
                    w.abandoned = True
                    self._abandoned += 1
                    if self._abandoned <= self.max_abandoned:
                        self._spawn_locked()
                    else:
                        _LOG.warning(
                            "%d handler threads ignored their cancel signal and are still "
                            "running; not replacing them (max_abandoned=%d): pool capacity is "
                            "reduced",
                            self._abandoned,
                            self.max_abandoned,
                        )
        # Signal, then record at once (a handler that stops on the signal comes second).
        # Not started yet: the worker will skip it.
        job.context.cancelled.set(reason)
        job.finish(interrupted(reason, job.elapsed()))

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers)
            # Workers finish what is queued, then leave.
            self._cv.notify_all()
        if wait:
            for w in workers:
                if w.thread is not None and w.thread is not threading.current_thread():
                    w.thread.join(timeout)
        self._watcher.stop()
