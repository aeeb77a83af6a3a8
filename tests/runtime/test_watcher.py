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


def test_a_deadline_centuries_away_does_not_kill_the_watcher() -> None:
    """BUG: a wait past ``threading.TIMEOUT_MAX`` (a ``timeout=`` of 1000 years, a valid
    duration) raised OverflowError on the watcher thread, which died: from then on no attempt's
    timeout was enforced."""
    w = DeadlineWatcher("test-deadlines")
    try:
        far = threading.Event()
        w.schedule(1000 * 365 * 86_400.0, far.set)
        fired = threading.Event()
        w.schedule(0.05, fired.set)  # wakes the thread, which then waits for the far one
        assert fired.wait(10)
        again = threading.Event()
        w.schedule(0.05, again.set)
        assert again.wait(10), "the watcher thread died"
        assert w._thread is not None
        assert w._thread.is_alive()
        assert not far.is_set()
    finally:
        w.stop()
