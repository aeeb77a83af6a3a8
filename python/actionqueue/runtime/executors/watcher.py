"""One background thread that fires callbacks at deadlines (real, monotonic time).

Used for cooperative timeouts. Timeouts are measured in real elapsed time even when the queue
runs on a ``ManualClock``: handlers run in real time.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["LONGEST_WAIT_S", "DeadlineWatcher"]

#: The longest single wait on a deadline (well under ``threading.TIMEOUT_MAX`` and what
#: ``select`` takes): a deadline centuries away (a ``timeout=`` of 1000 years is a valid
#: duration) is waited for a day at a time, instead of overflowing the platform's wait.
LONGEST_WAIT_S = 86_400.0


class DeadlineWatcher:
    """``schedule(delay, fn)`` calls ``fn()`` on the watcher thread after ``delay`` seconds,
    unless the returned handle is passed to ``cancel`` first. Callbacks must be quick."""

    def __init__(self, name: str = "aq-deadlines") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stop = False

    def schedule(self, delay: float, fn: Callable[[], None]) -> int:
        when = time.monotonic() + max(0.0, delay)
        with self._cond:
            if self._stop:
                raise RuntimeError("the deadline watcher is stopped")
            handle = next(self._seq)
            heapq.heappush(self._heap, (when, handle, fn))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return handle

    def cancel(self, handle: int) -> None:
        with self._cond:
            self._cancelled.add(handle)
            # Cancelled entries leave the heap lazily, when they reach its top; behind one
            # long deadline (an hour's timeout) the short ones of every finished attempt would
            # pile up, each holding its callback (and so its job, payload included). Rebuilt
            # once they are half of it: amortized O(log n) per cancel, memory bounded by the
            # deadlines still live.
            if len(self._cancelled) > 64 and 2 * len(self._cancelled) > len(self._heap):
                gone = self._cancelled
                self._heap = [e for e in self._heap if e[1] not in gone]
                heapq.heapify(self._heap)
                gone.clear()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
            t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stop:
                        return
                    if self._heap:
                        when, handle, fn = self._heap[0]
                        if handle in self._cancelled:
                            heapq.heappop(self._heap)
                            self._cancelled.discard(handle)
                            continue
                        delay = when - time.monotonic()
                        if delay <= 0:
                            heapq.heappop(self._heap)
                            break
                        self._cond.wait(min(delay, LONGEST_WAIT_S))
                    else:
                        self._cond.wait()
            try:
                fn()
            except Exception:  # a failing callback must not kill the watcher
                logging.getLogger("actionqueue.runtime").exception("deadline callback failed")
