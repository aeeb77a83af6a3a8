"""Mutation commands and durability policies (SPEC §5).

Every durable state change is one of these commands, handed to the mutation authority
(``actionqueue.storage.mutation.StorageMutationAuthority``), alone or in an atomic batch. A
command is an immutable, typed value that validates its own fields on construction; whether it
is *acceptable now* (the run is in the expected state, the lease is held, ...) is decided by the
authority, which dry-runs the replay reducer.

Each command carries:

* ``sequence`` — the WAL sequence it expects to get (an ``int >= 1``), or ``None`` to take the
  next one. The authority refuses a command whose sequence is not the next one.
* ``timestamp`` — when it happened, ``int`` milliseconds since the Unix epoch (``>= 0``).

``to_wire()`` gives the plain tuple of ``docs/DESIGN.md`` (event tag first; the sequence is
*not* part of it — the authority passes sequences separately), and ``from_wire()`` is its
inverse. ``MutationCommand`` is the common base class; it also offers the seed's spelling, in
which each command is wrapped in a ``MutationCommand`` variant::

    authority.submit_command(
        MutationCommand.TaskCreate(TaskCreateCommand(1, task_spec, 0)),
        DurabilityPolicy.Immediate,
    )

Here ``MutationCommand.TaskCreate(cmd)`` checks that ``cmd`` is a ``TaskCreateCommand`` and
returns it unchanged: the command classes already *are* the variants, so no wrapper is needed.

Field order of every constructor: ``sequence``, the event's fields in wire order, then
``timestamp``; optional fields are keyword-only.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn, TypeVar

from actionqueue.core.ids import AttemptId, RunId, TaskId
from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.core.run.state import RunState
from actionqueue.core.run.transitions import validate_transition
from actionqueue.core.task.task_spec import TaskSpec
from actionqueue.errors import ValidationError, WrongTypeError

__all__ = [
    "AttemptFinishCommand",
    "AttemptStartCommand",
    "DurabilityPolicy",
    "EnginePauseCommand",
    "EngineResumeCommand",
    "LeaseAcquireCommand",
    "LeaseExpireCommand",
    "LeaseHeartbeatCommand",
    "LeaseReleaseCommand",
    "MutationCommand",
    "PruneCommand",
    "RunCreateCommand",
    "RunStateTransitionCommand",
    "TaskCancelCommand",
    "TaskCreateCommand",
]

_I64_MAX = 2**63 - 1
_U32_MAX = 2**32 - 1

_C = TypeVar("_C", bound="MutationCommand")


class DurabilityPolicy(enum.Enum):
    """When a submitted command counts as done.

    * ``IMMEDIATE`` — the call returns only after the record is on stable storage (fsync;
      concurrent callers share one sync through group commit).
    * ``DEFERRED`` — the record is written to the OS and synced later: by the next Immediate
      commit, an explicit ``flush()``, ``close()``, or the background sync interval that bounds
      the loss window.

    The seed's spelling ``DurabilityPolicy.Immediate`` / ``.Deferred`` names the same members.
    """

    IMMEDIATE = "immediate"
    DEFERRED = "deferred"

    # Seed spelling: class attributes bound to the members below the class (not enum aliases,
    # so type checkers keep exhaustiveness over the two canonical members).
    Immediate: ClassVar[DurabilityPolicy]
    Deferred: ClassVar[DurabilityPolicy]

    @classmethod
    def parse(cls, value: DurabilityPolicy | str) -> DurabilityPolicy:
        """Accept a member or its name in any case (``"immediate"``, ``"Deferred"``)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            member = cls.__members__.get(value.strip().upper())
            if member is not None:
                return member
            raise ValidationError(
                f"durability policy must be 'immediate' or 'deferred', got {value!r}"
            )
        raise WrongTypeError(
            f"durability policy must be a DurabilityPolicy or str, "
            f"got {type(value).__name__} {value!r}"
        )


