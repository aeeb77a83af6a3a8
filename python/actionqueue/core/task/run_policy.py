"""Run policies: how many runs a task implies and when (SPEC §4).

Build them through the factories on :class:`RunPolicy`:

>>> RunPolicy.once().total_runs()
1
>>> p = RunPolicy.repeat(3, 0.5)      # 3 runs, 500 ms apart (float = seconds, int = ms)
>>> p.count, p.interval_ms, p.misfire.kind.name
(3, 500, 'CATCH_UP')
>>> RunPolicy.cron("*/5 * * * *", timezone="Europe/Paris", max_occurrences=10).total_runs()
10
>>> RunPolicy.Once == RunPolicy.once()  # the seed's spelling
True

Cron expressions have 5 fields (minute hour day-of-month month day-of-week) or 6 fields with
the **seconds field first** (``"*/10 * * * * *"`` = every 10 seconds), as in Quartz, Spring and
the Rust ``cron`` crate; the ``@hourly``-style aliases are accepted. They are parsed and
evaluated with ``croniter``; use :meth:`CronPolicy.next_after` so every layer evaluates them the
same way.

A policy read back from a log (:meth:`RunPolicy.from_wire`) is kept exactly as written even
when this machine cannot evaluate it — a time zone its zone database lacks, an expression its
``croniter`` refuses — so that the log always opens and nothing is lost;
:attr:`CronPolicy.unresolved` then says why, and deriving its occurrences raises (see
docs/policies.md, "A time zone this machine does not know").
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from actionqueue.core._enum import WireEnum
from actionqueue.core._validate import I64_MAX, U32_MAX, check_int, unpack, wrong_type
from actionqueue.core.time import DurationLike, from_millis, to_millis, to_opt_duration_ms
from actionqueue.errors import InvalidPolicyError, ValidationError, WrongTypeError

__all__ = [
    "CronPolicy",
    "MisfireKind",
    "MisfirePolicy",
    "OncePolicy",
    "PolicyKind",
    "RepeatPolicy",
    "RunPolicy",
]

#: ``(misfire_kind, cap or None, grace_ms or None)``
MisfireWire = tuple[int, int | None, int | None]
#: ``(kind_tuple, misfire_wire)``, see docs/DESIGN.md.
PolicyWire = tuple[tuple[Any, ...], MisfireWire]


class MisfireKind(WireEnum):
    """What to do with occurrences that fell due while the process was down."""

    CATCH_UP = 0
    """Run every missed occurrence (optionally only the most recent ``cap``)."""
    COALESCE = 1
    """One run for the whole missed window."""
    SKIP = 2
    """Drop missed occurrences; run the next one."""


class PolicyKind(WireEnum):
    ONCE = 0
    REPEAT = 1
    CRON = 2


_MISFIRE_KINDS = tuple(MisfireKind)


@dataclass(frozen=True, slots=True)
class MisfirePolicy:
    """Misfire handling plus an optional grace period.

    An occurrence late by at most ``grace_ms`` is not a misfire. ``cap`` (catch-up only) limits
    how many missed occurrences run. Prefer the factories, which accept any duration form:

    >>> MisfirePolicy.catch_up(cap=3, grace=2.0)
    MisfirePolicy(kind=<MisfireKind.CATCH_UP: 0>, cap=3, grace_ms=2000)
    >>> MisfirePolicy.skip().kind.name
    'SKIP'
    """

    kind: MisfireKind = MisfireKind.CATCH_UP
    cap: int | None = None
    grace_ms: int | None = None

    def __post_init__(self) -> None:
        kind = self.kind
        if type(kind) is not MisfireKind:
            if isinstance(kind, str):
                try:
                    kind = MisfireKind[kind.upper()]
                except KeyError:
                    raise InvalidPolicyError(
                        f"misfire kind must be one of catch_up, coalesce, skip, got {kind!r}"
                    ) from None
            else:
                k = check_int(kind, "misfire kind", error=InvalidPolicyError)
                if k not in (0, 1, 2):
                    raise InvalidPolicyError(f"misfire kind must be 0, 1 or 2, got {k}")
                kind = _MISFIRE_KINDS[k]
            object.__setattr__(self, "kind", kind)
        if self.cap is not None:
            if kind is not MisfireKind.CATCH_UP:
                raise InvalidPolicyError(
                    f"misfire cap applies only to catch_up, got cap={self.cap!r} with "
                    f"{kind.name.lower()}"
                )
            check_int(self.cap, "misfire cap", minimum=1, maximum=U32_MAX, error=InvalidPolicyError)
        if self.grace_ms is not None:
            check_int(self.grace_ms, "grace", minimum=0, maximum=I64_MAX, error=InvalidPolicyError)

    @classmethod
    def catch_up(cls, cap: int | None = None, grace: DurationLike | None = None) -> MisfirePolicy:
        """Run every missed occurrence, or only the most recent ``cap`` of them."""
        if cap is None and grace is None:
            return _DEFAULT_MISFIRE
        return cls(MisfireKind.CATCH_UP, cap, to_opt_duration_ms(grace, "grace"))

    @classmethod
    def coalesce(cls, grace: DurationLike | None = None) -> MisfirePolicy:
        """Run once for the whole missed window."""
        return cls(MisfireKind.COALESCE, None, to_opt_duration_ms(grace, "grace"))

    @classmethod
    def skip(cls, grace: DurationLike | None = None) -> MisfirePolicy:
        """Drop missed occurrences and wait for the next one."""
        return cls(MisfireKind.SKIP, None, to_opt_duration_ms(grace, "grace"))

    def to_wire(self) -> MisfireWire:
        return (int(self.kind), self.cap, self.grace_ms)

    @classmethod
    def from_wire(cls, t: Any) -> MisfirePolicy:
        if t == _DEFAULT_MISFIRE_WIRE:
            return _DEFAULT_MISFIRE
        kind, cap, grace_ms = unpack(t, 3, "misfire")
        return cls(kind, cap, grace_ms)

    def __reduce__(self) -> tuple[Any, tuple[MisfireWire]]:
        return (MisfirePolicy.from_wire, (self.to_wire(),))


_DEFAULT_MISFIRE = MisfirePolicy()
_DEFAULT_MISFIRE_WIRE = _DEFAULT_MISFIRE.to_wire()


def _check_misfire(misfire: object) -> MisfirePolicy:
    if misfire is None:
        return _DEFAULT_MISFIRE
    if not isinstance(misfire, MisfirePolicy):
        raise wrong_type("misfire", "a MisfirePolicy (e.g. MisfirePolicy.skip())", misfire)
    return misfire


class RunPolicy:
    """How many runs a task implies and when. Abstract: build one with the factories.

    Concrete policies are :class:`OncePolicy`, :class:`RepeatPolicy` and :class:`CronPolicy`;
    all are frozen and validated on construction.
    """

    __slots__ = ()

    #: The seed's spelling ``RunPolicy::Once``: a ready-made once policy.
    Once: ClassVar[OncePolicy]
    kind: ClassVar[PolicyKind]
    # Declared for the type checker; each concrete dataclass defines the slot.
    misfire: MisfirePolicy

    def __new__(cls, *args: Any, **kwargs: Any) -> RunPolicy:
        if cls is RunPolicy:
            raise WrongTypeError(
                "RunPolicy is abstract; use RunPolicy.once(), RunPolicy.repeat(count, "
                "interval) or RunPolicy.cron(expression)"
            )
        return object.__new__(cls)

    @staticmethod
    def once(*, misfire: MisfirePolicy | None = None) -> OncePolicy:
        """One run, due at the schedule origin."""
        if misfire is None:
            return _ONCE
        return OncePolicy(_check_misfire(misfire))

    @staticmethod
    def repeat(
        count: int, interval: DurationLike, *, misfire: MisfirePolicy | None = None
    ) -> RepeatPolicy:
        """``count`` runs at ``origin + k * interval`` for k = 0..count-1.

        ``interval`` is an int of milliseconds, a float of seconds or a ``timedelta``;
        sub-second intervals are fine.
        """
        if interval is None:
            raise wrong_type("interval", "int milliseconds, float seconds or a timedelta", interval)
        interval_ms = _duration(interval, "interval")
        return RepeatPolicy(count, interval_ms, _check_misfire(misfire))

    @staticmethod
    def cron(
        expression: str,
        timezone: str | tzinfo = "UTC",
        max_occurrences: int | None = None,
        window: int = 5,
        *,
        misfire: MisfirePolicy | None = None,
    ) -> CronPolicy:
        """Occurrences of a cron expression in an IANA time zone.

        Runs are derived in a rolling ``window`` of non-terminal runs, never more than
        ``max_occurrences`` in total (``None``: unbounded).
        """
        return CronPolicy(
            expression, _zone_name(timezone), max_occurrences, window, _check_misfire(misfire)
        )

    def total_runs(self) -> int | None:
        """Total runs the policy implies, or ``None`` when unbounded (cron without a cap)."""
        raise NotImplementedError

    @property
    def unresolved(self) -> str | None:
        """Why this machine cannot compute the policy's run times, or ``None`` when it can
        (always, except for a cron policy read from a log: see :attr:`CronPolicy.unresolved`)."""
        return None

    def kind_wire(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def to_wire(self) -> PolicyWire:
        """``(kind_tuple, misfire_tuple)`` as in docs/DESIGN.md."""
        return (self.kind_wire(), self.misfire.to_wire())

    @staticmethod
    def from_wire(t: Any) -> RunPolicy:
        """Rebuild (and re-validate) a policy from :meth:`to_wire`'s tuple."""
        if t == _ONCE_WIRE:
            return _ONCE
        kind_t, misfire_t = unpack(t, 2, "run policy")
        misfire = MisfirePolicy.from_wire(misfire_t)
        if not isinstance(kind_t, (tuple, list)) or not kind_t:
            raise wrong_type("run policy kind wire value", "a non-empty tuple", kind_t)
        tag = kind_t[0]
        if tag == PolicyKind.ONCE and type(tag) is int:
            unpack(kind_t, 1, "once policy")
            return OncePolicy(misfire) if misfire != _DEFAULT_MISFIRE else _ONCE
        if tag == PolicyKind.REPEAT and type(tag) is int:
            _, count, interval_ms = unpack(kind_t, 3, "repeat policy")
            return RepeatPolicy(count, interval_ms, misfire)
        if tag == PolicyKind.CRON and type(tag) is int:
            _, expr, tz, max_occ, window = unpack(kind_t, 5, "cron policy")
            try:
                return CronPolicy(expr, tz, max_occ, window, misfire)
            except InvalidPolicyError:
                # Written where it resolved; this machine may lack the zone (older tzdata) or
                # its croniter may refuse the expression. Keep it as written: refusing it here
                # would refuse the whole log (every read of the task, every tick meeting it).
                return CronPolicy._as_stored(expr, tz, max_occ, window, misfire)
        raise InvalidPolicyError(f"run policy kind tag must be 0, 1 or 2, got {tag!r}")

    def __reduce__(self) -> tuple[Any, tuple[PolicyWire]]:
        return (RunPolicy.from_wire, (self.to_wire(),))


