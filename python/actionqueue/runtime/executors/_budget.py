"""The thread budget shared by the executors whose handlers run on plain threads (the thread
executor, the asyncio executor's sync handlers).

Python cannot stop a thread, so a thread stuck in a handler that timed out or was canceled is
*abandoned*: it no longer counts as a worker and a replacement may start, as long as the pool
holds at most ``max_workers + max_abandoned`` threads in all. An abandoned thread whose handler
finally returns *rejoins* as a worker if the pool is short of workers, else it ends. Every
count below is guarded by ``_lock`` (also ``_cv``'s lock); the executors keep their own queue
and hand-off policy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from typing import Any


class PoolThread:
    """One thread of a pool: ``job`` is what it runs now (the executor's own object)."""

    __slots__ = ("abandoned", "job", "thread")

    def __init__(self) -> None:
        self.job: Any = None
        self.abandoned = False
        self.thread: threading.Thread | None = None


class ThreadBudget:
    def __init__(self, max_workers: int, max_abandoned: int, prefix: str) -> None:
        self.max_workers = max_workers
        self.max_abandoned = max_abandoned
        self._prefix = prefix
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        #: every thread, workers and abandoned ones; ``_live`` + ``_abandoned`` == its size
        self._workers: set[PoolThread] = set()
        self._live = 0
        self._abandoned = 0
        #: workers waiting in ``_cv`` / notified and not yet awake
        self._idle = 0
        self._waking = 0
        self._counter = 0
        self._closed = False

    @property
    def abandoned_threads(self) -> int:
        """Threads still running a handler that timed out or was canceled."""
        return self._abandoned

    @property
    def live_workers(self) -> int:
        """Threads that take queued work (``max_workers`` unless stuck handlers hold more than
        ``max_abandoned`` threads)."""
        return self._live

    def _may_spawn_locked(self) -> bool:
        return (
            self._live < self.max_workers
            and self._live + self._abandoned < self.max_workers + self.max_abandoned
        )

    def _spawn_locked(self, target: Callable[[PoolThread], None]) -> None:
        """Start a worker thread running ``target(worker)`` (a daemon: the interpreter does not
        wait for a thread stuck in a handler)."""
        w = PoolThread()
        self._counter += 1
        t = threading.Thread(
            target=target, args=(w,), name=f"{self._prefix}-{self._counter}", daemon=True
        )
        w.thread = t
        self._workers.add(w)
        self._live += 1
        t.start()

    def _wait_for_work_locked(self, queue: Collection[Any]) -> bool:
        """Waits (idle) until ``queue`` holds something: ``True``; ``False`` once closed with
        nothing left."""
        while not queue:
            if self._closed:
                return False
            self._idle += 1
            try:
                self._cv.wait()
            finally:
                self._idle -= 1
                if self._waking:
                    self._waking -= 1
        return True

    def _abandon_locked(self, w: PoolThread) -> None:
        w.abandoned = True
        self._live -= 1
        self._abandoned += 1

    def _rejoin_locked(self, w: PoolThread) -> bool:
        """``w``'s abandoned handler returned: it becomes a worker again if the pool is short
        of workers (``True``); otherwise it leaves the pool (``False``)."""
        self._abandoned -= 1
        w.abandoned = False
        if self._closed or self._live >= self.max_workers:
            self._workers.discard(w)
            return False
        self._live += 1
        return True

    def _leave_locked(self, w: PoolThread) -> None:
        """A worker ends (shut down)."""
        self._workers.discard(w)
        self._live -= 1

    def _close_locked(self) -> list[PoolThread]:
        """Closes the pool and wakes the idle workers (they finish what is queued, then leave);
        returns the workers to join: never the abandoned threads."""
        self._closed = True
        self._cv.notify_all()
        return [w for w in self._workers if not w.abandoned]

    @staticmethod
    def _join(workers: list[PoolThread], timeout: float | None) -> None:
        for w in workers:
            if w.thread is not None and w.thread is not threading.current_thread():
                w.thread.join(timeout)
