"""Units at the runtime facade: **plain numbers are seconds**.

The runtime is what most users touch, and they write ``timeout=30`` meaning thirty seconds,
``exponential(1, 60)`` meaning one second up to a minute. So in every runtime-facing argument
(handler options, ``submit(delay=..., timeout=...)``, :func:`~actionqueue.runtime.api.exponential`,
:func:`~actionqueue.runtime.api.fixed`, ``ActionQueue.open(lease=...)``) an ``int`` or a
``float`` is **seconds**, a :class:`~datetime.timedelta` is exact, and points in time are aware
:class:`~datetime.datetime` objects or epoch **seconds** (``time.time()`` style).

The low-level core keeps its own rule (SPEC §3: ``int`` = milliseconds, ``float`` = seconds),
so these helpers convert explicitly to integer milliseconds at the boundary and the core never
sees an ambiguous number.

>>> seconds_to_ms(30), seconds_to_ms(0.25), seconds_to_ms(timedelta(minutes=1))
(30000, 250, 60000)
>>> from datetime import timezone
>>> instant_to_ms(datetime(2024, 1, 1, tzinfo=timezone.utc))
1704067200000
>>> instant_to_ms(1_704_067_200)          # epoch seconds
1704067200000
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from actionqueue.core._validate import I64_MAX, I64_MIN
from actionqueue.core.time import to_millis
from actionqueue.errors import ValidationError, WrongTypeError

__all__ = [
    "Seconds",
    "instant_to_ms",
    "opt_seconds_to_ms",
    "positive_seconds_to_ms",
    "seconds_to_ms",
]

#: A facade duration: int/float seconds or a timedelta.
Seconds = int | float | timedelta


def seconds_to_ms(value: Seconds, field: str = "duration") -> int:
    """A facade duration in integer milliseconds (numbers are seconds, rounded to the nearest
    millisecond). The sign is kept; callers check their own bounds. Beyond what a 64-bit
    millisecond count holds (about 292 million years) it is refused here, with ``field``'s
    name, instead of overflowing later where it is used."""
    ms = _to_ms(value, field)
    if not -I64_MAX <= ms <= I64_MAX:
        raise ValidationError(
            f"{field} is out of range: {value!r:.80} is beyond +-(2**63 - 1) milliseconds"
        )
    return ms


def _to_ms(value: Seconds, field: str) -> int:
    if isinstance(value, bool):
        raise WrongTypeError(f"{field} must be seconds (int or float) or a timedelta, got bool")
    if isinstance(value, timedelta):
        us = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
        return (us + 500) // 1000
    if isinstance(value, int):
        return value * 1000
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{field} must be a finite number of seconds, got {value!r}")
        return round(value * 1000)
    if isinstance(value, datetime):
        raise ValidationError(
            f"{field} must be a duration (seconds or a timedelta), got a datetime {value!r}"
        )
    raise WrongTypeError(
        f"{field} must be seconds (int or float) or a timedelta, "
        f"got {type(value).__name__} {value!r:.80}"
    )


def opt_seconds_to_ms(value: Seconds | None, field: str = "duration") -> int | None:
    """:func:`seconds_to_ms`, passing ``None`` through."""
    return None if value is None else seconds_to_ms(value, field)


def positive_seconds_to_ms(value: Seconds, field: str) -> int:
    """:func:`seconds_to_ms` that also requires a result > 0 ms."""
    ms = seconds_to_ms(value, field)
    if ms <= 0:
        raise ValidationError(f"{field} must be > 0 seconds, got {value!r} ({ms} ms)")
    return ms


def instant_to_ms(value: datetime | int | float, field: str = "at") -> int:
    """A facade point in time in ms since the epoch: an aware ``datetime`` or epoch seconds."""
    if isinstance(value, bool):
        raise WrongTypeError(f"{field} must be an aware datetime or epoch seconds, got bool")
    if isinstance(value, datetime):
        return to_millis(value, field)
    if isinstance(value, int):
        # Exact: float() of an int above ~1.8e308 raises a bare OverflowError, and above 2**53
        # it is no longer the second the caller gave.
        ms = int(value) * 1000
        if not I64_MIN <= ms <= I64_MAX:
            raise ValidationError(
                f"{field} is out of range for int64 milliseconds, got {value!r:.80} seconds"
            )
        return ms
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{field} must be finite epoch seconds, got {value!r}")
        return to_millis(value, field)
    raise WrongTypeError(
        f"{field} must be an aware datetime or epoch seconds, got {type(value).__name__} "
        f"{value!r:.80}"
    )
