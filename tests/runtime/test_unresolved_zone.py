"""A queue reopened on a machine whose zone database lacks a cron task's time zone (an older
tzdata): see docs/policies.md, "A time zone this machine does not know"."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rt_helpers import MakeQueue, needs_real_storage

from actionqueue import RunPolicy, RunState
from actionqueue.engine import ManualClock

pytestmark = [pytest.mark.timeout(60), needs_real_storage]

MIN = 60_000


def _records(caplog: pytest.LogCaptureFixture, logger: str, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno >= level]


def test_a_log_naming_a_zone_unknown_here_opens_and_keeps_dispatching(
    make_queue: MakeQueue,
    clock: ManualClock,
    tmp_path: Path,
    hide_zones: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: opening the queue raised InvalidPolicyError when one of the task's runs was due
    (the open's own tick met it), and otherwise the first tick that met it did — in
    ``run_until_idle``, or in the background loop, which then retried for ever: no task of
    the queue was dispatched again, and ``get_task`` of the task raised too."""
    caplog.set_level(logging.WARNING)
    path = tmp_path / "q"
    done: list[str] = []

    def h(ctx: Any, payload: str) -> None:
        done.append(payload)

    q = make_queue(path, clock=clock)
    q.register("h", h)
    policy = RunPolicy.cron("* * * * *", timezone="Europe/Paris", window=2)
    paris = q.submit("h", "paris", policy=policy)
    written = q.get_task(paris).spec.to_wire()  # type: ignore[union-attr]
    q.close()

    hide_zones("Europe/Paris")
    clock.advance(3 * MIN)  # both runs of its window are due when the log is opened
    q = make_queue(path, clock=clock)
    q.register("h", h)
    other = q.submit("h", "other")
    assert q.run_until_idle() == 3
    assert sorted(done) == ["other", "paris", "paris"]
    rec = q.get_task(paris)
    assert rec is not None
    assert (rec.derived, rec.non_terminal) == (2, 0)  # its window drained, nothing derived
    assert rec.spec.to_wire() == written
    why = rec.spec.run_policy.unresolved
    assert why is not None
    assert why.startswith("unknown timezone 'Europe/Paris'")
    assert q.stats()["stalled_tasks"] == {str(paris): why}
    (warning,) = _records(caplog, "actionqueue.engine", logging.WARNING)
    assert str(paris) in warning
    assert "Europe/Paris" in warning
    assert q.result(other) is None

    # The background loop runs the rest of the queue too (it used to retry the failing tick
    # for ever, logging an error each time).
    later = q.submit("h", "later", delay=1)
    q.start()
    clock.advance(2_000)
    q.wait(later, timeout=20)
    q.stop()
    assert done[-1] == "later"
    assert _records(caplog, "actionqueue.runtime", logging.ERROR) == []
    q.snapshot()
    q.close()

    # Where the zone resolves (the snapshot holds the task unchanged), the task goes on.
    hide_zones()
    clock.advance(MIN)
    q = make_queue(path, clock=clock)
    q.register("h", h)
    assert q.get_task(paris).spec.to_wire() == written  # type: ignore[union-attr]
    assert q.run_until_idle() == 2  # the 2 occurrences missed meanwhile (caught up)
    rec = q.get_task(paris)
    assert rec is not None
    assert (rec.derived, rec.non_terminal) == (6, 2)  # the window refilled
    assert all(r.state is RunState.COMPLETED for r in q.runs(paris)[:-2])
    assert q.stats()["stalled_tasks"] == {}
    assert len(_records(caplog, "actionqueue.engine", logging.WARNING)) == 1


def test_a_canceled_stalled_task_is_no_longer_listed(
    make_queue: MakeQueue, clock: ManualClock, tmp_path: Path, hide_zones: Callable[..., None]
) -> None:
    """``stats()["stalled_tasks"]`` lists cron tasks held back by an unknown zone: a task
    canceled since has nothing left to derive (it was listed until the queue was reopened)."""
    path = tmp_path / "q"
    q = make_queue(path, clock=clock)
    q.register("h", lambda ctx, p: None)
    paris = q.submit("h", "p", policy=RunPolicy.cron("* * * * *", timezone="Europe/Paris"))
    q.close()
    hide_zones("Europe/Paris")
    clock.advance(3 * MIN)
    q = make_queue(path, clock=clock)
    q.register("h", lambda ctx, p: None)
    q.run_until_idle()
    assert list(q.stats()["stalled_tasks"]) == [str(paris)]
    q.cancel(paris)
    assert q.stats()["stalled_tasks"] == {}
    q.run_until_idle()
    assert q.stats()["stalled_tasks"] == {}
