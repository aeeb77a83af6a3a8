"""The nine states of a run (SPEC §4).

``RunState`` is an :class:`enum.IntEnum` whose values are the stable wire values shared with the
Rust core (``rust/model.rs``): they cross the boundary and are written to the log as these
integers, so they must never be renumbered.

Members are spelled in upper case (``RunState.RUNNING``), as Python enums usually are. The
seed's CamelCase spelling (``RunState.Running``) is also available: those are class attributes
bound to the same members (``RunState.Running is RunState.RUNNING``), so code ported from the
seed reads naturally, while iteration, ``RunState.__members__`` and ``RunState["RUNNING"]`` know
only the nine canonical names (use :meth:`RunState.parse` to look up any spelling).
``str(state)`` is the CamelCase label (``"Running"``), which is what histories, error messages
and the Rust core print.

>>> RunState.RUNNING.is_terminal
False
>>> RunState.Completed is RunState.COMPLETED
True
>>> str(RunState.RETRY_WAIT), int(RunState.RETRY_WAIT)
('RetryWait', 4)
"""

from __future__ import annotations

from typing import ClassVar

from actionqueue.core._enum import WireEnum
from actionqueue.errors import ValidationError, WrongTypeError

__all__ = ["TERMINAL_STATES", "RunState", "is_terminal"]


class RunState(WireEnum):
    """The state of a run. Values are the wire values 0..8."""

    SCHEDULED = 0
    READY = 1
    LEASED = 2
    RUNNING = 3
    RETRY_WAIT = 4
    SUSPENDED = 5
    COMPLETED = 6
    FAILED = 7
    CANCELED = 8

    # Seed spelling: plain class attributes bound to the members above right after the class
    # is built (see the end of this module). Declared here, not assigned, so that they are not
    # enum aliases: type checkers then see them as `RunState` values and exhaustiveness checks
    # over the nine canonical members keep working.
    Scheduled: ClassVar[RunState]
    Ready: ClassVar[RunState]
    Leased: ClassVar[RunState]
    Running: ClassVar[RunState]
    RetryWait: ClassVar[RunState]
    Suspended: ClassVar[RunState]
    Completed: ClassVar[RunState]
    Failed: ClassVar[RunState]
    Canceled: ClassVar[RunState]

    @property
    def label(self) -> str:
        """The CamelCase name used in the seed, in histories and by the Rust core."""
        return _LABELS[self]

    @property
    def is_terminal(self) -> bool:
        """Whether the run can never change state again (Completed, Failed, Canceled)."""
        return self in TERMINAL_STATES

    def __str__(self) -> str:
        return _LABELS[self]

    def __format__(self, format_spec: str) -> str:
        # IntEnum formats as the number by default; a state in a message should read as a name.
        return format(_LABELS[self], format_spec)

    @classmethod
    def from_wire(cls, value: object, field: str = "run state") -> RunState:
        """The state whose wire value is ``value`` (an ``int`` 0..8).

        ``field`` names the value in error messages.

        Raises :class:`~actionqueue.errors.ValidationError` for an out-of-range int and
        :class:`~actionqueue.errors.WrongTypeError` for anything that is not an int.
        """
        if isinstance(value, cls):
            return value
        if not isinstance(value, int) or isinstance(value, bool):
            raise WrongTypeError(
                f"{field} must be a RunState or an int wire value 0..8, "
                f"got {type(value).__name__} {value!r}"
            )
        # Explicit range check: a negative index would silently pick a member from the end.
        if 0 <= value < len(_BY_VALUE):
            return _BY_VALUE[value]
        raise ValidationError(f"{field} must be a run state wire value 0..8, got {value!r}")

    @classmethod
    def parse(cls, name: str | int | RunState) -> RunState:
        """Look a state up by wire value or by name in any spelling.

        Accepts ``"running"``, ``"RUNNING"``, ``"Running"``, ``"retry_wait"``, ``"RetryWait"``,
        ``"retry-wait"`` and the like (handy for CLIs and config files).

        >>> RunState.parse("retry-wait")
        <RunState.RETRY_WAIT: 4>
        """
        if isinstance(name, int):
            return cls.from_wire(name)
        if not isinstance(name, str):
            raise WrongTypeError(
                f"run state must be a name or an int, got {type(name).__name__} {name!r}"
            )
        key = name.replace("_", "").replace("-", "").replace(" ", "").lower()
        state = _BY_FOLDED_NAME.get(key)
        if state is None:
            known = ", ".join(s.label for s in cls)
            raise ValidationError(f"unknown run state {name!r}; expected one of {known}")
        return state


_LABELS: dict[RunState, str] = {
    RunState.SCHEDULED: "Scheduled",
    RunState.READY: "Ready",
    RunState.LEASED: "Leased",
    RunState.RUNNING: "Running",
    RunState.RETRY_WAIT: "RetryWait",
    RunState.SUSPENDED: "Suspended",
    RunState.COMPLETED: "Completed",
    RunState.FAILED: "Failed",
    RunState.CANCELED: "Canceled",
}

# Indexed by wire value; a tuple lookup is the cheapest int -> member conversion.
for _state, _label in _LABELS.items():
    setattr(RunState, _label, _state)
del _state, _label

_BY_VALUE: tuple[RunState, ...] = tuple(sorted(RunState))

_BY_FOLDED_NAME: dict[str, RunState] = {label.lower(): s for s, label in _LABELS.items()}

#: The states a run never leaves.
TERMINAL_STATES: frozenset[RunState] = frozenset(
    {RunState.COMPLETED, RunState.FAILED, RunState.CANCELED}
)


def is_terminal(state: RunState) -> bool:
    """Whether ``state`` is terminal (Completed, Failed or Canceled)."""
    return state in TERMINAL_STATES
