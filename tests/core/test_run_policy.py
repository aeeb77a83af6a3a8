from __future__ import annotations

import copy
import itertools
import pickle
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from core_strategies import policies
from hypothesis import given

from actionqueue.core.task.run_policy import (
    CronPolicy,
    MisfireKind,
    MisfirePolicy,
    OncePolicy,
    PolicyKind,
    RepeatPolicy,
    RunPolicy,
)
from actionqueue.core.time import to_millis
from actionqueue.errors import InvalidPolicyError, ValidationError, WrongTypeError

UTC = timezone.utc


# --- construction ---------------------------------------------------------------------------


def test_once() -> None:
    p = RunPolicy.once()
    assert isinstance(p, OncePolicy)
    assert isinstance(p, RunPolicy)
    assert p.kind is PolicyKind.ONCE
    assert p.total_runs() == 1
    assert p.misfire == MisfirePolicy.catch_up()
    assert RunPolicy.Once == p
    assert RunPolicy.Once.to_wire() == ((0,), (0, None, None))
    assert RunPolicy.once(misfire=MisfirePolicy.skip()).misfire.kind is MisfireKind.SKIP


def test_repeat() -> None:
    p = RunPolicy.repeat(3, 250)
    assert isinstance(p, RepeatPolicy)
    assert (p.count, p.interval_ms, p.total_runs()) == (3, 250, 3)
    assert RunPolicy.repeat(2, 0.5).interval_ms == 500
    assert RunPolicy.repeat(2, timedelta(minutes=1)).interval_ms == 60_000
    assert RunPolicy.repeat(1, 1).interval_ms == 1  # sub-second is fine
    assert p.to_wire() == ((1, 3, 250), (0, None, None))


def test_cron() -> None:
    p = RunPolicy.cron("*/5  * * * *", timezone="Europe/Paris", max_occurrences=10)
    assert isinstance(p, CronPolicy)
    assert p.expression == "*/5 * * * *"  # whitespace normalised
    assert p.timezone == "Europe/Paris"
    assert p.window == 5
    assert p.total_runs() == 10
    assert not p.has_seconds
    assert p.to_wire() == ((2, "*/5 * * * *", "Europe/Paris", 10, 5), (0, None, None))
    assert RunPolicy.cron("*/10 * * * * *").has_seconds
    assert RunPolicy.cron("@hourly").total_runs() is None
    assert RunPolicy.cron("0 9 * * mon-fri", ZoneInfo("America/New_York")).timezone == (
        "America/New_York"
    )
    assert RunPolicy.cron("0 0 * * *", UTC).timezone == "UTC"
    assert RunPolicy.cron("0 0 * * *", window=1).window == 1


def test_misfire_factories() -> None:
    assert MisfirePolicy.catch_up() == MisfirePolicy()
    m = MisfirePolicy.catch_up(cap=3, grace=timedelta(seconds=2))
    assert (m.kind, m.cap, m.grace_ms) == (MisfireKind.CATCH_UP, 3, 2000)
    assert MisfirePolicy.coalesce(grace=1.5).grace_ms == 1500
    assert MisfirePolicy.skip(grace=0).grace_ms == 0
    assert MisfirePolicy.skip().to_wire() == (2, None, None)
    assert MisfirePolicy.coalesce(7).to_wire() == (1, None, 7)
    assert MisfirePolicy("skip").kind is MisfireKind.SKIP  # type: ignore[arg-type]
    assert MisfirePolicy(1).kind is MisfireKind.COALESCE  # type: ignore[arg-type]


def test_policies_are_frozen_and_hashable() -> None:
    p = RunPolicy.repeat(2, 10)
    with pytest.raises(AttributeError):
        p.count = 5  # type: ignore[misc]
    assert hash(p) == hash(RunPolicy.repeat(2, 10))
    assert len({RunPolicy.once(), RunPolicy.Once, p, RunPolicy.repeat(2, 10)}) == 2
    assert RunPolicy.repeat(2, 10) != RunPolicy.repeat(2, 11)