def _duration(value: object, field: str) -> int:
    # Durations in policies raise InvalidPolicyError (a ValidationError) for bad values and
    # WrongTypeError for wrong types, like everything else here.
    try:
        ms = to_opt_duration_ms(value, field)  # type: ignore[arg-type]
    except WrongTypeError:
        raise
    except ValidationError as e:
        raise InvalidPolicyError(str(e)) from None
    assert ms is not None
    return ms


@dataclass(frozen=True, slots=True)
class OncePolicy(RunPolicy):
    """One run, due at the schedule origin."""

    misfire: MisfirePolicy = _DEFAULT_MISFIRE
    kind: ClassVar[PolicyKind] = PolicyKind.ONCE

    def __post_init__(self) -> None:
        _check_misfire(self.misfire)

    def total_runs(self) -> int:
        return 1

    def kind_wire(self) -> tuple[int]:
        return (0,)


@dataclass(frozen=True, slots=True)
class RepeatPolicy(RunPolicy):
    """``count`` runs at ``origin + k * interval_ms``, k = 0..count-1."""

    count: int
    interval_ms: int
    misfire: MisfirePolicy = _DEFAULT_MISFIRE
    kind: ClassVar[PolicyKind] = PolicyKind.REPEAT

    def __post_init__(self) -> None:
        count = check_int(
            self.count, "repeat count", minimum=1, maximum=U32_MAX, error=InvalidPolicyError
        )
        if type(self.interval_ms) is not int and (
            isinstance(self.interval_ms, bool) or not isinstance(self.interval_ms, int)
        ):
            raise wrong_type(
                "interval_ms",
                "an int of milliseconds (use RunPolicy.repeat for float seconds or a timedelta)",
                self.interval_ms,
            )
        interval = check_int(
            self.interval_ms, "repeat interval_ms", maximum=I64_MAX, error=InvalidPolicyError
        )
        if interval <= 0:
            raise InvalidPolicyError(
                f"repeat interval must be > 0 ms, got {interval} ms; "
                "pass an int of milliseconds, float seconds or a timedelta"
            )
        if (count - 1) * interval > I64_MAX:
            raise InvalidPolicyError(
                f"repeat count * interval overflows int64 milliseconds: count={count}, "
                f"interval_ms={interval}"
            )
        _check_misfire(self.misfire)
        # Normalise int subclasses so equality and the wire tuple hold plain ints.
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "interval_ms", interval)

    def total_runs(self) -> int:
        return self.count

    def kind_wire(self) -> tuple[int, int, int]:
        return (1, self.count, self.interval_ms)


