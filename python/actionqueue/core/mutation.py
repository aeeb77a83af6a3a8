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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn, TypeVar

from actionqueue.core._validate import check_text
from actionqueue.core.ids import AttemptId, RunId, TaskId
from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.core.run.state import RunState
from actionqueue.core.run.transitions import allowed_targets, validate_transition
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


# --- validation ------------------------------------------------------------------------------
# Commands are built on the runtime's hot path, so each constructor checks its fields inline
# with type()/range tests and stores them through the slots' own descriptors (a frozen
# dataclass's generated __init__ goes through object.__setattr__ and costs about 3x as much).
# The helpers below run only when a check has failed: they work out which error to raise.


def _type_error(cmd: str, name: str, expected: str, value: object, hint: str = "") -> NoReturn:
    raise WrongTypeError(
        f"{cmd}.{name} must be {expected}, got {type(value).__name__} {value!r}{hint}"
    )


def _bad_sequence(cmd: str, value: object) -> NoReturn:
    if type(value) is not int:
        _type_error(cmd, "sequence", "an int >= 1 or None", value)
    raise ValidationError(
        f"{cmd}.sequence must be >= 1 (or None to take the next sequence), got {value}"
    )


def _bad_time(cmd: str, name: str, value: object) -> NoReturn:
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


def _bad_id(cmd: str, name: str, value: object, id_type: type[Any]) -> NoReturn:
    article = "an" if id_type is AttemptId else "a"
    _type_error(
        cmd,
        name,
        f"{article} {id_type.__name__}",
        value,
        f"; wrap the value with {id_type.__name__}(...)",
    )


def _bad_owner(cmd: str, value: object) -> NoReturn:
    if not isinstance(value, str):
        _type_error(cmd, "owner", "a non-empty str", value)
    raise ValidationError(f"{cmd}.owner must be a non-empty string, got {value!r}")


def _bad_opt_str(cmd: str, name: str, value: object) -> NoReturn:
    _type_error(cmd, name, "a str or None", value)


def _bad_state(cmd: str, name: str, value: object) -> NoReturn:
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


_Setter = Callable[[Any, Any], None]


