"""The small helpers users import from ``actionqueue`` directly.

Control flow from inside a handler:

* ``raise aq.Retry(delay=5)`` — this attempt failed, try again after 5 **seconds** (the
  attempt counts toward ``max_attempts``; when none are left the run fails);
* ``raise aq.Fail("bad input")`` — fail the run now, whatever attempts remain;
* ``raise aq.Suspend()`` — park the run in Suspended; the attempt does not count. It stays
  there until ``retry_now`` (or a cancel);
* ``ctx.raise_if_cancelled()`` raises :class:`Cancelled` once the runtime asked the handler to
  stop (cancel, timeout, shutdown).

Backoff factories in **seconds** (see :mod:`actionqueue.runtime.units`):

>>> exponential(1, 60).to_wire()        # 1 s doubling up to 60 s
(2, 1000, 60000, 0)
>>> fixed(0.5).delay_for(3)
500
>>> every(60, count=3).interval_ms     # 3 runs, a minute apart
60000
"""

from __future__ import annotations

from actionqueue.core.task.constraints import Backoff, ExponentialBackoff, FixedBackoff
from actionqueue.core.task.run_policy import MisfirePolicy, RepeatPolicy, RunPolicy
from actionqueue.errors import ValidationError
from actionqueue.runtime.units import (
    Seconds,
    opt_seconds_to_ms,
    positive_seconds_to_ms,
    seconds_to_ms,
)

__all__ = [
    "Cancelled",
    "Fail",
    "HandlerSignal",
    "Retry",
    "Suspend",
    "every",
    "exponential",
    "fixed",
]


class HandlerSignal(Exception):
    """Base of the exceptions a handler raises to choose its outcome explicitly."""


class Retry(HandlerSignal):
    """Fail this attempt and retry after ``delay`` (seconds or a timedelta; ``None``: the
    task's backoff). Counts toward ``max_attempts``."""

    def __init__(self, delay: Seconds | None = None, reason: str | None = None) -> None:
        self.delay_ms = opt_seconds_to_ms(delay, "Retry delay")
        if self.delay_ms is not None and self.delay_ms < 0:
            raise ValidationError(f"Retry delay must be >= 0 seconds, got {delay!r}")
        self.delay = delay
        self.reason = reason
        super().__init__(reason or "retry requested")

    def __reduce__(self) -> tuple[object, ...]:
        return (_make_retry, (self.delay_ms, self.reason))


def _make_retry(delay_ms: int | None, reason: str | None) -> Retry:
    # Rebuild from milliseconds exactly (pickling across processes / Dask workers).
    r = Retry(None, reason)
    r.delay_ms = delay_ms
    r.delay = None if delay_ms is None else delay_ms / 1000
    return r


class Fail(HandlerSignal):
    """Fail the run now (TerminalFailure), without using the remaining attempts."""

    def __init__(self, reason: str = "failed by handler") -> None:
        self.reason = reason
        super().__init__(reason)


class Suspend(HandlerSignal):
    """Park the run in Suspended; the attempt is given back (does not count)."""

    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason
        super().__init__(reason or "suspended by handler")


class Cancelled(Exception):
    """Raised by ``ctx.raise_if_cancelled()`` once the runtime asked the handler to stop.

    ``reason`` is ``"canceled"`` (the run or task was canceled), ``"timeout"``,
    ``"shutdown"`` or ``"lost"`` (the attempt's lease expired under it: the clock jumped or the
    process stalled for longer than the lease). The runtime records the right outcome itself;
    a handler just lets it propagate.
    """

    def __init__(self, reason: str = "canceled") -> None:
        self.reason = reason
        super().__init__(f"handler asked to stop: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (Cancelled, (self.reason,))


def exponential(base: Seconds, cap: Seconds, jitter: float = 0.0) -> ExponentialBackoff:
    """``min(cap, base * 2**(n-1))`` after the n-th failed attempt, +/- ``jitter`` of it.

    ``base`` and ``cap`` are **seconds** (or timedeltas); ``jitter`` is a fraction in [0, 1].
    """
    return Backoff.exponential(
        positive_seconds_to_ms(base, "backoff base"),
        positive_seconds_to_ms(cap, "backoff cap"),
        jitter=jitter,
    )


def fixed(delay: Seconds) -> FixedBackoff:
    """The same delay (**seconds** or a timedelta, >= 0) after every failed attempt."""
    return Backoff.fixed(_nonneg(delay, "backoff delay"))


def _nonneg(value: Seconds, field: str) -> int:
    ms = seconds_to_ms(value, field)
    if ms < 0:
        raise ValidationError(f"{field} must be >= 0 seconds, got {value!r} ({ms} ms)")
    # An int crosses into the core as milliseconds (its own rule); the conversion is done.
    return ms


def every(interval: Seconds, *, count: int, misfire: MisfirePolicy | None = None) -> RepeatPolicy:
    """``count`` runs, ``interval`` **seconds** (or a timedelta) apart: the facade spelling of
    ``RunPolicy.repeat`` (whose plain ``int`` is milliseconds, the core's rule)."""
    return RunPolicy.repeat(count, positive_seconds_to_ms(interval, "interval"), misfire=misfire)
