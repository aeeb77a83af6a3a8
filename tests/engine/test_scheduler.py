"""Scheduler decisions: misfire plans, the per-task tick, retry wake-ups, next wake-up."""

from __future__ import annotations

import random

import pytest

from actionqueue.core import (
    Backoff,
    MisfirePolicy,
    RunId,
    RunInstance,
    RunPolicy,
    RunState,
    TaskId,
)
from actionqueue.engine import (
    DEFAULT_GRACE_MS,
    PromotionPlan,
    derive_runs,
    is_misfire,
    next_wakeup,
    plan_misfire,
    plan_retry_promotions,
    plan_task_promotion,
    retry_ready_at,
)
from actionqueue.engine.time.clock import ManualClock
from actionqueue.errors import ValidationError

MIN = 60_000
TID = TaskId.new()


def sched(*times: int) -> list[RunInstance]:
    return [RunInstance(RunId.new(), TID, RunState.SCHEDULED, k, t, 0) for k, t in enumerate(times)]


def fates(runs: list[RunInstance], plan_transitions: object) -> list[tuple[int, str, str | None]]:
    by_id = {r.run_id: r.scheduled_at for r in runs}
    return [(by_id[t.run_id], t.to_state.label, t.reason) for t in plan_transitions]  # type: ignore[attr-defined]


# --- grace -------------------------------------------------------------------------------------


def test_grace_boundary_exactly_grace_is_on_time_grace_plus_one_is_missed() -> None:
    assert not is_misfire(1_000, 1_000 + 500, 500)
    assert is_misfire(1_000, 1_000 + 501, 500)
    assert not is_misfire(1_000, 1_000 + DEFAULT_GRACE_MS, None)
    assert is_misfire(1_000, 1_001 + DEFAULT_GRACE_MS, None)
    runs = sched(0)
    assert plan_misfire(runs, MisfirePolicy.skip(grace=500), 500).transitions[0].reason is None
    canceled = plan_misfire(runs, MisfirePolicy.skip(grace=500), 501).canceled
    assert [t.reason for t in canceled] == ["misfire: skipped"]


def test_on_time_runs_become_ready_without_a_reason() -> None:
    runs = sched(0, 100, 200)
    plan = plan_misfire(runs, MisfirePolicy.coalesce(), 200)  # all within the default grace
    assert [(t.to_state, t.reason) for t in plan.transitions] == [(RunState.READY, None)] * 3


# --- catch-up ----------------------------------------------------------------------------------


def test_eager_catch_up_after_a_gap_runs_everything_and_does_not_coalesce() -> None:
    runs = sched(0, MIN, 2 * MIN, 3 * MIN)
    plan = plan_misfire(runs, MisfirePolicy.catch_up(), 3 * MIN + 30_000)
    assert [f[1] for f in fates(runs, plan.transitions)] == ["Ready"] * 4
    assert plan.transitions[0].reason == "misfire: caught up 3m 30s late"
    assert plan.transitions[-1].reason == "misfire: caught up 30 s late"
    assert plan.canceled == ()


def test_partial_catch_up_keeps_the_most_recent_cap() -> None:
    runs = sched(0, MIN, 2 * MIN, 3 * MIN, 4 * MIN)
    plan = plan_misfire(runs, MisfirePolicy.catch_up(cap=2, grace=0), 10 * MIN)
    assert fates(runs, plan.transitions) == [
        (0, "Canceled", "misfire: catch-up cap 2 exceeded"),
        (MIN, "Canceled", "misfire: catch-up cap 2 exceeded"),
        (2 * MIN, "Canceled", "misfire: catch-up cap 2 exceeded"),
        (3 * MIN, "Ready", "misfire: caught up 7m 0s late"),
        (4 * MIN, "Ready", "misfire: caught up 6m 0s late"),
    ]