@dataclass(frozen=True, slots=True)
class CronPolicy(RunPolicy):
    """Cron occurrences in an IANA time zone, in a rolling window of ``window`` runs."""

    expression: str
    timezone: str = "UTC"
    max_occurrences: int | None = None
    window: int = 5
    misfire: MisfirePolicy = _DEFAULT_MISFIRE
    kind: ClassVar[PolicyKind] = PolicyKind.CRON

    def __post_init__(self) -> None:
        expr = _check_cron(self.expression)
        tz = _zone_name(self.timezone)
        _zone(tz)
        self._check_bounds()
        _check_fires(expr, tz)
        object.__setattr__(self, "expression", expr)
        object.__setattr__(self, "timezone", tz)

    def _check_bounds(self) -> None:
        if self.max_occurrences is not None:
            check_int(
                self.max_occurrences,
                "max_occurrences",
                minimum=1,
                maximum=U32_MAX,
                error=InvalidPolicyError,
            )
        check_int(self.window, "cron window", minimum=1, maximum=U32_MAX, error=InvalidPolicyError)
        _check_misfire(self.misfire)

    @classmethod
    def _as_stored(
        cls,
        expression: object,
        timezone: object,
        max_occurrences: object,
        window: object,
        misfire: MisfirePolicy,
    ) -> CronPolicy:
        """A policy read from a log that this machine cannot evaluate, kept exactly as
        written (see :attr:`unresolved`). What does not depend on the machine — the types,
        a non-empty expression and zone name, the bounds — is checked as usual."""
        if not isinstance(expression, str):
            raise wrong_type("cron expression", "a str like '*/5 * * * *'", expression)
        if not expression.strip():
            raise InvalidPolicyError(f"cron expression must not be empty, got {expression!r}")
        if not isinstance(timezone, str):
            raise wrong_type("timezone", "an IANA zone name (str)", timezone)
        _zone_name(timezone)
        p = object.__new__(cls)
        for name, value in (
            ("expression", expression),
            ("timezone", timezone),
            ("max_occurrences", max_occurrences),
            ("window", window),
            ("misfire", misfire),
        ):
            object.__setattr__(p, name, value)
        p._check_bounds()
        return p

    @property
    def unresolved(self) -> str | None:
        """Why this machine cannot compute the occurrences, or ``None`` when it can.

        A policy built here always can: construction refuses a zone or an expression this
        machine cannot evaluate. A policy read from a log written elsewhere is kept as written
        even when this machine cannot: its time zone is missing from the zone database here
        (an older system database or ``tzdata`` package), or this ``croniter`` refuses the
        expression. Until that is fixed, its occurrences cannot be computed (:meth:`iter_after`
        raises :class:`~actionqueue.errors.InvalidPolicyError`): the engine runs the runs
        already derived and derives no new ones (docs/policies.md).

        >>> RunPolicy.cron("0 9 * * *", timezone="Europe/Paris").unresolved is None
        True
        >>> stored = ((2, "0 9 * * *", "Mars/Olympus_Mons", None, 5), (0, None, None))
        >>> RunPolicy.from_wire(stored).unresolved
        "unknown timezone 'Mars/Olympus_Mons': ...
        """
        try:
            _zone(self.timezone)
            _check_fires(_check_cron_cached(self.expression), self.timezone)
        except (InvalidPolicyError, TypeError, ValueError) as e:
            return str(e)
        return None

    @property
    def tzinfo(self) -> tzinfo:
        """The zone the expression is evaluated in (:class:`~actionqueue.errors.
        InvalidPolicyError` when this machine does not know it: see :attr:`unresolved`)."""
        return _zone(self.timezone)

    @property
    def has_seconds(self) -> bool:
        """Whether the expression has the (leading) seconds field."""
        return len(self.expression.split()) == 6

    def total_runs(self) -> int | None:
        return self.max_occurrences

    def kind_wire(self) -> tuple[int, str, str, int | None, int]:
        return (2, self.expression, self.timezone, self.max_occurrences, self.window)

    def next_after(self, after_ms: int) -> int | None:
        """The first occurrence strictly after ``after_ms`` (ms since the epoch), or ``None``.

        Evaluated in :attr:`timezone` (DST-aware); an occurrence at a wall time skipped by a
        DST jump runs at the first valid instant after it, and one at a repeated wall time runs
        once per instant croniter yields (the result is always strictly increasing).
        """
        for ms in self.iter_after(after_ms):
            return ms
        return None

    def iter_after(self, after_ms: int) -> Iterator[int]:
        """Occurrences strictly after ``after_ms``, ascending, as ms since the epoch.

        Occurrences are computed within the range of ``datetime``: there are none past
        the end of year 9999 in the policy's zone, and none after an ``after_ms`` past year
        9999 UTC (:data:`CRON_END_MS`). Raises :class:`~actionqueue.errors.InvalidPolicyError`
        when this machine cannot compute them (:attr:`unresolved`).
        """
        why = self.unresolved
        if why is not None:
            raise InvalidPolicyError(
                f"cannot compute the occurrences of cron {self.expression!r} "
                f"({self.timezone}) on this machine: {why}"
            )
        if after_ms >= CRON_END_MS:
            return
        try:
            start = from_millis(after_ms).astimezone(self.tzinfo)
        except OverflowError:  # past year 9999 in the policy's zone
            return
        it = croniter(self.expression, start, second_at_beginning=True)
        last = after_ms
        while True:
            try:
                nxt: datetime = it.get_next(datetime)
            except (CroniterBadDateError, ValueError, OverflowError):
                return  # no further occurrence (or past the datetime range)
            ms = to_millis(nxt)
            if ms > last:  # guard: never yield a time twice or out of order
                last = ms
                yield ms


