"""Facade units (numbers are seconds) and the control-flow helpers."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import actionqueue as aq
from actionqueue.errors import ValidationError, WrongTypeError
from actionqueue.runtime.units import instant_to_ms, opt_seconds_to_ms, seconds_to_ms


def test_numbers_are_seconds_at_the_facade() -> None:
    assert seconds_to_ms(30) == 30_000
    assert seconds_to_ms(0.25) == 250
    assert seconds_to_ms(timedelta(milliseconds=1500)) == 1500
    assert opt_seconds_to_ms(None) is None


@pytest.mark.parametrize("bad", [True, "3", [1]])
def test_durations_refuse_other_types(bad: object) -> None:
    with pytest.raises(WrongTypeError, match="seconds"):
        seconds_to_ms(bad)  # type: ignore[arg-type]


def test_duration_refuses_datetime_and_nan() -> None:
    with pytest.raises(ValidationError, match="datetime"):
        seconds_to_ms(datetime.now(timezone.utc))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="finite"):
        seconds_to_ms(float("nan"))


def test_instants() -> None:
    dt = datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert instant_to_ms(dt) == 1_704_067_200_000
    assert instant_to_ms(1_704_067_200) == 1_704_067_200_000
    assert instant_to_ms(1_704_067_200.5) == 1_704_067_200_500
    with pytest.raises(ValidationError, match="timezone-aware"):
        instant_to_ms(datetime(2024, 1, 1))


@pytest.mark.parametrize("seconds", [10**400, 2**63, -(10**400)], ids=["huge", "2**63", "-huge"])
def test_instants_beyond_64_bit_milliseconds_are_validation_errors(
    seconds: int, tmp_path: Path
) -> None:
    """BUG: ``submit(at=10**400)`` raised a bare OverflowError (``float()`` of the int) instead
    of the ValidationError naming ``at`` that ``at=1e300`` gets."""
    with pytest.raises(ValidationError, match=r"at is out of range for int64 milliseconds"):
        instant_to_ms(seconds)
    with aq.ActionQueue.open(tmp_path / "q") as q:
        q.register("h", lambda ctx, p: p)
        with pytest.raises(ValidationError, match=r"at is out of range"):
            q.submit("h", 1, at=seconds)
        assert q.list_runs() == []
    # In range, ints stay exact (float() would round 2**53 + 1 seconds).
    assert instant_to_ms(2**53 + 1) == (2**53 + 1) * 1000


def test_backoff_helpers_take_seconds() -> None:
    b = aq.exponential(1, 60, jitter=0.1)
    assert (b.base_ms, b.cap_ms) == (1_000, 60_000)
    assert aq.fixed(2).delay_ms == 2_000
    assert aq.fixed(timedelta(milliseconds=5)).delay_ms == 5
    with pytest.raises(ValidationError, match=r"backoff base must be > 0 seconds, got 0"):
        aq.exponential(0, 1)
    with pytest.raises(ValidationError, match="backoff delay must be >= 0 seconds"):
        aq.fixed(-1)


def test_control_exceptions_pickle() -> None:
    r = pickle.loads(pickle.dumps(aq.Retry(delay=1.5, reason="later")))
    assert (r.delay_ms, r.reason) == (1500, "later")
    f = pickle.loads(pickle.dumps(aq.Fail("nope")))
    assert f.reason == "nope"
    c = pickle.loads(pickle.dumps(aq.Cancelled("timeout")))
    assert c.reason == "timeout"
    assert isinstance(aq.Suspend(), aq.runtime.api.HandlerSignal)


def test_retry_rejects_negative_delay() -> None:
    with pytest.raises(ValidationError, match="Retry delay"):
        aq.Retry(delay=-1)


def test_durations_beyond_64_bit_milliseconds_are_refused_up_front(tmp_path: Path) -> None:
    """BUG: ``open(lease=1e300)`` was accepted and the first dispatch failed with a raw
    OverflowError (surfacing from ``q.result()``)."""
    for bad in (1e300, 2**70, -1e300):
        with pytest.raises(aq.errors.ValidationError, match="lease is out of range"):
            aq.ActionQueue.open(tmp_path / "q", lease=bad)
    assert not (tmp_path / "q").exists()
    assert seconds_to_ms(2**53, "x") == 2**53 * 1000  # large but in range: kept exact