def _command(cls: type[_C]) -> type[_C]:
    """Finish a command class: record the slot setters its ``__init__`` stores fields with
    (in field order) and register it under its tag for :meth:`MutationCommand.from_wire`."""
    cls._set = tuple(cls.__dict__[f.name].__set__ for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    _BY_TAG[cls.TAG] = cls
    return cls


def _seed_wrap(cmd: object, expected: type[_C]) -> _C:
    if not isinstance(cmd, expected):
        raise WrongTypeError(
            f"MutationCommand.{expected.KIND} takes a {expected.__name__}, "
            f"got {type(cmd).__name__} {cmd!r:.200}"
        )
    return cmd


# --- the commands ----------------------------------------------------------------------------

#: Command classes by event tag (filled in by ``_command``).
_BY_TAG: dict[int, type[MutationCommand]] = {}

# Legal (from, to) pairs: one hash lookup on the hot path; the table module explains failures.
_LEGAL = frozenset((a, b) for a in RunState for b in allowed_targets(a))
_RETRY_WAIT = RunState.RETRY_WAIT


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

    # Setters of the slots, in field order (filled in by ``_command``).
    _set: ClassVar[tuple[_Setter, ...]]

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


@_command
@dataclass(frozen=True, slots=True, init=False)
class TaskCreateCommand(MutationCommand):
    """Create a task (its runs are created by ``RunCreateCommand`` s, usually in the same
    atomic batch).

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
        cmd = "TaskCreateCommand"
        if sequence is not None and (type(sequence) is not int or sequence < 1):
            _bad_sequence(cmd, sequence)
        if not isinstance(task_spec, TaskSpec):
            _type_error(cmd, "task_spec", "a TaskSpec", task_spec)
        if type(timestamp) is not int or not 0 <= timestamp <= _I64_MAX:
            _bad_time(cmd, "timestamp", timestamp)
        if schedule_origin is None:
            schedule_origin = timestamp
        elif type(schedule_origin) is not int or not 0 <= schedule_origin <= _I64_MAX:
            _bad_time(cmd, "schedule_origin", schedule_origin)
        s = self._set
        s[0](self, sequence)
        s[1](self, task_spec)
        s[2](self, timestamp)
        s[3](self, schedule_origin)

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


@_command
@dataclass(frozen=True, slots=True, init=False)
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

    def __init__(
        self,
        sequence: int | None,
        run_id: RunId,
        task_id: TaskId,
        ordinal: int,
        scheduled_at: int,
        timestamp: int,
    ) -> None:
        cmd = "RunCreateCommand"
        if sequence is not None and (type(sequence) is not int or sequence < 1):
            _bad_sequence(cmd, sequence)
        if type(run_id) is not RunId:
            _bad_id(cmd, "run_id", run_id, RunId)
        if type(task_id) is not TaskId:
            _bad_id(cmd, "task_id", task_id, TaskId)
        if type(ordinal) is not int or not 0 <= ordinal <= _U32_MAX:
            if type(ordinal) is not int:
                _type_error(cmd, "ordinal", "an int", ordinal)
            raise ValidationError(
                f"{cmd}.ordinal must be in 0..{_U32_MAX} (runs of a task are numbered from 0), "
                f"got {ordinal}"
            )
        if type(scheduled_at) is not int or not 0 <= scheduled_at <= _I64_MAX:
            _bad_time(cmd, "scheduled_at", scheduled_at)
        if type(timestamp) is not int or not 0 <= timestamp <= _I64_MAX:
            _bad_time(cmd, "timestamp", timestamp)
        s = self._set
        s[0](self, sequence)
        s[1](self, run_id)
        s[2](self, task_id)
        s[3](self, ordinal)
        s[4](self, scheduled_at)
        s[5](self, timestamp)

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


@_command
@dataclass(frozen=True, slots=True, init=False)
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
    not_before: int | None
    reason: str | None

    def __init__(
        self,
        sequence: int | None,
        run_id: RunId,
        previous_state: RunState,
        new_state: RunState,
        timestamp: int,
        *,
        not_before: int | None = None,
        reason: str | None = None,
    ) -> None:
        cmd = "RunStateTransitionCommand"
        if sequence is not None and (type(sequence) is not int or sequence < 1):
            _bad_sequence(cmd, sequence)
        if type(run_id) is not RunId:
            _bad_id(cmd, "run_id", run_id, RunId)
        if type(previous_state) is not RunState:
            _bad_state(cmd, "previous_state", previous_state)
        if type(new_state) is not RunState:
            _bad_state(cmd, "new_state", new_state)
        if (previous_state, new_state) not in _LEGAL:
            validate_transition(previous_state, new_state)  # raises, naming both states
        if type(timestamp) is not int or not 0 <= timestamp <= _I64_MAX:
            _bad_time(cmd, "timestamp", timestamp)
        if not_before is None:
            if new_state is _RETRY_WAIT:
                raise ValidationError(
                    f"{cmd}.not_before is required when entering RetryWait (when the run may "
                    f"become Ready again), got None for run {run_id}"
                )
        elif type(not_before) is not int or not 0 <= not_before <= _I64_MAX:
            _bad_time(cmd, "not_before", not_before)
        if reason is not None and not isinstance(reason, str):
            _bad_opt_str(cmd, "reason", reason)
        elif reason is not None and not reason.isascii():
            check_text(reason, f"{cmd}.reason")
        s = self._set
        s[0](self, sequence)
        s[1](self, run_id)
        s[2](self, previous_state)
        s[3](self, new_state)
        s[4](self, timestamp)
        s[5](self, not_before)
        s[6](self, reason)

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


@_command
@dataclass(frozen=True, slots=True, init=False)
class AttemptStartCommand(MutationCommand):
    """Open attempt ``attempt_id`` of a Running run that has no open attempt."""

    TAG: ClassVar[int] = 3
    KIND: ClassVar[str] = "AttemptStart"

    sequence: int | None
    run_id: RunId
    attempt_id: AttemptId
    timestamp: int

    def __init__(
        self, sequence: int | None, run_id: RunId, attempt_id: AttemptId, timestamp: int
    ) -> None:
        cmd = "AttemptStartCommand"
        if sequence is not None and (type(sequence) is not int or sequence < 1):
            _bad_sequence(cmd, sequence)
        if type(run_id) is not RunId:
            _bad_id(cmd, "run_id", run_id, RunId)
        if type(attempt_id) is not AttemptId:
            _bad_id(cmd, "attempt_id", attempt_id, AttemptId)
        if type(timestamp) is not int or not 0 <= timestamp <= _I64_MAX:
            _bad_time(cmd, "timestamp", timestamp)
        s = self._set
        s[0](self, sequence)
        s[1](self, run_id)
        s[2](self, attempt_id)
        s[3](self, timestamp)

    def to_wire(self) -> tuple[Any, ...]:
        return (3, self.run_id.bytes, self.attempt_id.bytes, self.timestamp)

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> AttemptStartCommand:
        _, run_id, attempt_id, at = _wire(wire, 3, 4, "AttemptStartCommand")
        return cls(sequence, RunId.from_bytes(run_id), AttemptId.from_bytes(attempt_id), at)


@_command
@dataclass(frozen=True, slots=True, init=False)
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
    error: str | None
    output: bytes | None

    def __init__(
        self,
        sequence: int | None,
        run_id: RunId,
        attempt_id: AttemptId,
        outcome: AttemptOutcome,
        timestamp: int,
        *,
        error: str | None = None,
        output: bytes | None = None,
    ) -> None:
        cmd = "AttemptFinishCommand"
        if sequence is not None and (type(sequence) is not int or sequence < 1):
            _bad_sequence(cmd, sequence)
        if type(run_id) is not RunId:
            _bad_id(cmd, "run_id", run_id, RunId)
        if type(attempt_id) is not AttemptId:
            _bad_id(cmd, "attempt_id", attempt_id, AttemptId)
        if type(outcome) is not AttemptOutcome:
            _type_error(
                cmd,
                "outcome",
                "an AttemptOutcome",
                outcome,
                "; use AttemptOutcome(value) to convert a wire value",
            )
        if type(timestamp) is not int or not 0 <= timestamp <= _I64_MAX:
            _bad_time(cmd, "timestamp", timestamp)
        if error is not None and not isinstance(error, str):
            _bad_opt_str(cmd, "error", error)
        elif error is not None and not error.isascii():
            check_text(error, f"{cmd}.error")
        if output is not None and type(output) is not bytes:
            _type_error(cmd, "output", "bytes or None", output, "; convert with bytes(...)")
        s = self._set
        s[0](self, sequence)
        s[1](self, run_id)
        s[2](self, attempt_id)
        s[3](self, outcome)
        s[4](self, timestamp)
        s[5](self, error)
        s[6](self, output)

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


class _LeaseCommand(MutationCommand):
    """Shared constructor of the four lease commands (not a command itself)."""

    __slots__ = ()

    run_id: RunId
    owner: str

    def _init(
        self,
        cmd: str,
        sequence: int | None,
        run_id: RunId,
        owner: str,
        expires_at: int | None,
        timestamp: int,
    ) -> None:
        if sequence is not None and (type(sequence) is not int or sequence < 1):
            _bad_sequence(cmd, sequence)
        if type(run_id) is not RunId:
            _bad_id(cmd, "run_id", run_id, RunId)
        if type(owner) is not str or not owner:
            _bad_owner(cmd, owner)
        elif not owner.isascii():
            check_text(owner, f"{cmd}.owner")
        if type(timestamp) is not int or not 0 <= timestamp <= _I64_MAX:
            _bad_time(cmd, "timestamp", timestamp)
        s = self._set
        s[0](self, sequence)
        s[1](self, run_id)
        s[2](self, owner)
        if expires_at is None:
            s[3](self, timestamp)
        else:
            if type(expires_at) is not int or not 0 <= expires_at <= _I64_MAX:
                _bad_time(cmd, "expires_at", expires_at)
            s[3](self, expires_at)
            s[4](self, timestamp)


@_command
@dataclass(frozen=True, slots=True, init=False)
class LeaseAcquireCommand(_LeaseCommand):
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

    def __init__(
        self, sequence: int | None, run_id: RunId, owner: str, expires_at: int, timestamp: int
    ) -> None:
        self._init("LeaseAcquireCommand", sequence, run_id, owner, expires_at, timestamp)
        if expires_at <= timestamp:
            raise ValidationError(
                f"LeaseAcquireCommand.expires_at must be later than timestamp {timestamp}, "
                f"got {expires_at}; a lease needs a positive duration"
            )

    def to_wire(self) -> tuple[Any, ...]:
        return (5, self.run_id.bytes, self.owner, self.expires_at, self.timestamp)

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> LeaseAcquireCommand:
        _, run_id, owner, expires_at, at = _wire(wire, 5, 5, "LeaseAcquireCommand")
        return cls(sequence, RunId.from_bytes(run_id), owner, expires_at, at)


@_command
@dataclass(frozen=True, slots=True, init=False)
class LeaseHeartbeatCommand(_LeaseCommand):
    """Extend ``owner``'s lease to ``expires_at`` (never shortens: the later expiry wins)."""

    TAG: ClassVar[int] = 6
    KIND: ClassVar[str] = "LeaseHeartbeat"

    sequence: int | None
    run_id: RunId
    owner: str
    expires_at: int
    timestamp: int

    def __init__(
        self, sequence: int | None, run_id: RunId, owner: str, expires_at: int, timestamp: int
    ) -> None:
        self._init("LeaseHeartbeatCommand", sequence, run_id, owner, expires_at, timestamp)

    def to_wire(self) -> tuple[Any, ...]:
        return (6, self.run_id.bytes, self.owner, self.expires_at, self.timestamp)

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> LeaseHeartbeatCommand:
        _, run_id, owner, expires_at, at = _wire(wire, 6, 5, "LeaseHeartbeatCommand")
        return cls(sequence, RunId.from_bytes(run_id), owner, expires_at, at)


@_command
@dataclass(frozen=True, slots=True, init=False)
class LeaseExpireCommand(_LeaseCommand):
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

    def __init__(self, sequence: int | None, run_id: RunId, owner: str, timestamp: int) -> None:
        self._init("LeaseExpireCommand", sequence, run_id, owner, None, timestamp)

    def to_wire(self) -> tuple[Any, ...]:
        return (7, self.run_id.bytes, self.owner, self.timestamp)

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> LeaseExpireCommand:
        _, run_id, owner, at = _wire(wire, 7, 4, "LeaseExpireCommand")
        return cls(sequence, RunId.from_bytes(run_id), owner, at)


@_command
@dataclass(frozen=True, slots=True, init=False)
class LeaseReleaseCommand(_LeaseCommand):
    """``owner`` gives its lease back. Removes the lease only (see :class:`LeaseExpireCommand`)."""

    TAG: ClassVar[int] = 8
    KIND: ClassVar[str] = "LeaseRelease"

    sequence: int | None
    run_id: RunId
    owner: str
    timestamp: int

    def __init__(self, sequence: int | None, run_id: RunId, owner: str, timestamp: int) -> None:
        self._init("LeaseReleaseCommand", sequence, run_id, owner, None, timestamp)

    def to_wire(self) -> tuple[Any, ...]:
        return (8, self.run_id.bytes, self.owner, self.timestamp)

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> LeaseReleaseCommand:
        _, run_id, owner, at = _wire(wire, 8, 4, "LeaseReleaseCommand")
        return cls(sequence, RunId.from_bytes(run_id), owner, at)


@_command
@dataclass(frozen=True, slots=True, init=False)
class TaskCancelCommand(MutationCommand):
    """Cancel a task **and** every non-terminal run of it (each gets a history entry)."""

    TAG: ClassVar[int] = 9
    KIND: ClassVar[str] = "TaskCancel"

    sequence: int | None
    task_id: TaskId
    timestamp: int
    reason: str | None

    def __init__(
        self, sequence: int | None, task_id: TaskId, timestamp: int, *, reason: str | None = None
    ) -> None:
        cmd = "TaskCancelCommand"
        if sequence is not None and (type(sequence) is not int or sequence < 1):
            _bad_sequence(cmd, sequence)
        if type(task_id) is not TaskId:
            _bad_id(cmd, "task_id", task_id, TaskId)
        if type(timestamp) is not int or not 0 <= timestamp <= _I64_MAX:
            _bad_time(cmd, "timestamp", timestamp)
        if reason is not None and not isinstance(reason, str):
            _bad_opt_str(cmd, "reason", reason)
        elif reason is not None and not reason.isascii():
            check_text(reason, f"{cmd}.reason")
        s = self._set
        s[0](self, sequence)
        s[1](self, task_id)
        s[2](self, timestamp)
        s[3](self, reason)

    def to_wire(self) -> tuple[Any, ...]:
        return (9, self.task_id.bytes, self.reason, self.timestamp)

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> TaskCancelCommand:
        _, task_id, reason, at = _wire(wire, 9, 4, "TaskCancelCommand")
        return cls(sequence, TaskId.from_bytes(task_id), at, reason=reason)


class _EngineCommand(MutationCommand):
    """Shared constructor of the commands that carry only a timestamp (not a command itself)."""

    __slots__ = ()

    def __init__(self, sequence: int | None, timestamp: int) -> None:
        if sequence is not None and (type(sequence) is not int or sequence < 1):
            _bad_sequence(type(self).__name__, sequence)
        if type(timestamp) is not int or not 0 <= timestamp <= _I64_MAX:
            _bad_time(type(self).__name__, "timestamp", timestamp)
        s = self._set
        s[0](self, sequence)
        s[1](self, timestamp)

    def to_wire(self) -> tuple[Any, ...]:
        return (self.TAG, self.timestamp)

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> MutationCommand:
        _, at = _wire(wire, cls.TAG, 2, cls.__name__)
        return cls(sequence, at)


@_command
@dataclass(frozen=True, slots=True, init=False)
class EnginePauseCommand(_EngineCommand):
    """Pause dispatching (durable: a restarted engine stays paused)."""

    TAG: ClassVar[int] = 10
    KIND: ClassVar[str] = "EnginePause"

    sequence: int | None
    timestamp: int


@_command
@dataclass(frozen=True, slots=True, init=False)
class EngineResumeCommand(_EngineCommand):
    """Resume dispatching after :class:`EnginePauseCommand`."""

    TAG: ClassVar[int] = 11
    KIND: ClassVar[str] = "EngineResume"

    sequence: int | None
    timestamp: int


@_command
@dataclass(frozen=True, slots=True, init=False)
class PruneCommand(MutationCommand):
    """Retention: forget terminal runs whose last change is before ``before``, and finished
    tasks left with no runs."""

    TAG: ClassVar[int] = 12
    KIND: ClassVar[str] = "Prune"

    sequence: int | None
    before: int
    timestamp: int

    def __init__(self, sequence: int | None, before: int, timestamp: int) -> None:
        cmd = "PruneCommand"
        if sequence is not None and (type(sequence) is not int or sequence < 1):
            _bad_sequence(cmd, sequence)
        if type(before) is not int or not 0 <= before <= _I64_MAX:
            _bad_time(cmd, "before", before)
        if type(timestamp) is not int or not 0 <= timestamp <= _I64_MAX:
            _bad_time(cmd, "timestamp", timestamp)
        s = self._set
        s[0](self, sequence)
        s[1](self, before)
        s[2](self, timestamp)

    def to_wire(self) -> tuple[Any, ...]:
        return (12, self.before, self.timestamp)

    @classmethod
    def _from_wire(cls, wire: Sequence[Any], sequence: int | None) -> PruneCommand:
        _, before, at = _wire(wire, 12, 3, "PruneCommand")
        return cls(sequence, before, at)
