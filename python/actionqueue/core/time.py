"""Time conventions (SPEC §3): every persisted time is an ``int`` of milliseconds.

Points in time are **milliseconds since the Unix epoch, UTC**; intervals (durations) are
**milliseconds**. Public APIs that take a time or an interval from a user accept, uniformly:

=====================  ===============================  ==================================
input type             as a point in time               as a duration
=====================  ===============================  ==================================
``int``                milliseconds since the epoch     milliseconds
``float``              **seconds** since the epoch      **seconds** (``0.25`` = 250 ms)
``datetime.datetime``  must be timezone-aware           (rejected)
``datetime.timedelta`` (rejected)                       exact
=====================  ===============================  ==================================

So the rule is: *an int is always milliseconds, a float is always seconds* (like
``time.time()``). Floats and sub-millisecond parts of a ``datetime``/``timedelta`` are rounded
to the nearest millisecond. ``bool`` is never accepted as a number.

>>> to_millis(1_700_000_000_000)
1700000000000
>>> from datetime import datetime, timedelta, timezone
>>> to_millis(datetime(2024, 1, 1, tzinfo=timezone.utc))
1704067200000
>>> to_duration_ms(timedelta(seconds=1.5)), to_duration_ms(0.25), to_duration_ms(40)
(1500, 250, 40)
>>> from_millis(0)
datetime.datetime(1970, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

import math
import time as _time
from datetime import datetime, timedelta, timezone

from actionqueue.core._validate import I64_MAX, I64_MIN, wrong_type
from actionqueue.errors import ValidationError

__all__ = [
    "DurationLike",
    "TimeLike",
    "from_millis",
    "now_ms",
    "to_duration_ms",
    "to_millis",
    "to_opt_duration_ms",
]

#: What a user may pass where a point in time is expected.
TimeLike = int | float | datetime
#: What a user may pass where an interval is expected.
DurationLike = int | float | timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)


def now_ms() -> int:
    """Current wall-clock time in milliseconds since the Unix epoch."""
    return _time.time_ns() // 1_000_000


def _round_td(td: timedelta) -> int:
    # Exact integer arithmetic on the timedelta (no float rounding); ties round half up.
    us = (td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds
    return (us + 500) // 1000


def _from_float_seconds(value: float, field: str) -> int:
    if not math.isfinite(value):
        raise ValidationError(f"{field} must be a finite number of seconds, got {value!r}")
    return round(value * 1000)


def _check_range(ms: int, field: str, value: object) -> int:
    if not I64_MIN <= ms <= I64_MAX:
        raise ValidationError(f"{field} is out of range for int64 milliseconds, got {value!r}")
    return ms


def to_millis(value: TimeLike, field: str = "time") -> int:
    """Convert a point in time to milliseconds since the epoch (UTC).

    ``int`` is taken as milliseconds, ``float`` as seconds (``time.time()`` style), an aware
    ``datetime`` exactly. A naive ``datetime`` is refused because its meaning depends on the
    machine's local zone; attach a ``tzinfo`` (e.g. ``datetime.now(timezone.utc)``).
    """
    tv = type(value)
    if tv is int:
        return _check_range(value, field, value)  # type: ignore[arg-type]
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationError(
                f"{field} must be a timezone-aware datetime, got naive {value!r}; "
                "attach a tzinfo, e.g. datetime.now(timezone.utc)"
            )
        return _check_range(_round_td(value - _EPOCH), field, value)
    if isinstance(value, float):
        return _check_range(_from_float_seconds(value, field), field, value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _check_range(int(value), field, value)
    if isinstance(value, timedelta):
        raise ValidationError(
            f"{field} must be a point in time (int ms since the epoch, float seconds or an "
            f"aware datetime), got a timedelta {value!r}"
        )
    raise wrong_type(field, "int milliseconds, float seconds or an aware datetime", value)


def to_duration_ms(value: DurationLike, field: str = "duration") -> int:
    """Convert an interval to milliseconds.

    ``int`` is taken as milliseconds, ``float`` as seconds, ``timedelta`` exactly (rounded to
    the nearest millisecond). The sign is kept; callers check their own bounds (``> 0``...).
    """
    tv = type(value)
    if tv is int:
        return _check_range(value, field, value)  # type: ignore[arg-type]
    if isinstance(value, timedelta):
        return _check_range(_round_td(value), field, value)
    if isinstance(value, float):
        return _check_range(_from_float_seconds(value, field), field, value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _check_range(int(value), field, value)
    if isinstance(value, datetime):
        raise ValidationError(
            f"{field} must be a duration (int ms, float seconds or a timedelta), "
            f"got a datetime {value!r}"
        )
    raise wrong_type(field, "int milliseconds, float seconds or a timedelta", value)


def to_opt_duration_ms(value: DurationLike | None, field: str = "duration") -> int | None:
    """:func:`to_duration_ms`, passing ``None`` through."""
    if value is None:
        return None
    return to_duration_ms(value, field)


def from_millis(ms: int) -> datetime:
    """An aware UTC ``datetime`` for milliseconds since the epoch (inverse of :func:`to_millis`)."""
    if type(ms) is not int and (isinstance(ms, bool) or not isinstance(ms, int)):
        raise wrong_type("ms", "an int", ms)
    try:
        return _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        raise ValidationError(f"ms is outside the range of datetime, got {ms!r}") from None
