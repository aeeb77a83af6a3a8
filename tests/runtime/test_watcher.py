"""The deadline watcher behind cooperative timeouts."""

from __future__ import annotations

import threading

from actionqueue.runtime.executors.watcher import DeadlineWatcher


def test_cancelled_deadlines_do_not_pile_up_behind_a_long_one() -> None:
    """Every finished attempt cancels its timeout; behind one long deadline the cancelled
    entries used to stay in the heap (each holding its job) until the long one fired."""
    w = DeadlineWatcher("test-deadlines")
    try:
        fired = threading.Event()
        w.schedule(3600, fired.set)  # a legitimately long attempt
        for _ in range(10_000):
            w.cancel(w.schedule(60, fired.set))
        assert len(w._heap) < 200
        assert len(w._cancelled) < 200
        assert not fired.is_set()
    finally:
        w.stop()


def test_a_deadline_fires_and_a_cancelled_one_does_not() -> None:
    w = DeadlineWatcher("test-deadlines")
    try:
        fired, cancelled = threading.Event(), threading.Event()
        w.cancel(w.schedule(0.01, cancelled.set))
        w.schedule(0.02, fired.set)
        assert fired.wait(10)
        assert not cancelled.is_set()
    finally:
        w.stop()
