"""Task constraints: attempt cap, timeout, concurrency key, hold policy, retry backoff.

>>> c = TaskConstraints(
...     max_attempts=5,
...     timeout=30.0,                       # float = seconds; int = milliseconds
...     concurrency_key="billing",
...     retry=Backoff.exponential(0.5, 60.0, jitter=0.1),
...     retry_on=RetryOn(terminal_errors=[KeyError]),
... )
>>> c.timeout_ms, c.retry.delay_for(3, rng=None) in range(1800, 2201)
(30000, True)
>>> TaskConstraints() == TaskConstraints.default()
True
"""

from __future__ import annotations

import builtins
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Protocol

from actionqueue.core._enum import WireEnum
from actionqueue.core._validate import (
    I64_MAX,
    U32_MAX,
    check_bool,
    check_int,
    check_opt_str,
    check_text,
    unpack,
    wrong_type,
)
from actionqueue.core.time import DurationLike, to_opt_duration_ms
from actionqueue.errors import ValidationError, WrongTypeError

__all__ = [
    "Backoff",
    "ExponentialBackoff",
    "FixedBackoff",
    "HoldPolicy",
    "NoBackoff",
    "RetryOn",
    "TaskConstraints",
]

BackoffWire = tuple[int, ...]
RetryOnWire = tuple[bool, bool, list[str]]
ConstraintsWire = tuple[int, int | None, str | None, int, BackoffWire, RetryOnWire]

_PPM = 1_000_000


class _Rng(Protocol):
    def random(self) -> float: ...


class HoldPolicy(WireEnum):
    """Whether a run keeps its concurrency key while in RetryWait or Suspended."""

    HOLD_DURING_RETRY = 0
    RELEASE_ON_RETRY = 1


def _check_hold(value: object) -> HoldPolicy:
    if type(value) is HoldPolicy:
        return value
    if isinstance(value, str):
        try:
            return HoldPolicy[value.upper()]
        except KeyError:
            pass
    elif isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return HoldPolicy(value)
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        raise ValidationError(
            f"hold_policy must be 'hold_during_retry' or 'release_on_retry', got {value!r}"
        )
    raise wrong_type("hold_policy", "a HoldPolicy", value)


def _nonneg_ms(value: object, field: str, *, positive: bool) -> int:
    if value is None or isinstance(value, bool):
        raise wrong_type(field, "int milliseconds, float seconds or a timedelta", value)
    ms = to_opt_duration_ms(value, field)  # type: ignore[arg-type]
    assert ms is not None
    if positive and ms <= 0:
        raise ValidationError(f"{field} must be > 0, got {value!r} ({ms} ms)")
    if ms < 0:
        raise ValidationError(f"{field} must be >= 0, got {value!r} ({ms} ms)")
    return ms


# --- backoff ---------------------------------------------------------------------------------


class Backoff:
    """Delay before a failed attempt's run becomes Ready again. Abstract: use the factories.

    >>> Backoff.fixed(0.25).delay_for(1)
    250
    >>> b = Backoff.exponential(100, 1000)
    >>> [b.delay_for(n) for n in range(1, 7)]
    [100, 200, 400, 800, 1000, 1000]
    """

    __slots__ = ()
    kind: ClassVar[int]

    def __new__(cls, *args: Any, **kwargs: Any) -> Backoff:
        if cls is Backoff:
            raise WrongTypeError(
                "Backoff is abstract; use Backoff.none(), Backoff.fixed(delay) or "
                "Backoff.exponential(base, cap, jitter=0.0)"
            )
        return object.__new__(cls)

    @staticmethod
    def none() -> NoBackoff:
        """Retry immediately."""
        return _NO_BACKOFF

    @staticmethod
    def fixed(delay: DurationLike) -> FixedBackoff:
        """The same delay after every failure (int ms, float seconds or timedelta, >= 0)."""
        return FixedBackoff(_nonneg_ms(delay, "backoff delay", positive=False))

    @staticmethod
    def exponential(
        base: DurationLike, cap: DurationLike, jitter: float = 0.0
    ) -> ExponentialBackoff:
        """``min(cap, base * 2**(n-1))`` after the n-th failure, then +/- ``jitter`` of it.

        ``jitter`` is a fraction in [0, 1] (``0.1`` = up to 10 % either way), stored in parts
        per million.
        """
        base_ms = _nonneg_ms(base, "backoff base", positive=True)
        cap_ms = _nonneg_ms(cap, "backoff cap", positive=True)
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)):
            raise wrong_type("backoff jitter", "a float fraction between 0.0 and 1.0", jitter)
        if not (math.isfinite(jitter) and 0.0 <= jitter <= 1.0):
            raise ValidationError(
                f"backoff jitter must be a fraction between 0.0 and 1.0, got {jitter!r}"
            )
        return ExponentialBackoff(base_ms, cap_ms, round(jitter * _PPM))

    def delay_for(self, attempt_number: int, rng: _Rng | None = None) -> int:
        """Milliseconds to wait after the ``attempt_number``-th counted attempt failed (>= 1).

        With jitter, ``rng.random()`` (default: the ``random`` module) picks the offset, so
        the result is deterministic for a seeded ``random.Random``.
        """
        raise NotImplementedError

    def to_wire(self) -> BackoffWire:
        raise NotImplementedError

    @staticmethod
    def from_wire(t: Any) -> Backoff:
        if not isinstance(t, (tuple, list)) or not t:
            raise wrong_type("backoff wire value", "a non-empty tuple", t)
        tag = t[0]
        if tag == 0 and type(tag) is int:
            unpack(t, 1, "no backoff")
            return _NO_BACKOFF
        if tag == 1 and type(tag) is int:
            return FixedBackoff(unpack(t, 2, "fixed backoff")[1])
        if tag == 2 and type(tag) is int:
            _, base, cap, jitter = unpack(t, 4, "exponential backoff")
            return ExponentialBackoff(base, cap, jitter)
        raise ValidationError(f"backoff kind tag must be 0, 1 or 2, got {tag!r}")

    def __reduce__(self) -> tuple[Any, tuple[BackoffWire]]:
        return (Backoff.from_wire, (self.to_wire(),))