DurabilityPolicy.Immediate = DurabilityPolicy.IMMEDIATE
DurabilityPolicy.Deferred = DurabilityPolicy.DEFERRED


# --- validation helpers ----------------------------------------------------------------------
# The happy path of each check is one or two type()/comparison tests: commands are built on
# the runtime's hot path. Message formatting happens only when a check fails.


def _type_error(cmd: str, name: str, expected: str, value: object, hint: str = "") -> NoReturn:
    raise WrongTypeError(
        f"{cmd}.{name} must be {expected}, got {type(value).__name__} {value!r}{hint}"
    )


def _check_sequence(cmd: str, value: object) -> None:
    if value is None or (type(value) is int and value >= 1):
        return
    if type(value) is not int:
        _type_error(cmd, "sequence", "an int >= 1 or None", value)
    raise ValidationError(
        f"{cmd}.sequence must be >= 1 (or None to take the next sequence), got {value}"
    )


def _check_time(cmd: str, name: str, value: object) -> None:
    if type(value) is int and 0 <= value <= _I64_MAX:
        return
    if type(value) is not int:
        _type_error(
            cmd,
            name,
            "an int (milliseconds since the Unix epoch)",
            value,
            "; convert seconds with int(seconds * 1000)",
        )
    raise ValidationError(
        f"{cmd}.{name} must be milliseconds since the Unix epoch in 0..{_I64_MAX}, got {value}"
    )


def _check_opt_time(cmd: str, name: str, value: object) -> None:
    if value is not None:
        _check_time(cmd, name, value)


def _check_id(cmd: str, name: str, value: object, id_type: type[Any]) -> None:
    if type(value) is not id_type:
        _type_error(
            cmd,
            name,
            f"an {id_type.__name__}" if id_type is AttemptId else f"a {id_type.__name__}",
            value,
            f"; wrap the value with {id_type.__name__}(...)",
        )


def _check_owner(cmd: str, value: object) -> None:
    if type(value) is str and value:
        return
    if not isinstance(value, str):
        _type_error(cmd, "owner", "a non-empty str", value)
    if not value:
        raise ValidationError(f"{cmd}.owner must be a non-empty string, got {value!r}")


