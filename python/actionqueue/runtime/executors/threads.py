"""The default executor: a bounded pool of threads, cooperative timeouts.

Python cannot stop a thread from outside. At an attempt's deadline the executor sets the
handler's cancel signal (``ctx.cancelled``, reason ``"timeout"``) and records **Timeout at
once**; the thread may keep running until the handler returns, and whatever it returns then is
ignored. Cancel works the same way. For a hard stop, use the process executor. (The run's
concurrency key stays busy in this runtime until the abandoned handler returns: the key's
next run does not start beside it; see docs/concurrency.md.)

Capacity: so that a stuck handler does not eat the pool, its thread is *abandoned*: it no
longer counts as a worker, and a replacement starts now. The pool keeps ``max_workers`` workers
as long as it has at most ``max_workers + max_abandoned`` threads in all (``max_abandoned``
defaults to ``4 * max_workers``); past that no replacement starts (a warning is logged) and
capacity shrinks. It comes back by itself: an abandoned thread whose handler finally returns
becomes a worker again if the pool is short of workers (else it ends). Queued jobs are never
left behind while a worker is alive. When *no* worker is left (every thread is stuck in an
abandoned handler), a queued job that has a timeout waits at most that long for a thread and
then times out without having run (``Timeout``, duration = the wait; its retry policy
decides what comes next); one without a timeout waits for a stuck handler to return (or for a
cancel / ``close(drain=False)``). :meth:`ThreadExecutor.shutdown` waits only for workers, never
for abandoned threads (daemon threads: the interpreter does not wait for them either).

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
from actionqueue.runtime.executors._budget import PoolThread, ThreadBudget
from actionqueue.runtime.executors.base import ExecutorAdapter, Job, interrupted, run_local
from actionqueue.runtime.executors.watcher import DeadlineWatcher

__all__ = ["ThreadExecutor"]

_LOG = logging.getLogger("actionqueue.runtime")


class ThreadExecutor(ThreadBudget, ExecutorAdapter):
    """Run handlers on ``max_workers`` threads (``async def`` handlers get their own loop).

    ``max_abandoned``: how many threads stuck in a handler that timed out or was canceled the
    pool replaces with fresh ones (default ``4 * max_workers``); see the module doc.
    """

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
        if max_abandoned is not None and (
            isinstance(max_abandoned, bool)
            or not isinstance(max_abandoned, int)
            or max_abandoned < 0
        ):
            raise ValidationError(f"max_abandoned must be an int >= 0, got {max_abandoned!r}")
        super().__init__(
            max_workers,
            4 * max_workers if max_abandoned is None else max_abandoned,
            thread_name_prefix,
        )
        self.prefetch = prefetch
        #: queued jobs; guarded by ``_lock`` (``_cv``'s lock: ``with self._lock`` costs no
        #: Python call, ``with self._cv`` two). At most one idle worker is being woken
        #: (``_waking``): see the module doc.
        self._jobs: collections.deque[Job] = collections.deque()
        self._tls = threading.local()
        #: while no worker is left: the deadline of each queued job that has a timeout
        self._wait_timers: dict[Job, int] = {}
        self._watcher = DeadlineWatcher(f"{thread_name_prefix}-deadlines")
        self._started = False

    def start(self) -> None:
        with self._lock:
            self._started = True
            self._refill_locked()

    def _refill_locked(self) -> None:
        """Start workers up to ``max_workers`` within the thread budget; when none is left,
        bound the wait of the queued jobs (see the module doc)."""
        while self._may_spawn_locked():
            self._spawn_locked(self._loop)
        if self._live == 0:
            for job in self._jobs:
                self._arm_wait_locked(job)

    def submit(self, job: Job) -> None:
        self.submit_many([job])

    def submit_many(self, jobs: list[Job]) -> None:
        """Queue a batch; wakes one idle worker (which wakes the next if work is left)."""
        if self._closed:
            raise ExecutorError("the thread executor is shut down")
        if not self._started:
            self.start()
        with self._lock:
            self._jobs.extend(jobs)
            if self._live == 0:
                for job in jobs:
                    self._arm_wait_locked(job)
            self._wake_one_locked()

    def backlog(self) -> int:
        return len(self._jobs)

    def on_worker_thread(self) -> bool:
        return getattr(self._tls, "worker", False)

    def _wake_one_locked(self) -> None:
        if self._jobs and self._idle and not self._waking:
            self._waking += 1
            self._cv.notify()

    # --- waiting without a worker ------------------------------------------------------------

    def _arm_wait_locked(self, job: Job) -> None:
        if job.timeout is not None and job not in self._wait_timers and not self._closed:
            self._wait_timers[job] = self._watcher.schedule(
                job.timeout, functools.partial(self._expire_queued, job)
            )

    def _disarm_waits_locked(self) -> None:
        for timer in self._wait_timers.values():
            self._watcher.cancel(timer)
        self._wait_timers.clear()

    def _expire_queued(self, job: Job) -> None:
        """A queued job waited its whole timeout with no worker left: it times out unrun."""
        with self._lock:
            if self._wait_timers.pop(job, None) is None:
                return  # a worker took it, or one came back in time
            try:
                self._jobs.remove(job)
            except ValueError:
                return
        if job.done:  # canceled while it waited
            return
        _LOG.warning(
            "run %s timed out after %.3g s waiting for a thread: every thread is stuck in a "
            "handler that ignored its cancel signal (max_abandoned=%d)",
            job.snapshot.run_id,
            job.timeout,
            self.max_abandoned,
            extra=job.snapshot.log_fields(),
        )
        job.context.cancelled.request("timeout")
        job.finish(interrupted("timeout", job.elapsed()))

    # --- workers -----------------------------------------------------------------------------

    def _next_job(self) -> Job | None:
        """The next queued job (``None``: shutting down), waking one more worker if jobs
        are left behind it; the last one is announced (:attr:`on_drained`)."""
        with self._lock:
            if not self._jobs and not self._wait_for_work_locked(self._jobs):
                return None
            job = self._jobs.popleft()
            if self._wait_timers:
                timer = self._wait_timers.pop(job, None)
                if timer is not None:
                    self._watcher.cancel(timer)
            self._wake_one_locked()
            drained = not self._jobs
        if drained:
            cb = self.on_drained
            if cb is not None:
                cb()
        return job

    def _loop(self, w: PoolThread) -> None:
        self._tls.worker = True
        while True:
            job = self._next_job()
            if job is None:
                break
            if job.done:  # canceled before it started
                continue
            w.job = job
            job.handle = w
            # Running from before the stop check: a stop that the check misses finds the
            # handler running (see Job.linger), one it sees means the handler never runs.
            job.enter()
            if job.context.cancelled.is_set():  # stopped between the queue and here
                w.job = None
                job.leave()
                job.finish(interrupted(job.context.cancelled.requested or "canceled", 0.0))
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
            if w.abandoned and not self._rejoin(w):
                return
        with self._lock:
            self._leave_locked(w)

    def _rejoin(self, w: PoolThread) -> bool:
        """An abandoned thread's handler returned: it becomes a worker again if the pool is
        short of workers (its capacity comes back); otherwise it leaves (``False``)."""
        with self._lock:
            if not self._rejoin_locked(w):
                return False
            self._disarm_waits_locked()
            return True

    def _expire(self, job: Job) -> None:
        self._stop_job(job, "timeout")

    def cancel(self, job: Job, reason: str = "canceled") -> None:
        self._stop_job(job, reason)

    def _stop_job(self, job: Job, reason: str) -> None:
        if job.done:
            job.context.cancelled.request(reason)
            return
        w = job.handle
        if isinstance(w, PoolThread):  # started: free its slot before the outcome is published
            with self._lock:
                if w.job is job and not w.abandoned and not self._closed and not job.done:
                    # The handler may keep running; its slot goes to a new thread now. (If the
                    # handler returns first after all, the thread rejoins or leaves: no harm.)
                    self._abandon_locked(w)
                    self._refill_locked()
                    if self._live < self.max_workers:
                        _LOG.warning(
                            "%d handler threads ignored their cancel signal and are still "
                            "running; not replacing them past max_abandoned=%d: %d of %d "
                            "workers left until they return",
                            self._abandoned,
                            self.max_abandoned,
                            self._live,
                            self.max_workers,
                        )
        # Signal, then record at once (a handler that stops on the signal comes second).
        # Not started yet: the worker will skip it.
        job.context.cancelled.request(reason)
        job.finish(interrupted(reason, job.elapsed()))

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop taking jobs; workers finish what is queued, then leave. ``wait``: join the
        workers (up to ``timeout`` s each), never the abandoned threads. Jobs queued with no
        worker left to run them end as interrupted (``"shutdown"``)."""
        with self._lock:
            if self._closed:
                return
            orphans: list[Job] = []
            if self._live == 0:
                orphans = list(self._jobs)
                self._jobs.clear()
            self._disarm_waits_locked()
            workers = self._close_locked()
        for job in orphans:
            job.context.cancelled.request("shutdown")
            job.finish(interrupted("shutdown", 0.0))
        if wait:
            self._join(workers, timeout)
        self._watcher.stop()
