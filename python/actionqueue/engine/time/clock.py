"""Clock abstractions so that every time-dependent decision can be tested deterministically.

All engine code asks an injected :class:`Clock` for the time instead of reading the wall clock,
and times are integer milliseconds since the Unix epoch (UTC) everywhere.

>>> clock = ManualClock(1_000)
>>> clock.advance(250)
1250
>>> clock.now()
1250
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from actionqueue.core._validate import I64_MAX
from actionqueue.core.time import to_duration_ms, to_millis
from actionqueue.errors import ValidationError, WrongTypeError

__all__ = ["Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Anything with ``now() -> int`` (milliseconds since the Unix epoch, UTC)."""

    def now(self) -> int: ...


class SystemClock:
    """Reads the wall clock (``time.time_ns``) in whole milliseconds."""

    __slots__ = ()

    def now(self) -> int:
        return time.time_ns() // 1_000_000

    def __repr__(self) -> str:
        return "SystemClock()"


def _as_millis(value: int | float | timedelta, what: str) -> int:
    # Clock positions are exact integers: floats would silently lose sub-millisecond parts.
    if isinstance(value, bool):
        raise WrongTypeError(f"{what} must be milliseconds (int) or a timedelta, got bool")
    if isinstance(value, int):
        return value
    if isinstance(value, timedelta):
        # Rounded to the nearest ms, exactly, like every other duration the API takes.
        return to_duration_ms(value, what)
    if isinstance(value, float):
        raise WrongTypeError(
            f"{what} must be int milliseconds or a timedelta, got float {value!r}; "
            "use timedelta(seconds=...) for seconds"
        )
    raise WrongTypeError(
        f"{what} must be int milliseconds or a timedelta, got {type(value).__name__}"
    )


def _position(value: int, what: str) -> int:
    """A clock position: milliseconds since the epoch that a record can hold."""
    if not 0 <= value <= I64_MAX:
        raise ValidationError(
            f"{what} must be a time in [0, 2**63 - 1] ms since the epoch, got {value}"
        )
    return value


class ManualClock:
    """A clock that moves only when told to; share one instance between a test and an engine.

    Thread-safe. Listeners registered with :meth:`subscribe` are called after every change,
    which lets a runtime that sleeps until its next wake-up notice that time moved.
    """

    __slots__ = ("_listeners", "_lock", "_now")

    def __init__(self, start: int | datetime = 0) -> None:
        if isinstance(start, datetime):
            if start.tzinfo is None:
                raise ValidationError(
                    f"ManualClock start must be timezone-aware, got naive datetime {start!r}"
                )
            start = to_millis(start, "start")
        self._now = _position(_as_millis(start, "start"), "start")
        self._lock = threading.Lock()
        self._listeners: list[Callable[[int], None]] = []

    def now(self) -> int:
        return self._now

    def set(self, millis: int | datetime) -> int:
        """Moves the clock to ``millis`` (it may move backwards: tests use that)."""
        if isinstance(millis, datetime):
            if millis.tzinfo is None:
                raise ValidationError(f"set() needs a timezone-aware datetime, got {millis!r}")
            millis = to_millis(millis, "millis")
        value = _position(_as_millis(millis, "millis"), "millis")
        with self._lock:
            self._now = value
        self._notify(value)
        return value

    def advance(self, delta: int | timedelta) -> int:
        """Moves the clock forward by ``delta`` (milliseconds or a timedelta); returns now."""
        step = _as_millis(delta, "delta")
        if step < 0:
            raise ValidationError(f"advance() needs a non-negative delta, got {step}; use set()")
        with self._lock:
            value = _position(self._now + step, "the advanced clock")
            self._now = value
        self._notify(value)
        return value

    def subscribe(self, listener: Callable[[int], None]) -> Callable[[], None]:
        """Calls ``listener(now)`` after each change; returns a function that unsubscribes."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _notify(self, value: int) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(value)

    def __repr__(self) -> str:
        return f"ManualClock({self._now})"
