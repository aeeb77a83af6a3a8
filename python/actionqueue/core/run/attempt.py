"""Attempt outcomes and the retry decision (SPEC §4).

An *attempt* is one try of a run. When it finishes, :func:`decide` says which state the run
moves to. Retries are further attempts of the same run, never new runs.

``AttemptOutcome`` values are the stable wire values shared with the Rust core
(``rust/model.rs``). As with :class:`~actionqueue.core.run.state.RunState`, members are upper
case and the seed's CamelCase spelling names the same members
(``AttemptOutcome.RetryableFailure is AttemptOutcome.RETRYABLE_FAILURE``).

>>> decide(AttemptOutcome.TIMEOUT, counted_attempts=1, max_attempts=3)
<RunState.RETRY_WAIT: 4>
>>> decide(AttemptOutcome.TIMEOUT, counted_attempts=3, max_attempts=3)
<RunState.FAILED: 7>
"""

from __future__ import annotations

from typing import ClassVar, NoReturn, Protocol

from actionqueue.core._enum import WireEnum
from actionqueue.core.run.state import RunState
from actionqueue.errors import ValidationError, WrongTypeError

__all__ = ["AttemptOutcome", "RetryClassification", "counts_toward_cap", "decide"]


class AttemptOutcome(WireEnum):
    """How one attempt ended. Values are the wire values 0..6."""

    #: The handler returned; output bytes are optional.
    SUCCESS = 0
    #: The handler failed in a way worth retrying (error text is kept).
    RETRYABLE_FAILURE = 1
    #: The handler failed in a way retrying cannot fix (error text is kept).
    TERMINAL_FAILURE = 2
    #: The attempt ran past the task's timeout.
    TIMEOUT = 3
    #: The handler asked to park the run; does **not** count toward ``max_attempts``.
    SUSPENDED = 4
    #: The runtime could not learn the outcome (lease expired, process crashed).
    LOST = 5
    #: The run was canceled while this attempt was open (recorded by the reducer).
    CANCELED = 6

    # Seed spelling: class attributes bound to the members after the class is built (not enum
    # aliases, so type checkers keep exhaustiveness over the canonical members).
    Success: ClassVar[AttemptOutcome]
    RetryableFailure: ClassVar[AttemptOutcome]
    TerminalFailure: ClassVar[AttemptOutcome]
    Timeout: ClassVar[AttemptOutcome]
    Suspended: ClassVar[AttemptOutcome]
    Lost: ClassVar[AttemptOutcome]
    Canceled: ClassVar[AttemptOutcome]

    @property
    def label(self) -> str:
        """The CamelCase name used in the seed and by the Rust core."""
        return _LABELS[self]

    @property
    def counts_toward_cap(self) -> bool:
        """Whether an attempt with this outcome counts toward ``max_attempts``."""
        return self is not _SUSPENDED

    def __str__(self) -> str:
        return _LABELS[self]

    def __format__(self, format_spec: str) -> str:
        return format(_LABELS[self], format_spec)

    @classmethod
    def from_wire(cls, value: object, field: str = "attempt outcome") -> AttemptOutcome:
        """The outcome whose wire value is ``value`` (an ``int`` 0..6)."""
        if isinstance(value, cls):
            return value
        if not isinstance(value, int) or isinstance(value, bool):
            raise WrongTypeError(
                f"{field} must be an AttemptOutcome or an int wire value 0..6, "
                f"got {type(value).__name__} {value!r}"
            )
        if 0 <= value < len(_BY_VALUE):
            return _BY_VALUE[value]
        raise ValidationError(f"{field} must be an attempt outcome wire value 0..6, got {value!r}")


_LABELS: dict[AttemptOutcome, str] = {
    AttemptOutcome.SUCCESS: "Success",
    AttemptOutcome.RETRYABLE_FAILURE: "RetryableFailure",
    AttemptOutcome.TERMINAL_FAILURE: "TerminalFailure",
    AttemptOutcome.TIMEOUT: "Timeout",
    AttemptOutcome.SUSPENDED: "Suspended",
    AttemptOutcome.LOST: "Lost",
    AttemptOutcome.CANCELED: "Canceled",
}

for _outcome, _label in _LABELS.items():
    setattr(AttemptOutcome, _label, _outcome)
del _outcome, _label

