"""A cron window refilled by a finish, cancel or lease expiry long after the fact.

Scenario (every test): ``* * * * *`` with ``window=3`` from 2024-01-01 00:00 UTC. The 00:00
run is dispatched (00:01 and 00:02 wait Scheduled), then nothing happens for an hour: the
handler runs long, or the process dies mid-attempt. At 01:00:30 the 00:00 run turns terminal
(finish, ``cancel_run``, the expiry sweep, a restart's sweep), which refills the window, and
everything runnable is drained. Occurrences 00:01 .. 01:00 (60 of them) are one missed window;
the expectations below are counted by hand from docs/policies.md:

* coalesce — exactly one run, 01:00, for all 60;
* catch_up(cap=2) — exactly 00:59 and 01:00 run, everything older is canceled;
* catch_up — all 60 run, each with its lateness;
* skip — none runs.

The refill derives 00:03 without planning it (no fold), so the tick sees 00:01 .. 00:03 and the
stretch 00:04 .. 01:00 (57 occurrences) after them together. The window then holds 01:01 ..
01:03.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from test_engine import drain, spec

from actionqueue.core import AttemptOutcome, MisfirePolicy, RunInstance, RunPolicy, RunState, TaskId
from actionqueue.engine import Dispatch, Engine
from conftest import Env

S = RunState
MIN = 60_000
MIDNIGHT = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
LATE = 60 * MIN + 30_000  # the trigger fires at 01:00:30

POLICIES = {
    "coalesce": MisfirePolicy.coalesce(),
    "cap2": MisfirePolicy.catch_up(cap=2),
    "catch_up": MisfirePolicy.catch_up(),
    "skip": MisfirePolicy.skip(),
}

TRIGGER_REASON = {
    "finish": None,
    "paused_finish": None,
    "cancel": "run canceled",
    "sweep": "lease expired: attempt lost (1 of 1 attempts used)",
}
TRIGGER_STATE = {
    "finish": S.COMPLETED,
    "paused_finish": S.COMPLETED,
    "cancel": S.CANCELED,
    "sweep": S.FAILED,
}

Row = tuple[int, RunState, str | None]  # (minute after midnight, state, reason)


def _late(m: int) -> str:
    """The catch-up reason of the run of minute ``m`` promoted at 01:00:30."""
    s = 60 * 60 + 30 - 60 * m
    return f"misfire: caught up {f'{s // 60}m {s % 60}s' if s >= 60 else f'{s} s'} late"


def expected(policy: str, runs: list[RunInstance]) -> tuple[list[Row], int]:
    """The rows after 00:00 and the number of attempts the drain makes."""
    future = [(61, S.SCHEDULED, None), (62, S.SCHEDULED, None), (63, S.SCHEDULED, None)]
    if policy == "coalesce":
        survivor = next(r for r in runs if r.scheduled_at == MIDNIGHT + 60 * MIN)
        into = f"misfire: coalesced into run {survivor.run_id}"
        rows = [(m, S.CANCELED, into) for m in (1, 2, 3)]
        return [*rows, (60, S.COMPLETED, "misfire: coalesced 60 missed occurrences"), *future], 1
    if policy == "cap2":
        rows = [(m, S.CANCELED, "misfire: catch-up cap 2 exceeded") for m in (1, 2, 3)]
        rows += [
            (58, S.CANCELED, "misfire: catch-up cap 2 exceeded (55 occurrences)"),
            (59, S.COMPLETED, "misfire: caught up 1m 30s late"),
            (60, S.COMPLETED, "misfire: caught up 30 s late"),
        ]
        return [*rows, *future], 2
    if policy == "catch_up":
        assert _late(1) == "misfire: caught up 59m 30s late"
        return [(m, S.COMPLETED, _late(m)) for m in range(1, 61)] + future, 60
    assert policy == "skip"
    rows = [(m, S.CANCELED, "misfire: skipped") for m in (1, 2, 3)]
    return [*rows, (60, S.CANCELED, "misfire: skipped (57 occurrences)"), *future], 0


def rows(runs: list[RunInstance]) -> list[Row]:
    """(minute, state, reason of the run's last reasoned change) for each run after 00:00."""
    out: list[Row] = []
    for r in runs[1:]:
        reasons = [h.reason for h in r.history if h.reason]
        out.append(((r.scheduled_at - MIDNIGHT) // MIN, r.state, reasons[-1] if reasons else None))
    return out


def start(env: Env, policy: str) -> tuple[Engine, TaskId, Dispatch]:
    env.clock.set(MIDNIGHT)
    e = env.engine
    tid = e.submit(spec(RunPolicy.cron("* * * * *", window=3, misfire=POLICIES[policy])))
    (d,) = e.dispatch_next()
    assert [r.state for r in e.runs_for_task(tid)] == [S.RUNNING, S.SCHEDULED, S.SCHEDULED]
    return e, tid, d


def check(e: Engine, tid: TaskId, policy: str, state: RunState, reason: str | None) -> None:
    attempts = drain(e)
    runs = e.runs_for_task(tid)
    first = [h.reason for h in runs[0].history if h.reason]
    assert (runs[0].state, first[-1] if first else None) == (state, reason)
    want, n = expected(policy, runs)
    assert rows(runs) == want
    assert attempts == n
    assert [r.ordinal for r in runs] == list(range(len(runs)))
    assert drain(e) == 0


@pytest.mark.parametrize("trigger", ["finish", "paused_finish", "cancel", "sweep"])
@pytest.mark.parametrize("policy", list(POLICIES))
def test_late_refill_plans_one_missed_window(env: Env, policy: str, trigger: str) -> None:
    e, tid, d = start(env, policy)
    env.clock.advance(LATE)
    if trigger == "finish":  # the handler took an hour
        e.finish_attempt(d.run_id, d.attempt_id, AttemptOutcome.SUCCESS)
    elif trigger == "paused_finish":  # ... while the queue was paused: resume plans the misfire
        e.pause()
        e.finish_attempt(d.run_id, d.attempt_id, AttemptOutcome.SUCCESS)
        assert drain(e) == 0
        e.resume()
    elif trigger == "cancel":
        e.cancel_run(d.run_id)
    else:  # the worker vanished: its 10 s lease expired long ago
        e.tick()
    check(e, tid, policy, TRIGGER_STATE[trigger], TRIGGER_REASON[trigger])


@pytest.mark.parametrize("policy", list(POLICIES))
def test_restart_after_downtime_plans_one_missed_window(real_env: Env, policy: str) -> None:
    _, tid, _ = start(real_env, policy)
    e = real_env.restart(crash=True)  # dies mid-attempt, down for an hour
    real_env.clock.advance(LATE)
    check(e, tid, policy, S.FAILED, TRIGGER_REASON["sweep"])


@pytest.mark.parametrize("restart", [False, True])
def test_pruning_a_cron_tasks_newest_run_never_runs_its_occurrence_again(
    env: Env, restart: bool
) -> None:
    """A catch-up cap larger than the window keeps more missed runs than the window: they are
    dispatched together, and the newest may end first. A prune then (retention) forgot it, the
    task's schedule fell back to the run before it, and the next refill derived the newest
    occurrence again: it ran twice. The newest run of a live cron task is kept by prune."""
    if restart and env.kind == "fake":
        pytest.skip("a restart needs durable state")
    e = env.engine
    policy = RunPolicy.cron("* * * * *", window=2, misfire=MisfirePolicy.catch_up(cap=3))
    tid = e.submit(spec(policy), origin=MIDNIGHT)
    env.clock.set(MIDNIGHT + 10 * MIN + 30_000)  # back after 10 minutes: 00:08 .. 00:10 run
    batch = e.dispatch_next(limit=10)
    assert [(d.scheduled_at - MIDNIGHT) // MIN for d in batch] == [8, 9, 10]
    newest = batch[-1]
    e.finish_attempt(newest.run_id, newest.attempt_id, AttemptOutcome.SUCCESS)  # ends first
    env.clock.advance(1)
    e.prune(env.clock.now())  # keep no terminal run
    if restart:
        e = env.restart()
    last = e.get_task(tid)
    assert last is not None
    assert last.last_scheduled_at == newest.scheduled_at
    for d in batch[:-1]:
        e.finish_attempt(d.run_id, d.attempt_id, AttemptOutcome.SUCCESS)
    ran = [newest.scheduled_at] + [d.scheduled_at for d in batch[:-1]]
    for _ in range(4):
        env.clock.advance(MIN)
        for d in e.dispatch_next(limit=10):
            ran.append(d.scheduled_at)
            e.finish_attempt(d.run_id, d.attempt_id, AttemptOutcome.SUCCESS)
    assert sorted((t - MIDNIGHT) // MIN for t in ran) == list(range(8, 15))  # each once


def test_a_window_full_of_waiting_runs_derives_nothing_until_one_finishes(env: Env) -> None:
    """docs/policies.md: Suspended runs hold their window slots; the occurrences that fell due
    meanwhile are derived late and go through the misfire policy (coalesce: one run)."""
    e = env.engine
    policy = RunPolicy.cron("* * * * *", window=2, misfire=MisfirePolicy.coalesce())
    tid = e.submit(spec(policy), origin=MIDNIGHT)
    for minute in (0, 1):  # 00:00 and 00:01 run on time, then wait for approval
        env.clock.set(MIDNIGHT + minute * MIN)
        assert drain(e, AttemptOutcome.SUSPENDED) == 1
    assert e.next_wakeup() is None  # nothing Scheduled: the window is full
    env.clock.advance(LATE)  # an hour later
    assert e.tick().created == 0
    for r in e.runs_for_task(tid):
        e.retry_now(r.run_id)
    assert drain(e) == 3  # the two approved runs, and one for the hour missed meanwhile
    coalesced = [r for r in e.runs_for_task(tid) if r.state is S.COMPLETED][-1]
    assert coalesced.scheduled_at == MIDNIGHT + 61 * MIN
    assert coalesced.history[1].reason == "misfire: coalesced 60 missed occurrences"
    assert e.next_wakeup() == MIDNIGHT + 62 * MIN  # and the schedule goes on
