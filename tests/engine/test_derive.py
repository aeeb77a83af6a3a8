"""Run derivation: the seed example, exact accounting per policy, cron windows and DST."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from actionqueue.core import (
    MisfirePolicy,
    RunPolicy,
    RunState,
    TaskConstraints,
    TaskCreateCommand,
    TaskId,
    TaskMetadata,
    TaskPayload,
    TaskSpec,
    to_millis,
)
from actionqueue.engine import (
    DerivationResult,
    derive_runs,
    plan_task_create,
    run_create_commands,
)
from actionqueue.engine.time.clock import Clock, ManualClock, SystemClock
from actionqueue.errors import DerivationError, InvalidPolicyError, ValidationError, WrongTypeError

MIN = 60_000
HOUR = 60 * MIN
T0 = 1_700_000_000_000


def test_seed_example_verbatim() -> None:
    clock: Clock = SystemClock()
    task_id = TaskId.new()
    task_spec = TaskSpec(
        task_id,
        TaskPayload.with_content_type(bytes([1, 2, 3]), "application/octet-stream"),
        RunPolicy.Once,
        TaskConstraints.default(),
        TaskMetadata.default(),
    )
    result: DerivationResult = derive_runs(clock, task_id, task_spec.run_policy, 0, clock.now())
    derived_runs = result.into_derived()
    assert len(derived_runs) == 1
    assert result.derived == tuple(derived_runs)
    assert result.derived_total == 1
    run = derived_runs[0]
    assert run.state is RunState.SCHEDULED
    assert run.task_id == task_id
    assert run.ordinal == 0


def test_once_is_one_run_at_the_origin_then_nothing() -> None:
    clock = ManualClock(T0)
    tid = TaskId.new()
    r = derive_runs(clock, tid, RunPolicy.once(), 0, T0 + 5)
    (run,) = r.derived
    assert (run.scheduled_at, run.created_at, run.ordinal) == (T0 + 5, T0, 0)
    assert run.history[0].to_state is RunState.SCHEDULED
    assert r.exhausted
    again = derive_runs(clock, tid, RunPolicy.once(), 1, T0 + 5)
    assert again.derived == ()
    assert again.derived_total == 1


def test_repeat_derives_exactly_n_at_origin_plus_k_interval() -> None:
    clock = ManualClock(T0)
    r = derive_runs(clock, TaskId.new(), RunPolicy.repeat(4, 1500), 0, T0)
    assert [x.scheduled_at - T0 for x in r.derived] == [0, 1500, 3000, 4500]
    assert [x.ordinal for x in r.derived] == [0, 1, 2, 3]
    assert len({x.run_id for x in r.derived}) == 4
    assert r.derived_total == 4


def test_repeat_already_derived_continues_where_it_stopped() -> None:
    r = derive_runs(ManualClock(0), TaskId.new(), RunPolicy.repeat(5, 10), 3, 100)
    assert [(x.ordinal, x.scheduled_at) for x in r.derived] == [(3, 130), (4, 140)]
    done = derive_runs(ManualClock(0), TaskId.new(), RunPolicy.repeat(5, 10), 5, 100)
    assert done.derived == ()
    assert done.derived_total == 5


def test_sub_second_repeat() -> None:
    r = derive_runs(ManualClock(0), TaskId.new(), RunPolicy.repeat(3, 0.25), 0, 1_000)
    assert [x.scheduled_at for x in r.derived] == [1_000, 1_250, 1_500]
    r = derive_runs(ManualClock(0), TaskId.new(), RunPolicy.repeat(3, 1), 0, 1_000)
    assert [x.scheduled_at for x in r.derived] == [1_000, 1_001, 1_002]


@pytest.mark.parametrize(
    ("policy", "already"),
    [
        (RunPolicy.once(), 2),
        (RunPolicy.repeat(3, 10), 4),
        (RunPolicy.cron("* * * * *", max_occurrences=2), 3),
    ],
)
def test_overflow_is_a_typed_error(policy: RunPolicy, already: int) -> None:
    with pytest.raises(DerivationError, match=f"already_derived={already}"):
        derive_runs(ManualClock(0), TaskId.new(), policy, already, 0, after=0)


def test_no_partial_batch_when_a_time_would_overflow() -> None:
    policy = RunPolicy.repeat(3, 2**61)
    with pytest.raises(DerivationError, match="past int64"):
        derive_runs(ManualClock(0), TaskId.new(), policy, 0, 2**62)


def test_bad_arguments() -> None:
    with pytest.raises(ValidationError, match="already_derived must be >= 0"):
        derive_runs(ManualClock(0), TaskId.new(), RunPolicy.once(), -1, 0)
    with pytest.raises(WrongTypeError, match="task_id"):
        derive_runs(ManualClock(0), "nope", RunPolicy.once(), 0, 0)  # type: ignore[arg-type]
    with pytest.raises(WrongTypeError, match="run_policy"):
        derive_runs(ManualClock(0), TaskId.new(), "once", 0, 0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="after is required"):
        derive_runs(ManualClock(0), TaskId.new(), RunPolicy.cron("* * * * *"), 2, 0)


# --- cron --------------------------------------------------------------------------------------


def test_cron_origin_counts_when_it_matches() -> None:
    origin = to_millis(datetime(2024, 1, 1, 9, 0, tzinfo=timezone.utc))
    r = derive_runs(ManualClock(origin), TaskId.new(), RunPolicy.cron("0 9 * * *"), 0, origin)
    assert r.derived[0].scheduled_at == origin
    r = derive_runs(ManualClock(origin), TaskId.new(), RunPolicy.cron("0 9 * * *"), 0, origin + 1)
    assert r.derived[0].scheduled_at == origin + 24 * HOUR


def test_cron_fills_the_window_and_refills_after_terminal_runs() -> None:
    clock = ManualClock(0)
    tid = TaskId.new()
    policy = RunPolicy.cron("*/5 * * * *", window=3)
    r = derive_runs(clock, tid, policy, 0, 0)
    assert [x.scheduled_at for x in r.derived] == [0, 5 * MIN, 10 * MIN]
    full = derive_runs(clock, tid, policy, 3, 0, after=r.last_scheduled_at, non_terminal=3)
    assert full.derived == ()
    assert full.derived_total == 3
    # Two runs finished: two more, strictly after the last one, with the next ordinals.
    more = derive_runs(clock, tid, policy, 3, 0, after=10 * MIN, non_terminal=1)
    assert [(x.ordinal, x.scheduled_at) for x in more.derived] == [(3, 15 * MIN), (4, 20 * MIN)]


def test_cron_max_occurrences_is_never_exceeded() -> None:
    clock = ManualClock(0)
    tid = TaskId.new()
    policy = RunPolicy.cron("* * * * *", max_occurrences=4, window=3)
    r = derive_runs(clock, tid, policy, 0, 0)
    assert len(r.derived) == 3
    assert not r.exhausted
    r2 = derive_runs(clock, tid, policy, 3, 0, after=r.last_scheduled_at, non_terminal=0)
    assert len(r2.derived) == 1
    assert r2.derived_total == 4
    assert r2.exhausted
    r3 = derive_runs(clock, tid, policy, 4, 0, after=r2.last_scheduled_at, non_terminal=0)
    assert r3.derived == ()
    assert r3.exhausted


def _paris(*args: int) -> int:
    return to_millis(datetime(*args, tzinfo=ZoneInfo("Europe/Paris")))  # type: ignore[misc]


def _utc(*args: int) -> int:
    return to_millis(datetime(*args, tzinfo=timezone.utc))  # type: ignore[misc]


def test_cron_dst_spring_forward_paris() -> None:
    # 2024-03-31: 02:00 CET jumps to 03:00 CEST. 02:30 does not exist that day: it runs at the
    # first valid instant after it (03:00 CEST = 01:00 UTC), once.
    policy = RunPolicy.cron("30 2 * * *", timezone="Europe/Paris", window=3)
    start = _utc(2024, 3, 30, 0, 0)
    r = derive_runs(ManualClock(0), TaskId.new(), policy, 0, start)
    assert [x.scheduled_at for x in r.derived] == [
        _utc(2024, 3, 30, 1, 30),  # 02:30 CET
        _utc(2024, 3, 31, 1, 0),  # 03:00 CEST
        _utc(2024, 4, 1, 0, 30),  # 02:30 CEST
    ]
    # Hourly runs across the jump: no duplicate, no gap in UTC (01:00 UTC follows 00:00 UTC).
    hourly = RunPolicy.cron("0 * * * *", timezone="Europe/Paris", window=3)
    r = derive_runs(ManualClock(0), TaskId.new(), hourly, 0, _utc(2024, 3, 31, 0, 30))
    assert [x.scheduled_at for x in r.derived] == [
        _utc(2024, 3, 31, 1),
        _utc(2024, 3, 31, 2),
        _utc(2024, 3, 31, 3),
    ]


def test_cron_dst_fall_back_paris_and_new_york() -> None:
    # 2024-10-27 Paris: 03:00 CEST goes back to 02:00 CET, so 02:30 happens twice.
    policy = RunPolicy.cron("30 2 * * *", timezone="Europe/Paris", window=3)
    r = derive_runs(ManualClock(0), TaskId.new(), policy, 0, _utc(2024, 10, 26, 12))
    assert [x.scheduled_at for x in r.derived] == [
        _utc(2024, 10, 27, 0, 30),  # 02:30 CEST
        _utc(2024, 10, 27, 1, 30),  # 02:30 CET
        _utc(2024, 10, 28, 1, 30),
    ]
    # 2024-11-03 New York: 01:30 happens twice (EDT then EST).
    ny = RunPolicy.cron("30 1 * * *", timezone="America/New_York", window=2)
    r = derive_runs(ManualClock(0), TaskId.new(), ny, 0, _utc(2024, 11, 3, 0))
    assert [x.scheduled_at for x in r.derived] == [
        _utc(2024, 11, 3, 5, 30),
        _utc(2024, 11, 3, 6, 30),
    ]


def test_cron_times_are_strictly_increasing_over_refills() -> None:
    policy = RunPolicy.cron("*/10 * * * * *", timezone="America/New_York", window=4)
    clock = ManualClock(0)
    tid = TaskId.new()
    after: int | None = None
    total = 0
    seen: list[int] = []
    for _ in range(5):
        r = derive_runs(clock, tid, policy, total, 0, after=after, non_terminal=0)
        seen.extend(x.scheduled_at for x in r.derived)
        assert [x.ordinal for x in r.derived] == list(range(total, total + 4))
        total, after = r.derived_total, r.last_scheduled_at
    assert seen == sorted(set(seen))
    assert seen[1] - seen[0] == 10_000


# --- cron after downtime (folding) -------------------------------------------------------------


def test_coalesce_folds_a_long_missed_stretch_into_one_run() -> None:
    policy = RunPolicy.cron("* * * * * *", window=2, misfire=MisfirePolicy.coalesce(grace=0))
    now = 7 * 24 * HOUR  # a week of per-second occurrences missed
    r = derive_runs(ManualClock(now), TaskId.new(), policy, 1, 0, after=0, now=now)
    first, second = r.derived
    assert first.scheduled_at == now - 1_000  # the last missed occurrence (1 s late > grace 0)
    fold = r.folded[first.run_id]
    assert not fold.dropped
    assert not fold.exact
    assert fold.count_text == "1000+"
    assert fold.first_at == 1_000
    assert fold.last_at == now - 1_000
    assert second.scheduled_at == now  # on time: not folded
    assert second.run_id not in r.folded


def test_skip_folds_into_one_dropped_run_that_does_not_use_the_window() -> None:
    policy = RunPolicy.cron("* * * * *", window=2, misfire=MisfirePolicy.skip(grace=0))
    now = 10 * MIN + 30_000
    r = derive_runs(ManualClock(now), TaskId.new(), policy, 1, 0, after=0, now=now)
    times = [x.scheduled_at for x in r.derived]
    assert times == [10 * MIN, 11 * MIN, 12 * MIN]
    fold = r.folded[r.derived[0].run_id]
    assert fold.dropped
    assert fold.exact
    assert fold.count == 10
    assert fold.first_at == MIN


def test_capped_catch_up_materializes_only_the_cap() -> None:
    policy = RunPolicy.cron("* * * * *", window=1, misfire=MisfirePolicy.catch_up(cap=3, grace=0))
    now = 100 * MIN + 1
    r = derive_runs(ManualClock(now), TaskId.new(), policy, 1, 0, after=0, now=now)
    times = [x.scheduled_at // MIN for x in r.derived]
    assert times == [97, 98, 99, 100]  # one dropped stand-in + the 3 most recent missed
    fold = r.folded[r.derived[0].run_id]
    assert fold.dropped
    assert fold.count == 97
    assert fold.exact
    # A stretch within the cap is not folded.
    r = derive_runs(ManualClock(now), TaskId.new(), policy, 1, 0, after=98 * MIN, now=now)
    assert [x.scheduled_at // MIN for x in r.derived] == [99, 100]
    assert not r.folded


def test_uncapped_catch_up_is_never_folded() -> None:
    policy = RunPolicy.cron("* * * * *", window=3)
    r = derive_runs(ManualClock(0), TaskId.new(), policy, 1, 0, after=0, now=1_000 * MIN)
    assert [x.scheduled_at // MIN for x in r.derived] == [1, 2, 3]
    assert not r.folded


def test_folding_respects_max_occurrences() -> None:
    policy = RunPolicy.cron(
        "* * * * *", max_occurrences=3, window=5, misfire=MisfirePolicy.skip(grace=0)
    )
    r = derive_runs(ManualClock(0), TaskId.new(), policy, 2, 0, after=MIN, now=50 * MIN + 1)
    assert len(r.derived) == 1
    assert r.derived_total == 3
    assert r.exhausted


# --- commands ----------------------------------------------------------------------------------


def test_plan_task_create_is_one_batch_with_the_task_first() -> None:
    clock = ManualClock(T0)
    spec = TaskSpec(TaskId.new(), b"x", RunPolicy.repeat(3, 1000))
    batch, result = plan_task_create(clock, spec, schedule_origin=T0 + 10)
    assert isinstance(batch[0], TaskCreateCommand)
    assert batch[0].schedule_origin == T0 + 10
    assert batch[0].timestamp == T0
    assert [c.KIND for c in batch[1:]] == ["RunCreate"] * 3
    assert all(c.sequence is None for c in batch)
    assert [c.ordinal for c in batch[1:]] == [0, 1, 2]  # type: ignore[attr-defined]
    assert batch[1:] == run_create_commands(result, timestamp=T0)


# --- the end of the cron range -------------------------------------------------------------------

END_9999 = 253_402_300_800_000  # 10000-01-01 00:00 UTC: the first ms past the datetime range


def test_cron_occurrences_end_with_year_9999_without_an_error() -> None:
    """Past the range no occurrence exists: derivation stops (exhausted) instead of raising a
    bare ValidationError / OverflowError from the date conversion."""
    task = TaskId.new()
    minutely = RunPolicy.cron("* * * * *", window=3)
    assert minutely.next_after(END_9999 - 30_000) is None
    assert list(minutely.iter_after(END_9999 + 5)) == []
    assert list(minutely.iter_after(2**63 - 1)) == []
    # Kiritimati is UTC+14: its local year 9999 ends ten hours before UTC's.
    kiritimati = RunPolicy.cron("0 12 31 12 *", timezone="Pacific/Kiritimati")
    assert kiritimati.next_after(END_9999 - 12 * HOUR) is None
    r = derive_runs(ManualClock(0), task, minutely, 3, 0, after=END_9999 - 60_000, non_terminal=0)
    assert (r.derived, r.exhausted) == ((), True)
    seconds = RunPolicy.cron("* * * * * *", window=100)
    r = derive_runs(ManualClock(0), task, seconds, 0, END_9999 - 5_000)
    assert [x.scheduled_at - END_9999 for x in r.derived] == [
        -5_000,
        -4_000,
        -3_000,
        -2_000,
        -1_000,
    ]
    assert r.exhausted


@pytest.mark.parametrize(
    ("policy", "origin", "shown"),
    [
        (RunPolicy.cron("* * * * *"), END_9999 - 30_000, "9999-12-31T23:59:30.000+00:00"),
        (RunPolicy.cron("0 0 1 1 *"), END_9999 - 365 * 24 * HOUR + 1, "9999-01-01T00:00:00.001"),
        (
            RunPolicy.cron("0 12 31 12 *", timezone="Pacific/Kiritimati"),
            END_9999 - 12 * HOUR,  # 10000-01-01 02:00 in Kiritimati: past datetime's range
            "9999-12-31T12:00:00.000+00:00",
        ),
        (RunPolicy.cron("* * * * *"), END_9999, f"{END_9999} ms (after year 9999)"),
        (RunPolicy.cron("* * * * *"), 2**63 - 1, f"{2**63 - 1} ms (after year 9999)"),
    ],
)
def test_a_cron_task_with_no_occurrence_left_is_refused_at_creation(
    policy: RunPolicy, origin: int, shown: str
) -> None:
    """Such a task was created with zero runs and never ran (or the date conversion raised a
    bare OverflowError / an unhelpful 'ms is outside the range of datetime')."""
    spec = TaskSpec(TaskId.new(), b"", policy)
    with pytest.raises(InvalidPolicyError, match="has no occurrence at or after") as e:
        plan_task_create(ManualClock(0), spec, schedule_origin=origin)
    assert shown in str(e.value)
    assert "end of year 9999" in str(e.value)
    assert str(spec.task_id) in str(e.value)


def test_a_repeat_past_the_range_is_refused_and_one_inside_it_is_not() -> None:
    """Repeat run times are plain int64 milliseconds: a first run past that range is refused
    (ValidationError), one whose last run would overflow too (DerivationError, a
    ValidationError), and one after year 9999 but inside int64 has all its runs."""
    spec = TaskSpec(TaskId.new(), b"", RunPolicy.repeat(2, 1_000))
    with pytest.raises(ValidationError, match="schedule_origin must be <= 9223372036854775807"):
        plan_task_create(ManualClock(0), spec, schedule_origin=2**63)
    with pytest.raises(DerivationError, match="past int64"):
        plan_task_create(ManualClock(0), spec, schedule_origin=2**63 - 500)
    _, r = plan_task_create(ManualClock(0), spec, schedule_origin=END_9999 * 2)
    assert [x.scheduled_at for x in r.derived] == [END_9999 * 2, END_9999 * 2 + 1_000]