#: The first millisecond past the range of ``datetime`` (year 10000, UTC): cron occurrences
#: are computed before it only. (Once and Repeat run times go on to int64 milliseconds.)
CRON_END_MS = 253_402_300_800_000

_ONCE = OncePolicy()
RunPolicy.Once = _ONCE
_ONCE_WIRE = _ONCE.to_wire()


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> tzinfo:
    if name == "UTC":
        return timezone.utc  # needs no tz database
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidPolicyError(
            f"unknown timezone {name!r}: not in this machine's zone database (the system's, "
            "or the tzdata package's); use an IANA name like 'UTC' or 'Europe/Paris', or "
            "update tzdata if the name is a recent one"
        ) from None


def _zone_name(value: object) -> str:
    if isinstance(value, str):
        if not value:
            raise InvalidPolicyError("timezone must be a non-empty IANA name, got ''")
        return value
    if value is timezone.utc:
        return "UTC"
    if isinstance(value, ZoneInfo):
        return value.key
    raise wrong_type("timezone", "an IANA zone name (str) or a zoneinfo.ZoneInfo", value)


@functools.lru_cache(maxsize=1024)
def _check_cron_cached(expression: str) -> str:
    norm = " ".join(expression.split())
    fields = norm.split(" ")
    if norm.startswith("@"):
        if len(fields) != 1:
            raise InvalidPolicyError(f"invalid cron expression {expression!r}: junk after alias")
    elif len(fields) not in (5, 6):
        raise InvalidPolicyError(
            f"invalid cron expression {expression!r}: expected 5 fields "
            "(minute hour day month weekday) or 6 with seconds first, "
            f"got {len(fields)}"
        )
    for f in fields:
        # croniter's 'R' (random) would differ between processes, breaking replay.
        if any(item == "R" or item.startswith("R(") for item in f.split(",")):
            raise InvalidPolicyError(
                f"invalid cron expression {expression!r}: random ('R') fields are not supported"
            )
    try:
        ok = croniter.is_valid(norm, second_at_beginning=True)
    except (CroniterError, ValueError, TypeError):
        ok = False
    if not ok:
        raise InvalidPolicyError(f"invalid cron expression {expression!r}")
    return norm


def _check_cron(expression: object) -> str:
    if not isinstance(expression, str):
        raise wrong_type("cron expression", "a str like '*/5 * * * *'", expression)
    if not expression.strip():
        raise InvalidPolicyError(f"cron expression must not be empty, got {expression!r}")
    return _check_cron_cached(expression)


# A fixed start, so the check is deterministic.
_PROBE_START = datetime(2000, 1, 1, tzinfo=timezone.utc)


@functools.lru_cache(maxsize=1024)
def _check_fires(expression: str, tz: str) -> None:
    # Syntactically valid expressions can still never match ("0 0 30 2 *"); refuse them here
    # rather than deriving zero runs forever.
    try:
        croniter(expression, _PROBE_START.astimezone(_zone(tz)), second_at_beginning=True).get_next(
            float
        )
    except CroniterBadDateError:
        raise InvalidPolicyError(f"cron expression {expression!r} never matches any date") from None
    except (CroniterError, ValueError) as e:  # pragma: no cover - is_valid caught these
        raise InvalidPolicyError(f"invalid cron expression {expression!r}: {e}") from None