def test_abstract_run_policy_cannot_be_built() -> None:
    with pytest.raises(WrongTypeError, match="RunPolicy is abstract"):
        RunPolicy()


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "match"),
    [(0, r"repeat count must be >= 1, got 0"), (-2, r"repeat count must be >= 1, got -2")],
)
def test_repeat_bad_count(count: int, match: str) -> None:
    with pytest.raises(InvalidPolicyError, match=match):
        RunPolicy.repeat(count, 1000)


def test_repeat_count_too_large() -> None:
    with pytest.raises(
        InvalidPolicyError, match=r"repeat count must be <= 4294967295, got 4294967296"
    ):
        RunPolicy.repeat(2**32, 1)


@pytest.mark.parametrize(
    ("interval", "shown"),
    [
        (0, "got 0 ms"),
        (-5, "got -5 ms"),
        (0.0, "got 0 ms"),
        (-1.0, "got -1000 ms"),
        (0.0001, "got 0 ms"),
        (timedelta(0), "got 0 ms"),
    ],
)
def test_repeat_bad_interval(interval: Any, shown: str) -> None:
    with pytest.raises(InvalidPolicyError, match=rf"repeat interval must be > 0 ms, {shown}"):
        RunPolicy.repeat(3, interval)


def test_repeat_wrong_types() -> None:
    with pytest.raises(WrongTypeError, match=r"repeat count must be an int, got str '3'"):
        RunPolicy.repeat("3", 10)  # type: ignore[arg-type]
    with pytest.raises(WrongTypeError, match=r"repeat count must be an int, got bool True"):
        RunPolicy.repeat(True, 10)
    with pytest.raises(WrongTypeError, match=r"interval must be int milliseconds, .* got str"):
        RunPolicy.repeat(3, "10s")  # type: ignore[arg-type]
    with pytest.raises(WrongTypeError, match=r"interval must be .* got NoneType None"):
        RunPolicy.repeat(3, None)  # type: ignore[arg-type]
    with pytest.raises(WrongTypeError, match=r"interval_ms must be an int of milliseconds"):
        RepeatPolicy(3, 1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidPolicyError, match=r"interval must be a finite number of seconds"):
        RunPolicy.repeat(3, float("nan"))


def test_repeat_overflow() -> None:
    with pytest.raises(InvalidPolicyError, match="overflows int64 milliseconds"):
        RunPolicy.repeat(2**31, 2**62)


@pytest.mark.parametrize(
    "expr",
    [
        "bad",
        "61 * * * *",
        "* * * *",
        "* * * * * * *",
        "0 0 1 1 * 0 2030",
        "*/0 * * * *",
        "@reboot",
        "@hourly extra",
        "1-3/x * * * *",
        "R * * * *",
    ],
)
def test_cron_invalid_expression(expr: str) -> None:
    with pytest.raises(InvalidPolicyError, match="cron expression") as e:
        RunPolicy.cron(expr)
    assert repr(expr) in str(e.value)
    assert isinstance(e.value, ValueError)


def test_cron_field_count_message() -> None:
    with pytest.raises(InvalidPolicyError, match=r"expected 5 fields .* got 4"):
        RunPolicy.cron("* * * *")


def test_cron_never_matching_rejected() -> None:
    with pytest.raises(InvalidPolicyError, match=r"'0 0 30 2 \*' never matches any date"):
        RunPolicy.cron("0 0 30 2 *")


def test_cron_empty_and_wrong_type() -> None:
    with pytest.raises(InvalidPolicyError, match=r"cron expression must not be empty, got '  '"):
        RunPolicy.cron("  ")
    with pytest.raises(WrongTypeError, match=r"cron expression must be a str .* got int 5"):
        RunPolicy.cron(5)  # type: ignore[arg-type]


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "utc+1", "../etc/passwd", "Europe/"])
def test_cron_unknown_timezone(tz: str) -> None:
    with pytest.raises(InvalidPolicyError, match="unknown timezone") as e:
        RunPolicy.cron("* * * * *", timezone=tz)
    assert repr(tz) in str(e.value)