_SUSPENDED = AttemptOutcome.SUSPENDED

_BY_VALUE: tuple[AttemptOutcome, ...] = tuple(sorted(AttemptOutcome))


def counts_toward_cap(outcome: AttemptOutcome) -> bool:
    """Whether an attempt that ended with ``outcome`` counts toward ``max_attempts``.

    Every outcome counts except Suspended: a handler that parks its run has not used up a try.
    """
    return outcome is not _SUSPENDED


class RetryClassification(Protocol):
    """Which non-error outcomes are retried; satisfied by the task constraints' ``RetryOn``.

    Any object with boolean ``timeout`` and ``lost`` attributes works.
    """

    @property
    def timeout(self) -> bool:
        """Whether a timed-out attempt may be retried."""
        ...

    @property
    def lost(self) -> bool:
        """Whether a lost attempt (expired lease, crashed process) may be retried."""
        ...


def decide(
    outcome: AttemptOutcome,
    counted_attempts: int,
    max_attempts: int,
    retry_on: RetryClassification | None = None,
) -> RunState:
    """The state a Running run moves to after an attempt ended with ``outcome``.

    ``counted_attempts`` is the number of attempts of this run that count toward the cap,
    **including the one that just ended** (an attempt is counted when it starts; a Suspended
    one is given back). ``max_attempts`` is the task's cap (>= 1). ``retry_on`` (the task's
    ``RetryOn``, or anything with boolean ``timeout`` and ``lost``) can make Timeout or Lost
    non-retryable; by default both are retried.

    ====================================  ================================================
    outcome                               next state
    ====================================  ================================================
    Success                               Completed
    TerminalFailure                       Failed
    RetryableFailure                      RetryWait if counted < max, else Failed
    Timeout / Lost                        as RetryableFailure, or Failed when ``retry_on``
                                          says that kind is not retryable
    Suspended                             Suspended
    Canceled                              Canceled
    ====================================  ================================================

    Which *exceptions* are terminal is decided earlier, when the runtime maps a handler's
    exception to RetryableFailure or TerminalFailure.
    """
    if (
        type(counted_attempts) is not int
        or type(max_attempts) is not int
        or counted_attempts < 0
        or max_attempts < 1
    ):
        _bad_counts(counted_attempts, max_attempts)
    fixed = _FIXED.get(outcome)
    if fixed is not None:
        return fixed
    if outcome is _RETRYABLE_FAILURE:
        retryable = True
    elif outcome is _TIMEOUT:
        retryable = retry_on is None or bool(retry_on.timeout)
    elif outcome is _LOST:
        retryable = retry_on is None or bool(retry_on.lost)
    else:
        # Plain ints and foreign values end up here; convert once and decide again.
        return decide(
            AttemptOutcome.from_wire(outcome, "outcome"), counted_attempts, max_attempts, retry_on
        )
    if retryable and counted_attempts < max_attempts:
        return _RETRY_WAIT
    return _FAILED


def _bad_counts(counted_attempts: object, max_attempts: object) -> NoReturn:
    for name, value in (("counted_attempts", counted_attempts), ("max_attempts", max_attempts)):
        if type(value) is not int:
            raise WrongTypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if counted_attempts < 0:  # type: ignore[operator]
        raise ValidationError(f"counted_attempts must be >= 0, got {counted_attempts}")
    raise ValidationError(f"max_attempts must be >= 1, got {max_attempts}")


# Module-level constants: reading an enum member off its class costs ~100 ns on CPython 3.11,
# and decide() runs once per finished attempt.
_RETRYABLE_FAILURE = AttemptOutcome.RETRYABLE_FAILURE
_TIMEOUT = AttemptOutcome.TIMEOUT
_LOST = AttemptOutcome.LOST
_RETRY_WAIT = RunState.RETRY_WAIT
_FAILED = RunState.FAILED
# Outcomes whose next state does not depend on counts or classification.
_FIXED: dict[AttemptOutcome, RunState] = {
    AttemptOutcome.SUCCESS: RunState.COMPLETED,
    AttemptOutcome.TERMINAL_FAILURE: RunState.FAILED,
    AttemptOutcome.SUSPENDED: RunState.SUSPENDED,
    AttemptOutcome.CANCELED: RunState.CANCELED,
}