def _check_opt_str(cmd: str, name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        _type_error(cmd, name, "a str or None", value)


def _check_state(cmd: str, name: str, value: object) -> None:
    if not isinstance(value, RunState):
        _type_error(cmd, name, "a RunState", value, "; use RunState(value) to convert a wire value")


def _wire(wire: object, tag: int, n: int, cmd: str) -> Sequence[Any]:
    """Check the shape of a wire tuple for the command with ``tag`` and ``n`` items."""
    if not isinstance(wire, (tuple, list)):
        raise WrongTypeError(
            f"{cmd} wire value must be a tuple, got {type(wire).__name__} {wire!r:.200}"
        )
    if len(wire) != n or wire[0] != tag:
        raise ValidationError(
            f"{cmd} wire value must be a tuple of {n} items starting with tag {tag} "
            f"(see docs/DESIGN.md), got {wire!r:.200}"
        )
    return wire


def _seed_wrap(cmd: object, expected: type[_C]) -> _C:
    if not isinstance(cmd, expected):
        raise WrongTypeError(
            f"MutationCommand.{expected.KIND} takes a {expected.__name__}, "
            f"got {type(cmd).__name__} {cmd!r:.200}"
        )
    return cmd


# --- the commands ----------------------------------------------------------------------------


class MutationCommand:
    """Base class of every mutation command (one subclass per WAL event kind).

    ``MutationCommand.from_wire(t)`` rebuilds the right command from any event tuple. The
    static methods named after the event kinds (``MutationCommand.TaskCreate(cmd)``...) exist
    for the seed's spelling; they type-check their argument and return it.
    """

    __slots__ = ()

    #: The event tag (the ``Event`` variant index in ``rust/event.rs``).
    TAG: ClassVar[int]
    #: The event kind name, as the Rust core spells it.
    KIND: ClassVar[str]

    sequence: int | None
    timestamp: int

    def to_wire(self) -> tuple[Any, ...]:
        """The event tuple of ``docs/DESIGN.md`` (tag first; no sequence)."""
        raise NotImplementedError

    @classmethod
    def from_wire(cls: type[_C], wire: Sequence[Any], sequence: int | None = None) -> _C:
        """Rebuild a command from its event tuple (``sequence`` is not part of the tuple).

        On ``MutationCommand`` itself this dispatches on the tag; on a subclass the tag must be
        that subclass's.
        """
        if not isinstance(wire, (tuple, list)) or not wire:
            raise WrongTypeError(
                f"a command wire value must be a non-empty tuple, "
                f"got {type(wire).__name__} {wire!r:.200}"
            )
        tag = wire[0]
        klass = _BY_TAG.get(tag) if type(tag) is int else None
        if klass is None:
            raise ValidationError(
                f"unknown command tag {tag!r}; known tags are 0..{len(_BY_TAG) - 1} "
                "(see docs/DESIGN.md)"
            )
        if cls is not MutationCommand and klass is not cls:
            raise ValidationError(
                f"wire value with tag {tag} is a {klass.__name__}, not a {cls.__name__}"
            )
        return klass._from_wire(wire, sequence)  # type: ignore[return-value]

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> MutationCommand:
        raise NotImplementedError

    def with_sequence(self: _C, sequence: int | None) -> _C:
        """A copy of this command expecting ``sequence`` instead."""
        return dataclasses.replace(self, sequence=sequence)  # type: ignore[type-var]

    # Seed spelling: MutationCommand.<Kind>(command) -> command.
    @staticmethod
    def TaskCreate(cmd: TaskCreateCommand) -> TaskCreateCommand:
        """Seed spelling: returns ``cmd`` after checking it is a :class:`TaskCreateCommand`."""
        return _seed_wrap(cmd, TaskCreateCommand)

    @staticmethod
    def RunCreate(cmd: RunCreateCommand) -> RunCreateCommand:
        """Seed spelling: returns ``cmd`` after checking it is a :class:`RunCreateCommand`."""
        return _seed_wrap(cmd, RunCreateCommand)

    @staticmethod
    def RunStateTransition(cmd: RunStateTransitionCommand) -> RunStateTransitionCommand:
        """Seed spelling: returns ``cmd`` after checking it is a
        :class:`RunStateTransitionCommand`."""
        return _seed_wrap(cmd, RunStateTransitionCommand)

    @staticmethod
    def AttemptStart(cmd: AttemptStartCommand) -> AttemptStartCommand:
        """Seed spelling: returns ``cmd`` after checking it is an :class:`AttemptStartCommand`."""
        return _seed_wrap(cmd, AttemptStartCommand)

    @staticmethod
    def AttemptFinish(cmd: AttemptFinishCommand) -> AttemptFinishCommand:
        """Seed spelling: returns ``cmd`` after checking it is an :class:`AttemptFinishCommand`."""
        return _seed_wrap(cmd, AttemptFinishCommand)

    @staticmethod
    def LeaseAcquire(cmd: LeaseAcquireCommand) -> LeaseAcquireCommand:
        """Seed spelling: returns ``cmd`` after checking it is a :class:`LeaseAcquireCommand`."""
        return _seed_wrap(cmd, LeaseAcquireCommand)

    @staticmethod
    def LeaseHeartbeat(cmd: LeaseHeartbeatCommand) -> LeaseHeartbeatCommand:
        """Seed spelling: returns ``cmd`` after checking it is a :class:`LeaseHeartbeatCommand`."""
        return _seed_wrap(cmd, LeaseHeartbeatCommand)

    @staticmethod
    def LeaseExpire(cmd: LeaseExpireCommand) -> LeaseExpireCommand:
        """Seed spelling: returns ``cmd`` after checking it is a :class:`LeaseExpireCommand`."""
        return _seed_wrap(cmd, LeaseExpireCommand)

    @staticmethod
    def LeaseRelease(cmd: LeaseReleaseCommand) -> LeaseReleaseCommand:
        """Seed spelling: returns ``cmd`` after checking it is a :class:`LeaseReleaseCommand`."""
        return _seed_wrap(cmd, LeaseReleaseCommand)

    @staticmethod
    def TaskCancel(cmd: TaskCancelCommand) -> TaskCancelCommand:
        """Seed spelling: returns ``cmd`` after checking it is a :class:`TaskCancelCommand`."""
        return _seed_wrap(cmd, TaskCancelCommand)

    @staticmethod
    def EnginePause(cmd: EnginePauseCommand) -> EnginePauseCommand:
        """Seed spelling: returns ``cmd`` after checking it is an :class:`EnginePauseCommand`."""
        return _seed_wrap(cmd, EnginePauseCommand)

    @staticmethod
    def EngineResume(cmd: EngineResumeCommand) -> EngineResumeCommand:
        """Seed spelling: returns ``cmd`` after checking it is an :class:`EngineResumeCommand`."""
        return _seed_wrap(cmd, EngineResumeCommand)

    @staticmethod
    def Prune(cmd: PruneCommand) -> PruneCommand:
        """Seed spelling: returns ``cmd`` after checking it is a :class:`PruneCommand`."""
        return _seed_wrap(cmd, PruneCommand)


@dataclass(frozen=True, slots=True, init=False)
class TaskCreateCommand(MutationCommand):
    """Create a task (its runs are created by separate ``RunCreateCommand`` s, usually in the
    same atomic batch).

    ``schedule_origin`` is the time the task's runs are derived from (a Once run is due at
    it); it defaults to ``timestamp``.

    >>> from actionqueue.core.ids import TaskId
    >>> from actionqueue.core.task.run_policy import RunPolicy
    >>> from actionqueue.core.task.task_spec import TaskSpec
    >>> spec = TaskSpec(TaskId.new(), b"payload", RunPolicy.once())
    >>> cmd = TaskCreateCommand(1, spec, 1_700_000_000_000)
    >>> cmd.schedule_origin
    1700000000000
    >>> TaskCreateCommand.from_wire(cmd.to_wire(), sequence=1) == cmd
    True
    """

    TAG: ClassVar[int] = 0
    KIND: ClassVar[str] = "TaskCreate"

    sequence: int | None
    task_spec: TaskSpec
    timestamp: int
    schedule_origin: int

    def __init__(
        self,
        sequence: int | None,
        task_spec: TaskSpec,
        timestamp: int,
        *,
        schedule_origin: int | None = None,
    ) -> None:
        _check_sequence("TaskCreateCommand", sequence)
        if not isinstance(task_spec, TaskSpec):
            _type_error("TaskCreateCommand", "task_spec", "a TaskSpec", task_spec)
        _check_time("TaskCreateCommand", "timestamp", timestamp)
        if schedule_origin is None:
            schedule_origin = timestamp
        else:
            _check_time("TaskCreateCommand", "schedule_origin", schedule_origin)
        setattr_ = object.__setattr__
        setattr_(self, "sequence", sequence)
        setattr_(self, "task_spec", task_spec)
        setattr_(self, "timestamp", timestamp)
        setattr_(self, "schedule_origin", schedule_origin)

    @property
    def task_id(self) -> TaskId:
        """The id of the task being created (``task_spec.task_id``)."""
        return self.task_spec.task_id

    def to_wire(self) -> tuple[Any, ...]:
        return (0, self.task_spec.to_wire(), self.schedule_origin, self.timestamp)

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> TaskCreateCommand:
        _, spec, origin, at = _wire(wire, 0, 4, "TaskCreateCommand")
        return cls(sequence, TaskSpec.from_wire(spec), at, schedule_origin=origin)


@dataclass(frozen=True, slots=True)
class RunCreateCommand(MutationCommand):
    """Create run number ``ordinal`` (0-based, per task) of a task, in state Scheduled."""

    TAG: ClassVar[int] = 1
    KIND: ClassVar[str] = "RunCreate"

    sequence: int | None
    run_id: RunId
    task_id: TaskId
    ordinal: int
    scheduled_at: int
    timestamp: int

    def __post_init__(self) -> None:
        _check_sequence("RunCreateCommand", self.sequence)
        _check_id("RunCreateCommand", "run_id", self.run_id, RunId)
        _check_id("RunCreateCommand", "task_id", self.task_id, TaskId)
        ordinal = self.ordinal
        if not (type(ordinal) is int and 0 <= ordinal <= _U32_MAX):
            if type(ordinal) is not int:
                _type_error("RunCreateCommand", "ordinal", "an int", ordinal)
            raise ValidationError(
                f"RunCreateCommand.ordinal must be in 0..{_U32_MAX} (runs of a task are "
                f"numbered from 0), got {ordinal}"
            )
        _check_time("RunCreateCommand", "scheduled_at", self.scheduled_at)
        _check_time("RunCreateCommand", "timestamp", self.timestamp)

    def to_wire(self) -> tuple[Any, ...]:
        return (
            1,
            self.run_id.bytes,
            self.task_id.bytes,
            self.ordinal,
            self.scheduled_at,
            self.timestamp,
        )

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> RunCreateCommand:
        _, run_id, task_id, ordinal, scheduled_at, at = _wire(wire, 1, 6, "RunCreateCommand")
        return cls(
            sequence,
            RunId.from_bytes(run_id),
            TaskId.from_bytes(task_id),
            ordinal,
            scheduled_at,
            at,
        )


@dataclass(frozen=True, slots=True)
class RunStateTransitionCommand(MutationCommand):
    """Move a run from ``previous_state`` (which must be its current state) to ``new_state``.

    The pair must be legal per the transition table (checked here, raising
    :class:`~actionqueue.errors.InvalidTransitionError`). ``not_before`` is required when
    entering RetryWait (when the run may become Ready again). ``reason`` is free text kept in
    the run's history.
    """

    TAG: ClassVar[int] = 2
    KIND: ClassVar[str] = "RunStateTransition"

    sequence: int | None
    run_id: RunId
    previous_state: RunState
    new_state: RunState
    timestamp: int
    not_before: int | None = field(default=None, kw_only=True)
    reason: str | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        _check_sequence("RunStateTransitionCommand", self.sequence)
        _check_id("RunStateTransitionCommand", "run_id", self.run_id, RunId)
        _check_state("RunStateTransitionCommand", "previous_state", self.previous_state)
        _check_state("RunStateTransitionCommand", "new_state", self.new_state)
        validate_transition(self.previous_state, self.new_state)
        _check_time("RunStateTransitionCommand", "timestamp", self.timestamp)
        if self.not_before is None:
            if self.new_state is RunState.RETRY_WAIT:
                raise ValidationError(
                    f"RunStateTransitionCommand.not_before is required when entering RetryWait "
                    f"(when the run may become Ready again), got None for run {self.run_id}"
                )
        else:
            _check_time("RunStateTransitionCommand", "not_before", self.not_before)
        _check_opt_str("RunStateTransitionCommand", "reason", self.reason)

    def to_wire(self) -> tuple[Any, ...]:
        return (
            2,
            self.run_id.bytes,
            int(self.previous_state),
            int(self.new_state),
            self.not_before,
            self.reason,
            self.timestamp,
        )

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> RunStateTransitionCommand:
        _, run_id, src, dst, not_before, reason, at = _wire(wire, 2, 7, "RunStateTransitionCommand")
        return cls(
            sequence,
            RunId.from_bytes(run_id),
            RunState.from_wire(src, "RunStateTransitionCommand.previous_state"),
            RunState.from_wire(dst, "RunStateTransitionCommand.new_state"),
            at,
            not_before=not_before,
            reason=reason,
        )


@dataclass(frozen=True, slots=True)
class AttemptStartCommand(MutationCommand):
    """Open attempt ``attempt_id`` of a Running run that has no open attempt."""

    TAG: ClassVar[int] = 3
    KIND: ClassVar[str] = "AttemptStart"

    sequence: int | None
    run_id: RunId
    attempt_id: AttemptId
    timestamp: int

    def __post_init__(self) -> None:
        _check_sequence("AttemptStartCommand", self.sequence)
        _check_id("AttemptStartCommand", "run_id", self.run_id, RunId)
        _check_id("AttemptStartCommand", "attempt_id", self.attempt_id, AttemptId)
        _check_time("AttemptStartCommand", "timestamp", self.timestamp)

    def to_wire(self) -> tuple[Any, ...]:
        return (3, self.run_id.bytes, self.attempt_id.bytes, self.timestamp)

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> AttemptStartCommand:
        _, run_id, attempt_id, at = _wire(wire, 3, 4, "AttemptStartCommand")
        return cls(sequence, RunId.from_bytes(run_id), AttemptId.from_bytes(attempt_id), at)


@dataclass(frozen=True, slots=True)
class AttemptFinishCommand(MutationCommand):
    """Close the open attempt ``attempt_id`` with its ``outcome``.

    ``error`` is the failure text (kept durably); ``output`` the handler's result bytes.
    """

    TAG: ClassVar[int] = 4
    KIND: ClassVar[str] = "AttemptFinish"

    sequence: int | None
    run_id: RunId
    attempt_id: AttemptId
    outcome: AttemptOutcome
    timestamp: int
    error: str | None = field(default=None, kw_only=True)
    output: bytes | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        _check_sequence("AttemptFinishCommand", self.sequence)
        _check_id("AttemptFinishCommand", "run_id", self.run_id, RunId)
        _check_id("AttemptFinishCommand", "attempt_id", self.attempt_id, AttemptId)
        if not isinstance(self.outcome, AttemptOutcome):
            _type_error(
                "AttemptFinishCommand",
                "outcome",
                "an AttemptOutcome",
                self.outcome,
                "; use AttemptOutcome(value) to convert a wire value",
            )
        _check_time("AttemptFinishCommand", "timestamp", self.timestamp)
        _check_opt_str("AttemptFinishCommand", "error", self.error)
        if self.output is not None and type(self.output) is not bytes:
            _type_error(
                "AttemptFinishCommand",
                "output",
                "bytes or None",
                self.output,
                "; convert with bytes(...)",
            )

    def to_wire(self) -> tuple[Any, ...]:
        return (
            4,
            self.run_id.bytes,
            self.attempt_id.bytes,
            int(self.outcome),
            self.error,
            self.output,
            self.timestamp,
        )

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> AttemptFinishCommand:
        _, run_id, attempt_id, outcome, error, output, at = _wire(
            wire, 4, 7, "AttemptFinishCommand"
        )
        return cls(
            sequence,
            RunId.from_bytes(run_id),
            AttemptId.from_bytes(attempt_id),
            AttemptOutcome.from_wire(outcome, "AttemptFinishCommand.outcome"),
            at,
            error=error,
            # The Rust side may hand back a list of ints or a bytearray for Vec<u8>.
            output=None if output is None else bytes(output),
        )


@dataclass(frozen=True, slots=True)
class LeaseAcquireCommand(MutationCommand):
    """Grant ``owner`` a lease on a Leased run (that has none) until ``expires_at``.

    ``expires_at`` must be later than ``timestamp``.
    """

    TAG: ClassVar[int] = 5
    KIND: ClassVar[str] = "LeaseAcquire"

    sequence: int | None
    run_id: RunId
    owner: str
    expires_at: int
    timestamp: int

    def __post_init__(self) -> None:
        _check_sequence("LeaseAcquireCommand", self.sequence)
        _check_id("LeaseAcquireCommand", "run_id", self.run_id, RunId)
        _check_owner("LeaseAcquireCommand", self.owner)
        _check_time("LeaseAcquireCommand", "expires_at", self.expires_at)
        _check_time("LeaseAcquireCommand", "timestamp", self.timestamp)
        if self.expires_at <= self.timestamp:
            raise ValidationError(
                f"LeaseAcquireCommand.expires_at must be later than timestamp "
                f"{self.timestamp}, got {self.expires_at}; a lease needs a positive duration"
            )

    def to_wire(self) -> tuple[Any, ...]:
        return (5, self.run_id.bytes, self.owner, self.expires_at, self.timestamp)

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> LeaseAcquireCommand:
        _, run_id, owner, expires_at, at = _wire(wire, 5, 5, "LeaseAcquireCommand")
        return cls(sequence, RunId.from_bytes(run_id), owner, expires_at, at)


@dataclass(frozen=True, slots=True)
class LeaseHeartbeatCommand(MutationCommand):
    """Extend ``owner``'s lease to ``expires_at`` (never shortens: the later expiry wins)."""

    TAG: ClassVar[int] = 6
    KIND: ClassVar[str] = "LeaseHeartbeat"

    sequence: int | None
    run_id: RunId
    owner: str
    expires_at: int
    timestamp: int

    def __post_init__(self) -> None:
        _check_sequence("LeaseHeartbeatCommand", self.sequence)
        _check_id("LeaseHeartbeatCommand", "run_id", self.run_id, RunId)
        _check_owner("LeaseHeartbeatCommand", self.owner)
        _check_time("LeaseHeartbeatCommand", "expires_at", self.expires_at)
        _check_time("LeaseHeartbeatCommand", "timestamp", self.timestamp)

    def to_wire(self) -> tuple[Any, ...]:
        return (6, self.run_id.bytes, self.owner, self.expires_at, self.timestamp)

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> LeaseHeartbeatCommand:
        _, run_id, owner, expires_at, at = _wire(wire, 6, 5, "LeaseHeartbeatCommand")
        return cls(sequence, RunId.from_bytes(run_id), owner, expires_at, at)


@dataclass(frozen=True, slots=True)
class LeaseExpireCommand(MutationCommand):
    """Record that ``owner``'s lease ran out (accepted only when ``timestamp >= expires_at``).

    It removes the lease only; returning the run to Ready is a separate transition (usually in
    the same batch) so the history says why.
    """

    TAG: ClassVar[int] = 7
    KIND: ClassVar[str] = "LeaseExpire"

    sequence: int | None
    run_id: RunId
    owner: str
    timestamp: int

    def __post_init__(self) -> None:
        _check_sequence("LeaseExpireCommand", self.sequence)
        _check_id("LeaseExpireCommand", "run_id", self.run_id, RunId)
        _check_owner("LeaseExpireCommand", self.owner)
        _check_time("LeaseExpireCommand", "timestamp", self.timestamp)

    def to_wire(self) -> tuple[Any, ...]:
        return (7, self.run_id.bytes, self.owner, self.timestamp)

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> LeaseExpireCommand:
        _, run_id, owner, at = _wire(wire, 7, 4, "LeaseExpireCommand")
        return cls(sequence, RunId.from_bytes(run_id), owner, at)


@dataclass(frozen=True, slots=True)
class LeaseReleaseCommand(MutationCommand):
    """``owner`` gives its lease back. Removes the lease only (see :class:`LeaseExpireCommand`)."""

    TAG: ClassVar[int] = 8
    KIND: ClassVar[str] = "LeaseRelease"

    sequence: int | None
    run_id: RunId
    owner: str
    timestamp: int

    def __post_init__(self) -> None:
        _check_sequence("LeaseReleaseCommand", self.sequence)
        _check_id("LeaseReleaseCommand", "run_id", self.run_id, RunId)
        _check_owner("LeaseReleaseCommand", self.owner)
        _check_time("LeaseReleaseCommand", "timestamp", self.timestamp)

    def to_wire(self) -> tuple[Any, ...]:
        return (8, self.run_id.bytes, self.owner, self.timestamp)

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> LeaseReleaseCommand:
        _, run_id, owner, at = _wire(wire, 8, 4, "LeaseReleaseCommand")
        return cls(sequence, RunId.from_bytes(run_id), owner, at)


@dataclass(frozen=True, slots=True)
class TaskCancelCommand(MutationCommand):
    """Cancel a task **and** every non-terminal run of it (each gets a history entry)."""

    TAG: ClassVar[int] = 9
    KIND: ClassVar[str] = "TaskCancel"

    sequence: int | None
    task_id: TaskId
    timestamp: int
    reason: str | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        _check_sequence("TaskCancelCommand", self.sequence)
        _check_id("TaskCancelCommand", "task_id", self.task_id, TaskId)
        _check_time("TaskCancelCommand", "timestamp", self.timestamp)
        _check_opt_str("TaskCancelCommand", "reason", self.reason)

    def to_wire(self) -> tuple[Any, ...]:
        return (9, self.task_id.bytes, self.reason, self.timestamp)

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> TaskCancelCommand:
        _, task_id, reason, at = _wire(wire, 9, 4, "TaskCancelCommand")
        return cls(sequence, TaskId.from_bytes(task_id), at, reason=reason)


@dataclass(frozen=True, slots=True)
class EnginePauseCommand(MutationCommand):
    """Pause dispatching (durable: a restarted engine stays paused)."""

    TAG: ClassVar[int] = 10
    KIND: ClassVar[str] = "EnginePause"

    sequence: int | None
    timestamp: int

    def __post_init__(self) -> None:
        _check_sequence("EnginePauseCommand", self.sequence)
        _check_time("EnginePauseCommand", "timestamp", self.timestamp)

    def to_wire(self) -> tuple[Any, ...]:
        return (10, self.timestamp)

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> EnginePauseCommand:
        _, at = _wire(wire, 10, 2, "EnginePauseCommand")
        return cls(sequence, at)


@dataclass(frozen=True, slots=True)
class EngineResumeCommand(MutationCommand):
    """Resume dispatching after :class:`EnginePauseCommand`."""

    TAG: ClassVar[int] = 11
    KIND: ClassVar[str] = "EngineResume"

    sequence: int | None
    timestamp: int

    def __post_init__(self) -> None:
        _check_sequence("EngineResumeCommand", self.sequence)
        _check_time("EngineResumeCommand", "timestamp", self.timestamp)

    def to_wire(self) -> tuple[Any, ...]:
        return (11, self.timestamp)

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> EngineResumeCommand:
        _, at = _wire(wire, 11, 2, "EngineResumeCommand")
        return cls(sequence, at)


@dataclass(frozen=True, slots=True)
class PruneCommand(MutationCommand):
    """Retention: forget terminal runs whose last change is before ``before``, and finished
    tasks left with no runs."""

    TAG: ClassVar[int] = 12
    KIND: ClassVar[str] = "Prune"

    sequence: int | None
    before: int
    timestamp: int

    def __post_init__(self) -> None:
        _check_sequence("PruneCommand", self.sequence)
        _check_time("PruneCommand", "before", self.before)
        _check_time("PruneCommand", "timestamp", self.timestamp)

    def to_wire(self) -> tuple[Any, ...]:
        return (12, self.before, self.timestamp)

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> PruneCommand:
        _, before, at = _wire(wire, 12, 3, "PruneCommand")
        return cls(sequence, before, at)


_BY_TAG: dict[int, type[MutationCommand]] = {
    c.TAG: c
    for c in (
        TaskCreateCommand,
        RunCreateCommand,
        RunStateTransitionCommand,
        AttemptStartCommand,
        AttemptFinishCommand,
        LeaseAcquireCommand,
        LeaseHeartbeatCommand,
        LeaseExpireCommand,
        LeaseReleaseCommand,
        TaskCancelCommand,
        EnginePauseCommand,
        EngineResumeCommand,
        PruneCommand,
    )
}
