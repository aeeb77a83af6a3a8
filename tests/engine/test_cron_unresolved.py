"""A cron task whose time zone this machine does not know (docs/policies.md, "A time zone this
machine does not know").

A log written where a zone resolves can be reopened where it does not (an older tzdata). The
task's policy used to be refused when read back, and every tick that met the task raised: no
task of the queue was dispatched any more. Now the task is kept as written, the runs it has
run, no new ones are derived (one warning), everything else goes on, and the task picks up
where it stopped once the log is opened where the zone resolves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from test_engine import drain, spec

from actionqueue.core import DurabilityPolicy, MisfirePolicy, RunId, RunPolicy, RunState, TaskId
from actionqueue.engine import Engine
from conftest import T0, Env

S = RunState
MIN = 60_000
MARS = "Mars/Olympus_Mons"
MARS_POLICY = ((2, "* * * * *", MARS, None, 2), (0, None, None))


def write_mars_task(env: Env) -> tuple[TaskId, Any]:
    """A cron task naming a zone no machine knows, with its first window (T0 + 1 and 2 min),
    written as a log from elsewhere holds it: straight through the authority."""
    s = spec(RunPolicy.cron("* * * * *", window=2))
    wire = list(s.to_wire())
    wire[4] = MARS_POLICY
    events = [(0, tuple(wire), T0, T0)]
    events += [(1, RunId.new().bytes, s.task_id.bytes, k, T0 + (k + 1) * MIN, T0) for k in (0, 1)]
    env.auth.submit_wire(events, DurabilityPolicy.IMMEDIATE)
    return s.task_id, tuple(wire)


def stall_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "actionqueue.engine" and r.levelno == logging.WARNING
    ]


def test_a_cron_task_whose_zone_is_unknown_here_stops_nothing_else(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="actionqueue.engine")
    mars, mars_wire = write_mars_task(env)
    once = env.engine.submit(spec(), origin=T0 + MIN)
    utc = env.engine.submit(spec(RunPolicy.cron("* * * * *", window=2)), origin=T0)
    e: Engine = env.restart()

    env.clock.set(T0 + 3 * MIN)
    # Before: InvalidPolicyError from this tick on, for every task.
    assert drain(e) == 2 + 1 + 3  # Mars's two runs, the once task, the UTC cron's 3 due
    assert [r.state for r in e.runs_for_task(mars)] == [S.COMPLETED, S.COMPLETED]
    assert [r.state for r in e.runs_for_task(once)] == [S.COMPLETED]
    rec = e.get_task(mars)
    assert rec is not None
    assert (rec.derived, rec.non_terminal) == (2, 0)  # no occurrence derived past its window
    assert rec.spec.to_wire() == mars_wire  # kept exactly as written
    why = rec.spec.run_policy.unresolved
    assert why is not None
    assert why.startswith(f"unknown timezone {MARS!r}")
    assert e.stats()["stalled_tasks"] == {str(mars): why}
    (warning,) = stall_warnings(caplog)
    assert str(mars) in warning
    assert MARS in warning

    env.clock.set(T0 + 10 * MIN)
    assert drain(e) > 0  # the UTC cron goes on
    assert e.get_task(mars).derived == 2  # type: ignore[union-attr]
    assert len(stall_warnings(caplog)) == 1  # once per task
    assert [r.state for r in e.runs_for_task(utc)][-2:] == [S.SCHEDULED, S.SCHEDULED]

    # A later engine (a restart) warns once again when it meets the task, and still works.
    e = env.restart()
    e.tick()
    assert len(stall_warnings(caplog)) == 2
    assert e.get_task(mars).spec.to_wire() == mars_wire  # type: ignore[union-attr]


def test_a_stalled_cron_task_keeps_its_misfire_policy_for_the_runs_it_has(env: Env) -> None:
    s = spec(RunPolicy.cron("* * * * *", window=3))
    wire = list(s.to_wire())
    wire[4] = ((2, "* * * * *", MARS, None, 3), (1, None, 0))  # coalesce, no grace
    events: list[Any] = [(0, tuple(wire), T0, T0)]
    events += [(1, RunId.new().bytes, s.task_id.bytes, k, T0 + k * MIN, T0) for k in range(3)]
    env.auth.submit_wire(events, DurabilityPolicy.IMMEDIATE)
    e = env.restart()
    env.clock.set(T0 + 2 * MIN + 30_000)
    assert drain(e) == 1
    runs = e.runs_for_task(s.task_id)
    assert [r.state for r in runs] == [S.CANCELED, S.CANCELED, S.COMPLETED]
    promoted = next(h for h in runs[2].history if h.to_state is S.READY)
    assert promoted.reason == "misfire: coalesced 3 missed occurrences"
    assert e.get_task(s.task_id).derived == 3  # type: ignore[union-attr]


def test_a_cron_task_picks_up_where_it_stopped_once_its_zone_resolves(
    env: Env, hide_zones: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="actionqueue.engine")
    policy = RunPolicy.cron(
        "* * * * *", timezone="Europe/Paris", window=2, misfire=MisfirePolicy.coalesce()
    )
    tid = env.engine.submit(spec(policy), origin=T0)
    written = env.engine.get_task(tid).spec.to_wire()  # type: ignore[union-attr]

    hide_zones("Europe/Paris")  # reopened on a machine that lacks the zone
    e = env.restart()
    first, second = (r.scheduled_at for r in e.runs_for_task(tid))  # 22:14 and 22:15 UTC
    for at in (first, second):
        env.clock.set(at)
        assert drain(e) == 1  # the runs it has run, on time
    rec = e.get_task(tid)
    assert rec is not None
    assert (rec.derived, rec.non_terminal) == (2, 0)  # its window drained, nothing derived
    assert len(stall_warnings(caplog)) == 1

    hide_zones()  # an hour later, opened where it resolves again
    env.clock.set(second + 60 * MIN + 30_000)
    e = env.restart()
    e.tick()  # the first tick refills the window left short; the misfire policy applies
    runs = e.runs_for_task(tid)
    assert [r.state for r in runs[:2]] == [S.COMPLETED, S.COMPLETED]
    (ready,) = [r for r in runs if r.state is S.READY]  # one run for the missed hour
    assert ready.scheduled_at == second + 60 * MIN
    assert ready.history[-1].reason == "misfire: coalesced 60 missed occurrences"
    assert [r.scheduled_at for r in runs if r.state is S.SCHEDULED] == [second + 61 * MIN]
    assert drain(e) == 1
    rec = e.get_task(tid)
    assert rec is not None
    assert rec.non_terminal == 2  # the window is full again
    assert rec.spec.to_wire() == written
    assert e.stats()["stalled_tasks"] == {}
    assert len(stall_warnings(caplog)) == 1


def test_a_bounded_cron_task_with_every_run_derived_is_not_reported(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing is held back when every run the policy allows exists: no warning."""
    caplog.set_level(logging.WARNING, logger="actionqueue.engine")
    s = spec(RunPolicy.cron("* * * * *", max_occurrences=2, window=2))
    wire = list(s.to_wire())
    wire[4] = ((2, "* * * * *", MARS, 2, 2), (0, None, None))
    events: list[Any] = [(0, tuple(wire), T0, T0)]
    events += [(1, RunId.new().bytes, s.task_id.bytes, k, T0 + k * MIN, T0) for k in range(2)]
    env.auth.submit_wire(events, DurabilityPolicy.IMMEDIATE)
    e = env.restart()
    env.clock.set(T0 + MIN)
    assert drain(e) == 2
    assert [r.state for r in e.runs_for_task(s.task_id)] == [S.COMPLETED, S.COMPLETED]
    assert stall_warnings(caplog) == []
    assert e.stats()["stalled_tasks"] == {}
