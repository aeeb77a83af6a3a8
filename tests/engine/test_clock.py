"""Clocks: integer milliseconds, deterministic manual time, wall time that moves."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from actionqueue.engine.time.clock import Clock, ManualClock, SystemClock
from actionqueue.errors import ValidationError, WrongTypeError


def test_system_clock_reads_wall_time_in_millis() -> None:
    before = time.time_ns() // 1_000_000
    now = SystemClock().now()
    after = time.time_ns() // 1_000_000
    assert isinstance(now, int)
    assert before <= now <= after


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(ManualClock(), Clock)


def test_manual_clock_set_and_advance() -> None:
    clock = ManualClock(1_000)
    assert clock.now() == 1_000
    assert clock.advance(500) == 1_500
    assert clock.advance(timedelta(seconds=2)) == 3_500
    assert clock.set(10) == 10  # backwards is allowed: lease tests move time back
    assert clock.now() == 10


def test_manual_clock_accepts_aware_datetimes() -> None:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    clock = ManualClock(start)
    assert clock.now() == int(start.timestamp() * 1000)
    with pytest.raises(ValidationError, match="timezone-aware"):
        ManualClock(datetime(2026, 1, 1))


@pytest.mark.parametrize("bad", [1.5, "10", None, True])
def test_manual_clock_rejects_non_millisecond_inputs(bad: object) -> None:
    with pytest.raises(WrongTypeError):
        ManualClock().advance(bad)  # type: ignore[arg-type]


def test_manual_clock_refuses_negative_advance() -> None:
    with pytest.raises(ValidationError, match="non-negative"):
        ManualClock(5).advance(-1)


def test_listeners_hear_every_change_until_unsubscribed() -> None:
    clock = ManualClock()
    seen: list[int] = []
    unsubscribe = clock.subscribe(seen.append)
    clock.advance(5)
    clock.set(100)
    unsubscribe()
    clock.advance(1)
    assert seen == [5, 100]


def test_manual_clock_positions_are_times_a_record_can_hold() -> None:
    """Out-of-range positions were accepted and failed later, where the queue used them."""
    for bad in (-1, 2**63, -(2**70)):
        with pytest.raises(ValidationError, match="2\\*\\*63 - 1"):
            ManualClock(bad)
        with pytest.raises(ValidationError, match="2\\*\\*63 - 1"):
            ManualClock(0).set(bad)
    c = ManualClock(2**63 - 10)
    with pytest.raises(ValidationError, match="advanced clock"):
        c.advance(11)
    assert c.now() == 2**63 - 10  # unchanged
    assert c.advance(9) == 2**63 - 1


def test_manual_clock_rounds_datetimes_and_timedeltas_like_the_rest_of_the_api() -> None:
    """ManualClock truncated sub-millisecond datetimes (through a float timestamp) and
    timedeltas, while every other time the API takes rounds to the nearest millisecond:
    ``ManualClock(dt).now()`` could differ from ``to_millis(dt)`` by one."""
    from datetime import datetime, timedelta, timezone

    from actionqueue.core.time import to_millis

    dt = datetime(2024, 1, 1, 0, 0, 0, 999_600, tzinfo=timezone.utc)
    clock = ManualClock(dt)
    assert clock.now() == to_millis(dt) == 1_704_067_201_000
    assert clock.advance(timedelta(microseconds=600)) == to_millis(dt) + 1
    late = datetime(2286, 11, 20, 17, 46, 39, 999_501, tzinfo=timezone.utc)
    assert clock.set(late) == to_millis(late)  # exact, where a float timestamp is not