def test_cap_counts_only_missed_runs() -> None:
    runs = sched(0, MIN, 10 * MIN)
    plan = plan_misfire(runs, MisfirePolicy.catch_up(cap=1, grace=1_000), 10 * MIN + 1_000)
    assert [f[1] for f in fates(runs, plan.transitions)] == ["Canceled", "Ready", "Ready"]


# --- coalesce and skip -------------------------------------------------------------------------


def test_coalesce_runs_the_most_recent_once() -> None:
    runs = sched(0, MIN, 2 * MIN)
    plan = plan_misfire(runs, MisfirePolicy.coalesce(grace=0), 5 * MIN)
    survivor = runs[2].run_id
    assert fates(runs, plan.transitions) == [
        (0, "Canceled", f"misfire: coalesced into run {survivor}"),
        (MIN, "Canceled", f"misfire: coalesced into run {survivor}"),
        (2 * MIN, "Ready", "misfire: coalesced 3 missed occurrences"),
    ]


def test_coalesce_into_an_on_time_run() -> None:
    runs = sched(0, MIN, 5 * MIN)
    plan = plan_misfire(runs, MisfirePolicy.coalesce(grace=1_000), 5 * MIN + 500)
    assert fates(runs, plan.transitions)[-1] == (
        5 * MIN,
        "Ready",
        "misfire: coalesced 2 missed occurrences",
    )
    assert len(plan.ready) == 1


def test_skip_drops_missed_runs_and_keeps_on_time_ones() -> None:
    runs = sched(0, MIN, 5 * MIN)
    plan = plan_misfire(runs, MisfirePolicy.skip(grace=1_000), 5 * MIN + 500)
    assert [f[1:] for f in fates(runs, plan.transitions)] == [
        ("Canceled", "misfire: skipped"),
        ("Canceled", "misfire: skipped"),
        ("Ready", None),
    ]


def test_plan_misfire_refuses_runs_that_are_not_due_scheduled() -> None:
    with pytest.raises(ValidationError, match="due Scheduled runs"):
        plan_misfire(sched(10), MisfirePolicy.skip(), 5)
    assert plan_misfire([], MisfirePolicy.skip(), 5).transitions == ()


def test_plan_commands_are_transition_commands() -> None:
    runs = sched(0)
    (cmd,) = plan_misfire(runs, MisfirePolicy.skip(grace=0), 10).commands(10)
    assert (cmd.previous_state, cmd.new_state, cmd.timestamp) == (
        RunState.SCHEDULED,
        RunState.CANCELED,
        10,
    )
    assert cmd.sequence is None
    assert cmd.reason == "misfire: skipped"


# --- the per-task tick -------------------------------------------------------------------------


def _tick_after_downtime(misfire: MisfirePolicy) -> tuple[PromotionPlan, int]:
    """:func:`_tick_three_missed` 30 days later (over 1000 missed occurrences)."""
    now = 30 * 24 * 60 * MIN + 30_000
    plan, _ = _tick_three_missed(misfire, now)
    return plan, now


def test_tick_coalesce_one_run_for_the_whole_missed_window() -> None:
    plan, now = _tick_after_downtime(MisfirePolicy.coalesce())
    ready = [t for t in plan.transitions if t.to_state is RunState.READY]
    assert len(ready) == 1
    assert ready[0].reason == "misfire: coalesced 1003+ missed occurrences"
    assert len(plan.creates) <= 4
    future = [c for c in plan.creates if c.scheduled_at > now]
    assert future
    assert plan.non_terminal == 3


def test_tick_skip_runs_the_next_one() -> None:
    plan, now = _tick_after_downtime(MisfirePolicy.skip())
    assert not [t for t in plan.transitions if t.to_state is RunState.READY]
    reasons = [t.reason for t in plan.transitions]
    assert reasons.count("misfire: skipped") == 3
    assert "misfire: skipped (1000+ occurrences)" in reasons
    future = sorted(c.scheduled_at for c in plan.creates if c.scheduled_at > now)
    assert future[0] == now + 30_000
    assert len(future) == 3