def _check_attempt(n: object) -> int:
    return check_int(n, "attempt_number", minimum=1)


@dataclass(frozen=True, slots=True)
class NoBackoff(Backoff):
    """Retry immediately."""

    kind: ClassVar[int] = 0

    def delay_for(self, attempt_number: int, rng: _Rng | None = None) -> int:
        _check_attempt(attempt_number)
        return 0

    def to_wire(self) -> tuple[int]:
        return (0,)


@dataclass(frozen=True, slots=True)
class FixedBackoff(Backoff):
    """The same ``delay_ms`` after every failure."""

    delay_ms: int
    kind: ClassVar[int] = 1

    def __post_init__(self) -> None:
        check_int(self.delay_ms, "backoff delay_ms", minimum=0, maximum=I64_MAX)

    def delay_for(self, attempt_number: int, rng: _Rng | None = None) -> int:
        _check_attempt(attempt_number)
        return self.delay_ms

    def to_wire(self) -> tuple[int, int]:
        return (1, self.delay_ms)


@dataclass(frozen=True, slots=True)
class ExponentialBackoff(Backoff):
    """``min(cap_ms, base_ms * 2**(n-1))``, then +/- ``jitter_ppm`` parts per million of it."""

    base_ms: int
    cap_ms: int
    jitter_ppm: int = 0
    kind: ClassVar[int] = 2

    def __post_init__(self) -> None:
        base = check_int(self.base_ms, "backoff base_ms", minimum=1, maximum=I64_MAX)
        cap = check_int(self.cap_ms, "backoff cap_ms", minimum=1, maximum=I64_MAX)
        if cap < base:
            raise ValidationError(f"backoff cap must be >= base, got cap={cap} ms < base={base} ms")
        check_int(self.jitter_ppm, "backoff jitter_ppm", minimum=0, maximum=_PPM)

    @property
    def jitter(self) -> float:
        """The jitter as a fraction (0.0 .. 1.0)."""
        return self.jitter_ppm / _PPM

    def delay_for(self, attempt_number: int, rng: _Rng | None = None) -> int:
        n = _check_attempt(attempt_number)
        # Bound the shift: past 2**62 the product is above any i64 cap anyway.
        shift = min(n - 1, 62)
        delay = min(self.cap_ms, self.base_ms << shift)
        if self.jitter_ppm:
            r = _uniform(rng)
            # Offset in [-jitter, +jitter) of the delay, in integer ms.
            offset = round((2.0 * r - 1.0) * delay * self.jitter_ppm / _PPM)
            delay = max(0, min(I64_MAX, delay + offset))
        return delay

    def to_wire(self) -> tuple[int, int, int, int]:
        return (2, self.base_ms, self.cap_ms, self.jitter_ppm)


_NO_BACKOFF = NoBackoff()


def _uniform(rng: _Rng | None) -> float:
    """A draw in [0, 1) from ``rng`` (default: the ``random`` module)."""
    if rng is None:
        return random.random()
    draw = getattr(rng, "random", None)
    if not callable(draw):
        raise wrong_type("rng", "an object with a random() method, e.g. random.Random(seed)", rng)
    value = draw()
    if not isinstance(value, float) or not 0.0 <= value < 1.0:
        raise ValidationError(f"rng.random() must return a float in [0, 1), got {value!r}")
    return value


