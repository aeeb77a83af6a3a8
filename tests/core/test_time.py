from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actionqueue.core.time import from_millis, now_ms, to_duration_ms, to_millis, to_opt_duration_ms
from actionqueue.errors import ValidationError, WrongTypeError

UTC = timezone.utc


def test_now_ms_is_wall_clock_ms() -> None:
    before = time.time_ns() // 1_000_000
    n = now_ms()
    after = time.time_ns() // 1_000_000
    assert type(n) is int
    assert before <= n <= after


def test_to_millis_int_is_ms() -> None:
    assert to_millis(0) == 0
    assert to_millis(1_700_000_000_123) == 1_700_000_000_123
    assert to_millis(-5) == -5


def test_to_millis_float_is_seconds() -> None:
    assert to_millis(1.5) == 1500
    assert to_millis(1_700_000_000.1234) == 1_700_000_000_123


def test_to_millis_datetime() -> None:
    assert to_millis(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert to_millis(datetime(2024, 1, 1, tzinfo=UTC)) == 1_704_067_200_000
    paris = datetime(2024, 1, 1, 1, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert to_millis(paris) == 1_704_067_200_000
    # sub-millisecond parts round to the nearest ms
    assert to_millis(datetime(1970, 1, 1, 0, 0, 0, 1499, tzinfo=UTC)) == 1
    assert to_millis(datetime(1970, 1, 1, 0, 0, 0, 1500, tzinfo=UTC)) == 2


def test_to_millis_naive_datetime_rejected() -> None:
    naive = datetime(2024, 1, 1)
    with pytest.raises(ValidationError, match=r"scheduled_at must be a timezone-aware datetime"):
        to_millis(naive, "scheduled_at")
    with pytest.raises(ValidationError, match=r"got naive datetime\.datetime\(2024, 1, 1"):
        to_millis(naive)


@pytest.mark.parametrize("value", ["2024-01-01", None, True, [1], b"1"])
def test_to_millis_wrong_type(value: object) -> None:
    with pytest.raises(
        WrongTypeError, match=r"origin must be int milliseconds, float seconds"
    ) as e:
        to_millis(value, "origin")  # type: ignore[arg-type]
    assert type(value).__name__ in str(e.value)


def test_to_millis_timedelta_is_not_a_point() -> None:
    with pytest.raises(ValidationError, match=r"at must be a point in time .* got a timedelta"):
        to_millis(timedelta(seconds=1), "at")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_rejected(value: float) -> None:
    with pytest.raises(ValidationError, match=r"at must be a finite number of seconds, got"):
        to_millis(value, "at")
    with pytest.raises(ValidationError, match=r"timeout must be a finite number of seconds"):
        to_duration_ms(value, "timeout")


def test_out_of_range_rejected() -> None:
    with pytest.raises(ValidationError, match=r"at is out of range for int64 milliseconds"):
        to_millis(2**63, "at")
    with pytest.raises(ValidationError, match=r"d is out of range for int64 milliseconds"):
        to_duration_ms(1e30, "d")


def test_to_duration_ms() -> None:
    assert to_duration_ms(40) == 40
    assert to_duration_ms(0.25) == 250
    assert to_duration_ms(timedelta(seconds=1.5)) == 1500
    assert to_duration_ms(timedelta(microseconds=400)) == 0
    assert to_duration_ms(timedelta(microseconds=500)) == 1
    assert to_duration_ms(timedelta(days=1)) == 86_400_000
    assert to_duration_ms(-3) == -3  # sign kept; callers check bounds
    assert to_opt_duration_ms(None) is None
    assert to_opt_duration_ms(2.0) == 2000


def test_to_duration_wrong_types() -> None:
    with pytest.raises(WrongTypeError, match=r"interval must be int milliseconds, float"):
        to_duration_ms("5s", "interval")  # type: ignore[arg-type]
    with pytest.raises(WrongTypeError, match=r"interval must be .* got bool True"):
        to_duration_ms(True, "interval")
    with pytest.raises(ValidationError, match=r"interval must be a duration .* got a datetime"):
        to_duration_ms(datetime(2024, 1, 1, tzinfo=UTC), "interval")  # type: ignore[arg-type]


def test_from_millis() -> None:
    d = from_millis(1_704_067_200_123)
    assert d == datetime(2024, 1, 1, 0, 0, 0, 123_000, tzinfo=UTC)
    assert d.tzinfo is UTC
    with pytest.raises(WrongTypeError, match="ms must be an int, got float"):
        from_millis(1.0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="ms is outside the range of datetime"):
        from_millis(2**62)


@given(st.integers(min_value=-(10**13), max_value=10**14))
def test_millis_roundtrip(ms: int) -> None:
    assert to_millis(from_millis(ms)) == ms


@given(st.timedeltas(min_value=timedelta(days=-(10**5)), max_value=timedelta(days=10**5)))
def test_duration_is_nearest_ms(td: timedelta) -> None:
    ms = to_duration_ms(td)
    assert abs(td - timedelta(milliseconds=ms)) <= timedelta(microseconds=500)