def test_tick_capped_catch_up_runs_exactly_cap() -> None:
    plan, _ = _tick_after_downtime(MisfirePolicy.catch_up(cap=2))
    ready = [t for t in plan.transitions if t.to_state is RunState.READY]
    assert len(ready) == 2


def _tick_three_missed(
    misfire: MisfirePolicy, now: int, max_occurrences: int | None = None
) -> tuple[PromotionPlan, list[RunInstance]]:
    """00:00, 00:01, 00:02 derived for ``* * * * *`` (window 3), all missed at ``now``."""
    clock = ManualClock(0)
    policy = RunPolicy.cron("* * * * *", max_occurrences=max_occurrences, window=3, misfire=misfire)
    first = derive_runs(clock, TID, policy, 0, 0)
    plan = plan_task_promotion(
        clock,
        TID,
        policy,
        first.derived,
        now=now,
        already_derived=3,
        schedule_origin=0,
        after=first.last_scheduled_at,
        non_terminal=3,
    )
    return plan, list(first.derived)


def test_tick_coalesce_survivor_counts_toward_the_window() -> None:
    plan, runs = _tick_three_missed(MisfirePolicy.coalesce(), 2 * MIN + 30_000)
    survivor = runs[2].run_id
    assert fates(runs, plan.transitions) == [
        (0, "Canceled", f"misfire: coalesced into run {survivor}"),
        (MIN, "Canceled", f"misfire: coalesced into run {survivor}"),
        (2 * MIN, "Ready", "misfire: coalesced 3 missed occurrences"),
    ]
    assert [c.scheduled_at for c in plan.creates] == [3 * MIN, 4 * MIN]
    assert plan.non_terminal == 3
    assert (plan.derived_total, plan.last_scheduled_at) == (5, 4 * MIN)


def test_tick_capped_catch_up_survivors_count_toward_the_window() -> None:
    plan, runs = _tick_three_missed(MisfirePolicy.catch_up(cap=2), 2 * MIN + 30_000)
    assert fates(runs, plan.transitions) == [
        (0, "Canceled", "misfire: catch-up cap 2 exceeded"),
        (MIN, "Ready", "misfire: caught up 1m 30s late"),
        (2 * MIN, "Ready", "misfire: caught up 30 s late"),
    ]
    assert [c.scheduled_at for c in plan.creates] == [3 * MIN]
    assert plan.non_terminal == 3


def test_tick_only_what_the_cap_keeps_overfills_the_window() -> None:
    # 00:00 .. 00:05 missed, cap 5 > window 3: the five most recent run, nothing is derived
    # ahead of them (the window refills as they finish).
    plan, _ = _tick_three_missed(MisfirePolicy.catch_up(cap=5), 5 * MIN + 30_000)
    created = [c.scheduled_at for c in plan.creates]
    assert created == [3 * MIN, 4 * MIN, 5 * MIN]
    states = [t.to_state for t in plan.transitions]
    assert states == [RunState.CANCELED] + [RunState.READY] * 5
    assert plan.non_terminal == 5


def test_tick_runs_dropped_past_the_window_are_not_exhausted() -> None:
    # max_occurrences=6: 00:03 .. 00:05 would exhaust the policy, but 00:05 is past the window.
    plan, _ = _tick_three_missed(MisfirePolicy.coalesce(), 2 * MIN + 30_000, max_occurrences=6)
    assert [c.scheduled_at for c in plan.creates] == [3 * MIN, 4 * MIN]
    assert (plan.derived_total, plan.exhausted) == (5, False)


def test_tick_for_repeat_only_promotes() -> None:
    clock = ManualClock(0)
    policy = RunPolicy.repeat(3, MIN, misfire=MisfirePolicy.skip())
    runs = derive_runs(clock, TID, policy, 0, 0).derived
    plan = plan_task_promotion(
        clock,
        TID,
        policy,
        runs[:2],
        now=MIN,
        already_derived=3,
        schedule_origin=0,
        after=None,
        non_terminal=3,
    )
    assert plan.creates == ()
    assert [t.to_state for t in plan.transitions] == [RunState.CANCELED, RunState.READY]
    assert plan.non_terminal == 2
    assert plan.exhausted