# --- retry classification --------------------------------------------------------------------


def is_exception_name(name: str) -> bool:
    """Whether ``name`` has the shape of a qualified exception class name: dotted Python
    identifiers (Unicode ones too, as in ``mod.Ärger``), where parts after the first may be a
    ``<locals>``-style marker (``mod.make.<locals>.Local``, what a class defined in a function
    is called). The shape of every name a class in an importable module is given."""
    parts = name.split(".")
    return parts[0].isidentifier() and all(
        p.isidentifier() or (len(p) > 2 and p[0] == "<" and p[-1] == ">" and p[1:-1].isidentifier())
        for p in parts[1:]
    )


def _exc_name(value: object) -> str:
    if isinstance(value, type):
        if not issubclass(value, BaseException):
            raise wrong_type(
                "terminal_errors item", "an exception class or its qualified name", value
            )
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, str):
        if not is_exception_name(value):
            raise ValidationError(
                f"terminal_errors item must be a qualified exception name like "
                f"'mypkg.errors.BadInput', got {value!r}"
            )
        # A bare builtin name ("ValueError") means the builtin.
        if "." not in value:
            obj = getattr(builtins, value, None)
            if isinstance(obj, type) and issubclass(obj, BaseException):
                return f"builtins.{value}"
        return value
    raise wrong_type("terminal_errors item", "an exception class or its qualified name", value)


def _stored_exc_name(value: object) -> str:
    """A ``terminal_errors`` name read back from the log: what :func:`_exc_name` would make of
    it, or, for a name without that shape, the name as stored. A class is stored under its
    ``module.QualName`` whatever that is (a class made with ``type()`` can have any name), and
    the core keeps any string: refusing it here would make the task unreadable after a restart
    (and stop every dispatch that meets it)."""
    if isinstance(value, str) and value and not is_exception_name(value):
        return check_text(value, "retry_on terminal_errors wire item")
    return _exc_name(value)


@dataclass(frozen=True, slots=True, init=False)
class RetryOn:
    """Which failures may be retried (while attempts remain).

    ``timeout`` / ``lost``: whether a timed-out / lost attempt is retried. Exceptions whose
    class (or any base class) is named in ``terminal_errors`` fail the run at once; every other
    exception is retryable. Names are ``module.QualName``; a bare name without a dot matches a
    class of that name in any module (builtins are normalised to ``builtins.X``).

    >>> RetryOn(terminal_errors=[ValueError, "mypkg.Fatal"]).terminal_errors
    ('builtins.ValueError', 'mypkg.Fatal')
    >>> RetryOn(terminal_errors=[LookupError]).is_terminal(KeyError("k"))
    True
    """

    timeout: bool
    lost: bool
    terminal_errors: tuple[str, ...]

    def __init__(
        self,
        timeout: bool = True,
        lost: bool = True,
        terminal_errors: Iterable[type[BaseException] | str] = (),
    ) -> None:
        check_bool(timeout, "retry_on timeout")
        check_bool(lost, "retry_on lost")
        te = type(terminal_errors)
        if (te is tuple or te is list) and not terminal_errors:
            names: tuple[str, ...] = ()
        elif isinstance(terminal_errors, (str, type)):
            # A lone name/class is almost certainly meant as a one-item list.
            names = (_exc_name(terminal_errors),)
        elif not isinstance(terminal_errors, Iterable):
            raise wrong_type(
                "terminal_errors", "a list of exception classes or names", terminal_errors
            )
        else:
            names = tuple(dict.fromkeys([_exc_name(e) for e in terminal_errors]))
        object.__setattr__(self, "timeout", timeout)
        object.__setattr__(self, "lost", lost)
        object.__setattr__(self, "terminal_errors", names)

    def is_terminal(self, exc: BaseException | type[BaseException]) -> bool:
        """Whether this exception (instance or class) fails the run without retrying."""
        if not self.terminal_errors:
            return False
        cls = exc if isinstance(exc, type) else type(exc)
        names = set(self.terminal_errors)
        for k in cls.__mro__:
            if f"{k.__module__}.{k.__qualname__}" in names or k.__qualname__ in names:
                return True
        return False

    def to_wire(self) -> RetryOnWire:
        return (self.timeout, self.lost, list(self.terminal_errors))

    @classmethod
    def from_wire(cls, t: Any) -> RetryOn:
        if t == _DEFAULT_RETRY_ON_WIRE:
            return _DEFAULT_RETRY_ON
        timeout, lost, names = unpack(t, 3, "retry_on")
        if not isinstance(names, (list, tuple)):
            raise wrong_type("retry_on terminal_errors wire value", "a list of str", names)
        r = cls(timeout, lost)
        object.__setattr__(r, "terminal_errors", tuple(dict.fromkeys(map(_stored_exc_name, names))))
        return r

    def __reduce__(self) -> tuple[Any, tuple[RetryOnWire]]:
        return (RetryOn.from_wire, (self.to_wire(),))