def test_cron_timezone_type_and_empty() -> None:
    with pytest.raises(InvalidPolicyError, match="timezone must be a non-empty IANA name"):
        RunPolicy.cron("* * * * *", timezone="")
    with pytest.raises(WrongTypeError, match="timezone must be an IANA zone name"):
        RunPolicy.cron("* * * * *", timezone=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_occurrences": 0}, r"max_occurrences must be >= 1, got 0"),
        ({"max_occurrences": -1}, r"max_occurrences must be >= 1, got -1"),
        ({"window": 0}, r"cron window must be >= 1, got 0"),
        ({"window": -3}, r"cron window must be >= 1, got -3"),
    ],
)
def test_cron_bad_bounds(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(InvalidPolicyError, match=match):
        RunPolicy.cron("* * * * *", **kwargs)  # type: ignore[arg-type]


def test_misfire_validation() -> None:
    with pytest.raises(InvalidPolicyError, match=r"misfire cap must be >= 1, got 0"):
        MisfirePolicy.catch_up(cap=0)
    with pytest.raises(InvalidPolicyError, match=r"misfire cap applies only to catch_up"):
        MisfirePolicy(MisfireKind.SKIP, cap=2)
    with pytest.raises(InvalidPolicyError, match=r"grace must be >= 0, got -1"):
        MisfirePolicy.skip(grace=-1)
    with pytest.raises(InvalidPolicyError, match=r"grace must be >= 0, got -500"):
        MisfirePolicy.coalesce(grace=-0.5)
    with pytest.raises(InvalidPolicyError, match=r"misfire kind must be 0, 1 or 2, got 7"):
        MisfirePolicy(7)  # type: ignore[arg-type]
    with pytest.raises(InvalidPolicyError, match=r"misfire kind must be one of .* got 'later'"):
        MisfirePolicy("later")  # type: ignore[arg-type]
    with pytest.raises(WrongTypeError, match=r"misfire must be a MisfirePolicy .* got str"):
        RunPolicy.once(misfire="skip")  # type: ignore[arg-type]
    with pytest.raises(WrongTypeError, match=r"grace must be int milliseconds"):
        MisfirePolicy.skip(grace="1s")  # type: ignore[arg-type]


# --- wire -----------------------------------------------------------------------------------


def test_from_wire_rejects_garbage() -> None:
    with pytest.raises(ValidationError, match="run policy wire value must have 2 items"):
        RunPolicy.from_wire(((0,),))
    with pytest.raises(InvalidPolicyError, match="run policy kind tag must be 0, 1 or 2, got 9"):
        RunPolicy.from_wire(((9,), (0, None, None)))
    with pytest.raises(WrongTypeError, match="run policy kind wire value"):
        RunPolicy.from_wire(((), (0, None, None)))
    with pytest.raises(ValidationError, match="repeat policy wire value must have 3 items"):
        RunPolicy.from_wire(((1, 3), (0, None, None)))
    with pytest.raises(InvalidPolicyError, match="repeat count must be >= 1, got 0"):
        RunPolicy.from_wire(((1, 0, 5), (0, None, None)))
    with pytest.raises(WrongTypeError, match="misfire wire value"):
        RunPolicy.from_wire(((0,), None))
    with pytest.raises(InvalidPolicyError, match="run policy kind tag"):
        RunPolicy.from_wire(((True,), (0, None, None)))


@given(policies)
def test_wire_roundtrip(p: RunPolicy) -> None:
    w = p.to_wire()
    q = RunPolicy.from_wire(w)
    assert q == p
    assert type(q) is type(p)
    assert q.to_wire() == w
    # lists (as Rust hands them back) work too
    assert RunPolicy.from_wire([list(w[0]), list(w[1])]) == p
    assert pickle.loads(pickle.dumps(p)) == p
    assert copy.deepcopy(p) == p


# --- cron evaluation ------------------------------------------------------------------------


def _ms(*args: int, tz: Any = UTC) -> int:
    return to_millis(datetime(*args, tzinfo=tz))


def test_cron_next_after_is_strict() -> None:
    p = RunPolicy.cron("0 12 * * *")
    noon = _ms(2024, 1, 1, 12, 0)
    assert p.next_after(noon - 1) == noon
    assert p.next_after(noon) == _ms(2024, 1, 2, 12, 0)


def test_cron_seconds_field_is_first() -> None:
    p = RunPolicy.cron("*/15 * * * * *")
    start = _ms(2024, 1, 1)
    assert list(itertools.islice(p.iter_after(start), 3)) == [
        start + 15_000,
        start + 30_000,
        start + 45_000,
    ]
    # sub-second start: the next whole matching second
    assert RunPolicy.cron("* * * * * *").next_after(start + 500) == start + 1000


def test_cron_timezone_and_dst() -> None:
    ny = ZoneInfo("America/New_York")
    p = RunPolicy.cron("30 9 * * *", "America/New_York")
    # Across the spring-forward change (2024-03-10) the wall time stays 09:30 local.
    got = list(itertools.islice(p.iter_after(_ms(2024, 3, 9, tz=ny)), 3))
    assert got == [
        _ms(2024, 3, 9, 9, 30, tz=ny),
        _ms(2024, 3, 10, 9, 30, tz=ny),
        _ms(2024, 3, 11, 9, 30, tz=ny),
    ]
    assert got[1] - got[0] == 23 * 3_600_000  # the short day
    # A wall time skipped by DST still yields one, strictly increasing, occurrence per day.
    q = RunPolicy.cron("30 2 * * *", "America/New_York")
    skipped = list(itertools.islice(q.iter_after(_ms(2024, 3, 9, tz=ny)), 4))
    assert skipped == sorted(set(skipped))
    assert len(skipped) == 4


def test_cron_iter_is_strictly_increasing_across_fall_back() -> None:
    ny = ZoneInfo("America/New_York")
    q = RunPolicy.cron("*/30 * * * *", "America/New_York")
    got = list(itertools.islice(q.iter_after(_ms(2024, 11, 3, 0, 0, tz=ny)), 8))
    assert all(b > a for a, b in itertools.pairwise(got))
    assert all(b - a == 1_800_000 for a, b in itertools.pairwise(got))


def test_cron_aliases() -> None:
    assert RunPolicy.cron("@hourly").next_after(_ms(2024, 1, 1, 0, 10)) == _ms(2024, 1, 1, 1, 0)


def test_iana_zones_resolve_without_a_system_zone_database() -> None:
    """Slim container images have no /usr/share/zoneinfo: the zones come from the tzdata
    package then (a dependency on every platform), so a log naming Europe/Paris reopens
    there. ``PYTHONTZPATH=""`` hides the system database from zoneinfo."""
    import os
    import subprocess
    import sys

    code = (
        "from actionqueue.core import RunPolicy; "
        "p = RunPolicy.cron('0 9 * * *', timezone='Europe/Paris'); "
        "print(p.tzinfo.utcoffset(__import__('datetime').datetime(2024, 7, 1)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, PYTHONTZPATH=""),
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2:00:00"


# --- a policy read back where it cannot be evaluated ------------------------------------------

_STORED_MARS = ((2, "0 9 * * *", "Mars/Olympus_Mons", None, 5), (1, None, 2_000))


def test_a_stored_cron_policy_with_a_zone_unknown_here_is_kept_as_written() -> None:
    """A log written where a zone resolves may be reopened where it does not (older tzdata).
    ``from_wire`` raised InvalidPolicyError then, so every read of the task — and every tick
    that met it — failed. The policy is kept exactly as written; ``unresolved`` says why its
    occurrences cannot be computed here, and computing them raises."""
    p = RunPolicy.from_wire(_STORED_MARS)
    assert isinstance(p, CronPolicy)
    assert (p.expression, p.timezone, p.max_occurrences, p.window) == (
        "0 9 * * *",
        "Mars/Olympus_Mons",
        None,
        5,
    )
    assert p.misfire == MisfirePolicy.coalesce(grace=2_000)
    assert p.to_wire() == _STORED_MARS  # unchanged: a machine with the zone can still run it
    assert RunPolicy.from_wire(p.to_wire()) == p
    assert pickle.loads(pickle.dumps(p)) == p  # process executors ship specs this way
    assert p.unresolved is not None
    assert p.unresolved.startswith("unknown timezone 'Mars/Olympus_Mons'")
    assert "tzdata" in p.unresolved
    for compute in (lambda: p.next_after(0), lambda: list(p.iter_after(0)), lambda: p.tzinfo):
        with pytest.raises(InvalidPolicyError, match="Mars/Olympus_Mons"):
            compute()
    # Built here, the same policy is still refused, and policies that resolve say so.
    with pytest.raises(InvalidPolicyError, match="unknown timezone 'Mars/Olympus_Mons'"):
        RunPolicy.cron("0 9 * * *", timezone="Mars/Olympus_Mons")
    assert RunPolicy.cron("0 9 * * *", timezone="Europe/Paris").unresolved is None
    assert RunPolicy.repeat(2, 10).unresolved is None
    assert RunPolicy.once().unresolved is None


def test_a_stored_cron_policy_this_croniter_refuses_is_kept_as_written() -> None:
    """The same holds for an expression another croniter version accepted and this one does
    not (here a trailing year field, which this one reads as a weekday)."""
    w = ((2, "0 9 * * * 2030", "UTC", 3, 2), (0, None, None))
    p = RunPolicy.from_wire(w)
    assert p.to_wire() == w
    assert p.unresolved is not None
    assert "invalid cron expression" in p.unresolved
    with pytest.raises(InvalidPolicyError, match="cannot compute the occurrences"):
        p.next_after(0)


@pytest.mark.parametrize(
    ("kind", "exc", "match"),
    [
        ((2, "", "Mars/X", None, 5), InvalidPolicyError, "cron expression must not be empty"),
        ((2, 5, "Mars/X", None, 5), WrongTypeError, "cron expression must be a str"),
        ((2, "* * * * *", "", None, 5), InvalidPolicyError, "timezone must be a non-empty"),
        ((2, "* * * * *", 3, None, 5), WrongTypeError, "timezone must be an IANA zone name"),
        ((2, "* * * * *", "Mars/X", 0, 5), InvalidPolicyError, "max_occurrences must be >= 1"),
        ((2, "* * * * *", "Mars/X", None, 0), InvalidPolicyError, "cron window must be >= 1"),
    ],
)
def test_a_stored_cron_policy_is_still_checked_where_the_machine_does_not_matter(
    kind: tuple[Any, ...], exc: type[Exception], match: str
) -> None:
    with pytest.raises(exc, match=match):
        RunPolicy.from_wire((kind, (0, None, None)))


def test_a_zone_missing_here_is_unresolved_only_while_it_is_missing(
    hide_zones: Any,
) -> None:
    p = RunPolicy.cron("0 9 * * *", timezone="Europe/Paris")
    hide_zones("Europe/Paris")
    back = RunPolicy.from_wire(p.to_wire())
    assert back == p
    assert back.to_wire() == p.to_wire()
    assert back.unresolved is not None
    assert "Europe/Paris" in back.unresolved
    with pytest.raises(InvalidPolicyError, match="unknown timezone 'Europe/Paris'"):
        RunPolicy.cron("0 9 * * *", timezone="Europe/Paris")
    hide_zones()
    assert back.unresolved is None
    assert back.next_after(_ms(2024, 7, 1)) == _ms(2024, 7, 1, 7)  # 09:00 CEST