def test_tick_without_downtime_just_promotes_and_keeps_the_window() -> None:
    clock = ManualClock(0)
    policy = RunPolicy.cron("* * * * *", window=2)
    first = derive_runs(clock, TID, policy, 0, 0)
    plan = plan_task_promotion(
        clock,
        TID,
        policy,
        first.derived[:1],
        now=0,
        already_derived=2,
        schedule_origin=0,
        after=first.last_scheduled_at,
        non_terminal=2,
    )
    assert plan.creates == ()
    assert [t.reason for t in plan.transitions] == [None]
    assert [type(c).__name__ for c in plan.commands(0)] == ["RunStateTransitionCommand"]


# --- retries and wake-ups ----------------------------------------------------------------------


def test_retry_ready_at_uses_the_tasks_backoff() -> None:
    assert retry_ready_at(1_000, Backoff.none(), 1) == 1_000
    assert retry_ready_at(1_000, Backoff.fixed(250), 7) == 1_250
    exp = Backoff.exponential(100, 1_000)
    assert [retry_ready_at(0, exp, n) for n in (1, 2, 3, 4, 5)] == [100, 200, 400, 800, 1_000]


def test_jitter_is_deterministic_with_a_seeded_rng() -> None:
    b = Backoff.exponential(1_000, 60_000, jitter=0.5)
    a = [retry_ready_at(0, b, n, random.Random(7)) for n in range(1, 6)]
    c = [retry_ready_at(0, b, n, random.Random(7)) for n in range(1, 6)]
    assert a == c
    for n, t in enumerate(a, start=1):
        base = min(60_000, 1_000 * 2 ** (n - 1))
        assert base * 0.5 <= t <= base * 1.5


def test_retry_promotions_at_not_before() -> None:
    def rw(nb: int) -> RunInstance:
        return RunInstance(RunId.new(), TID, RunState.RETRY_WAIT, 0, 0, 0, 1, not_before=nb)

    runs = [rw(100), rw(200), rw(300)]
    assert len(plan_retry_promotions(runs, 99)) == 0
    cmds = plan_retry_promotions(runs, 200)
    assert [c.run_id for c in cmds] == [runs[0].run_id, runs[1].run_id]
    assert all(c.new_state is RunState.READY for c in cmds)
    # Ordered scans stop at the first one not due.
    assert len(plan_retry_promotions([rw(100), rw(500), rw(150)], 200, ordered=True)) == 1
    with pytest.raises(ValidationError):
        plan_retry_promotions(sched(0), 10)


def test_next_wakeup() -> None:
    assert next_wakeup() is None
    assert next_wakeup(500, None, None) == 500
    assert next_wakeup(500, 300, 400) == 300
    assert next_wakeup(None, None, 7) == 7


@pytest.mark.parametrize(
    ("misfire", "reason"),
    [
        (MisfirePolicy.skip(), "misfire: skipped (1 occurrence)"),
        (MisfirePolicy.catch_up(cap=1), "misfire: catch-up cap 1 exceeded (1 occurrence)"),
    ],
)
def test_a_dropped_stretch_of_one_occurrence_is_singular(
    misfire: MisfirePolicy, reason: str
) -> None:
    from actionqueue.engine.derive import FoldedOccurrences

    (stand_in, last) = sched(0, MIN)
    fold = FoldedOccurrences(stand_in.run_id, 1, True, 0, 0, dropped=True)
    plan = plan_misfire([stand_in, last], misfire, 10 * MIN, folded={stand_in.run_id: fold})
    assert plan.transitions[0].reason == reason
    many = FoldedOccurrences(stand_in.run_id, 2, True, 0, 0, dropped=True)
    again = plan_misfire([stand_in, last], misfire, 10 * MIN, folded={stand_in.run_id: many})
    assert again.transitions[0].reason == reason.replace("1 occurrence", "2 occurrences")