_DEFAULT_RETRY_ON = RetryOn()
_DEFAULT_RETRY_ON_WIRE = _DEFAULT_RETRY_ON.to_wire()


# --- constraints -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, init=False)
class TaskConstraints:
    """Per-task execution constraints (SPEC §4).

    - ``max_attempts`` (>= 1, default 1): counted attempts per run, retries included.
    - ``timeout``: per-attempt limit (> 0; int ms, float seconds or timedelta) or ``None``;
      stored as ``timeout_ms``.
    - ``concurrency_key``: a non-empty string; at most one run per key is in flight.
    - ``hold_policy``: keep the key during RetryWait/Suspended (default) or release it.
    - ``retry``: the :class:`Backoff` between attempts (default: none, retry at once).
    - ``retry_on``: which failures are retryable, see :class:`RetryOn`.
    """

    max_attempts: int
    timeout_ms: int | None
    concurrency_key: str | None
    hold_policy: HoldPolicy
    retry: Backoff
    retry_on: RetryOn

    def __init__(
        self,
        max_attempts: int = 1,
        timeout: DurationLike | None = None,
        concurrency_key: str | None = None,
        hold_policy: HoldPolicy | str = HoldPolicy.HOLD_DURING_RETRY,
        retry: Backoff | None = None,
        retry_on: RetryOn | None = None,
    ) -> None:
        max_attempts = check_int(max_attempts, "max_attempts", minimum=1, maximum=U32_MAX)
        timeout_ms = None if timeout is None else _nonneg_ms(timeout, "timeout", positive=True)
        concurrency_key = check_opt_str(concurrency_key, "concurrency_key")
        hold = _check_hold(hold_policy)
        if retry is None:
            retry = _NO_BACKOFF
        elif not isinstance(retry, Backoff):
            raise wrong_type("retry", "a Backoff (e.g. Backoff.exponential(0.5, 30.0))", retry)
        if retry_on is None:
            retry_on = _DEFAULT_RETRY_ON
        elif not isinstance(retry_on, RetryOn):
            raise wrong_type("retry_on", "a RetryOn", retry_on)
        s = object.__setattr__
        s(self, "max_attempts", max_attempts)
        s(self, "timeout_ms", timeout_ms)
        s(self, "concurrency_key", concurrency_key)
        s(self, "hold_policy", hold)
        s(self, "retry", retry)
        s(self, "retry_on", retry_on)

    @classmethod
    def default(cls) -> TaskConstraints:
        """The defaults (one attempt, no timeout, no key) — the seed's ``::default()``."""
        return _DEFAULT_CONSTRAINTS

    @property
    def timeout(self) -> timedelta | None:
        return None if self.timeout_ms is None else timedelta(milliseconds=self.timeout_ms)

    @property
    def backoff(self) -> Backoff:
        """Alias of :attr:`retry`."""
        return self.retry

    def to_wire(self) -> ConstraintsWire:
        """``(max_attempts, timeout_ms, concurrency_key, hold, backoff, retry_on)``."""
        return (
            self.max_attempts,
            self.timeout_ms,
            self.concurrency_key,
            int(self.hold_policy),
            self.retry.to_wire(),
            self.retry_on.to_wire(),
        )

    @classmethod
    def from_wire(cls, t: Any) -> TaskConstraints:
        if t == _DEFAULT_WIRE:  # the common case, without re-validating
            return _DEFAULT_CONSTRAINTS
        max_attempts, timeout_ms, key, hold, backoff, retry_on = unpack(t, 6, "constraints")
        if timeout_ms is not None and type(timeout_ms) is not int:
            raise wrong_type("constraints timeout_ms wire value", "an int", timeout_ms)
        if type(hold) is not int:
            raise wrong_type("constraints hold wire value", "an int", hold)
        return cls(
            max_attempts,
            timeout_ms,
            key,
            _check_hold(hold),
            Backoff.from_wire(backoff),
            RetryOn.from_wire(retry_on),
        )

    def __reduce__(self) -> tuple[Any, tuple[ConstraintsWire]]:
        return (TaskConstraints.from_wire, (self.to_wire(),))


_DEFAULT_CONSTRAINTS = TaskConstraints()
_DEFAULT_WIRE = _DEFAULT_CONSTRAINTS.to_wire()
