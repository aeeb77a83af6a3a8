"""Mutation commands and DurabilityPolicy (SPEC §5): construction, validation, wire tuples."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import re
from collections.abc import Callable
from typing import Any

import pytest
from core_strategies import specs as full_specs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actionqueue.core.ids import AttemptId, RunId, TaskId
from actionqueue.core.mutation import (
    AttemptFinishCommand,
    AttemptStartCommand,
    DurabilityPolicy,
    EnginePauseCommand,
    EngineResumeCommand,
    LeaseAcquireCommand,
    LeaseExpireCommand,
    LeaseHeartbeatCommand,
    LeaseReleaseCommand,
    MutationCommand,
    PruneCommand,
    RunCreateCommand,
    RunStateTransitionCommand,
    TaskCancelCommand,
    TaskCreateCommand,
)
from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.core.run.state import RunState
from actionqueue.core.run.transitions import is_valid_transition
from actionqueue.core.task.run_policy import RunPolicy
from actionqueue.core.task.task_spec import TaskPayload, TaskSpec
from actionqueue.errors import (
    ActionQueueError,
    InvalidTransitionError,
    ValidationError,
    WrongTypeError,
)

TID = TaskId("00000000-0000-4000-8000-0000000000a1")
RID = RunId("00000000-0000-4000-8000-0000000000b2")
AID = AttemptId("00000000-0000-4000-8000-0000000000c3")
SPEC = TaskSpec(TID, TaskPayload.with_content_type(b"\x01\x02", "application/x"), RunPolicy.once())

# One valid example of every command, with its exact wire tuple (docs/DESIGN.md).
EXAMPLES: list[tuple[MutationCommand, tuple[Any, ...]]] = [
    (TaskCreateCommand(1, SPEC, 10), (0, SPEC.to_wire(), 10, 10)),
    (
        TaskCreateCommand(None, SPEC, 10, schedule_origin=5),
        (0, SPEC.to_wire(), 5, 10),
    ),
    (RunCreateCommand(2, RID, TID, 0, 1_000, 10), (1, RID.bytes, TID.bytes, 0, 1_000, 10)),
    (
        RunStateTransitionCommand(3, RID, RunState.SCHEDULED, RunState.READY, 20),
        (2, RID.bytes, 0, 1, None, None, 20),
    ),
    (
        RunStateTransitionCommand(
            3, RID, RunState.RUNNING, RunState.RETRY_WAIT, 20, not_before=25, reason="boom"
        ),
        (2, RID.bytes, 3, 4, 25, "boom", 20),
    ),
    (AttemptStartCommand(4, RID, AID, 30), (3, RID.bytes, AID.bytes, 30)),
    (
        AttemptFinishCommand(5, RID, AID, AttemptOutcome.SUCCESS, 40, output=b"ok"),
        (4, RID.bytes, AID.bytes, 0, None, b"ok", 40),
    ),
    (
        AttemptFinishCommand(
            5, RID, AID, AttemptOutcome.RETRYABLE_FAILURE, 40, error="ValueError: x"
        ),
        (4, RID.bytes, AID.bytes, 1, "ValueError: x", None, 40),
    ),
    (LeaseAcquireCommand(6, RID, "w1", 100, 50), (5, RID.bytes, "w1", 100, 50)),
    (LeaseHeartbeatCommand(7, RID, "w1", 200, 60), (6, RID.bytes, "w1", 200, 60)),
    (LeaseExpireCommand(8, RID, "w1", 200), (7, RID.bytes, "w1", 200)),
    (LeaseReleaseCommand(9, RID, "w1", 70), (8, RID.bytes, "w1", 70)),
    (TaskCancelCommand(10, TID, 80), (9, TID.bytes, None, 80)),
    (TaskCancelCommand(10, TID, 80, reason="user"), (9, TID.bytes, "user", 80)),
    (EnginePauseCommand(11, 90), (10, 90)),
    (EngineResumeCommand(12, 95), (11, 95)),
    (PruneCommand(13, 50, 99), (12, 50, 99)),
]
IDS = [f"{type(c).__name__}-{i}" for i, (c, _) in enumerate(EXAMPLES)]


@pytest.mark.parametrize(("cmd", "wire"), EXAMPLES, ids=IDS)
def test_wire_tuple_and_round_trip(cmd: MutationCommand, wire: tuple[Any, ...]) -> None:
    assert cmd.to_wire() == wire
    assert wire[0] == type(cmd).TAG
    # The sequence is not in the tuple: it is passed alongside.
    assert MutationCommand.from_wire(wire, cmd.sequence) == cmd
    assert type(cmd).from_wire(wire, cmd.sequence) == cmd
    assert MutationCommand.from_wire(list(wire), cmd.sequence) == cmd
    assert MutationCommand.from_wire(wire).sequence is None


@pytest.mark.parametrize(("cmd", "wire"), EXAMPLES, ids=IDS)
def test_commands_are_immutable_slotted_values(cmd: MutationCommand, wire: tuple[Any, ...]) -> None:
    assert isinstance(cmd, MutationCommand)
    assert not hasattr(cmd, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cmd.timestamp = 1  # type: ignore[misc]
    assert hash(cmd) == hash(MutationCommand.from_wire(wire, cmd.sequence))
    assert cmd.KIND in repr(cmd) or type(cmd).__name__ in repr(cmd)


@pytest.mark.parametrize(("cmd", "wire"), EXAMPLES, ids=IDS)
def test_seed_spelling_returns_the_command(cmd: MutationCommand, wire: tuple[Any, ...]) -> None:
    wrap: Callable[[Any], MutationCommand] = getattr(MutationCommand, type(cmd).KIND)
    assert wrap(cmd) is cmd
    other = (
        EnginePauseCommand(1, 0)
        if not isinstance(cmd, EnginePauseCommand)
        else PruneCommand(1, 0, 0)
    )
    with pytest.raises(WrongTypeError, match=f"MutationCommand.{type(cmd).KIND} takes a"):
        wrap(other)


@pytest.mark.parametrize(("cmd", "wire"), EXAMPLES, ids=IDS)
def test_commands_pickle_and_copy(cmd: MutationCommand, wire: tuple[Any, ...]) -> None:
    assert pickle.loads(pickle.dumps(cmd)) == cmd
    assert copy.deepcopy(cmd) == cmd


@pytest.mark.parametrize(("cmd", "wire"), EXAMPLES, ids=IDS)
def test_with_sequence(cmd: MutationCommand, wire: tuple[Any, ...]) -> None:
    moved = cmd.with_sequence(77)
    assert moved.sequence == 77
    assert moved.to_wire() == cmd.to_wire()
    assert type(moved) is type(cmd)


def test_seed_example() -> None:
    spec = TaskSpec.new(
        TaskId.new(),
        TaskPayload.with_content_type(b"example-payload", "application/octet-stream"),
        RunPolicy.Once,
    )
    cmd = MutationCommand.TaskCreate(TaskCreateCommand(1, spec, 0))
    assert cmd.sequence == 1
    assert cmd.task_spec is spec
    assert cmd.task_id == spec.task_id
    assert cmd.timestamp == 0
    assert cmd.schedule_origin == 0  # defaults to the timestamp
    assert DurabilityPolicy.Immediate is DurabilityPolicy.IMMEDIATE


def test_every_event_kind_has_exactly_one_command_class() -> None:
    tags = sorted(type(c).TAG for c, _ in EXAMPLES)
    assert sorted(set(tags)) == list(range(13))
    kinds = {type(c).KIND for c, _ in EXAMPLES}
    assert kinds == {
        "TaskCreate",
        "RunCreate",
        "RunStateTransition",
        "AttemptStart",
        "AttemptFinish",
        "LeaseAcquire",
        "LeaseHeartbeat",
        "LeaseExpire",
        "LeaseRelease",
        "TaskCancel",
        "EnginePause",
        "EngineResume",
        "Prune",
    }


def test_durability_policy() -> None:
    assert [p.name for p in DurabilityPolicy] == ["IMMEDIATE", "DEFERRED"]
    assert DurabilityPolicy.Deferred is DurabilityPolicy.DEFERRED
    assert DurabilityPolicy.parse("immediate") is DurabilityPolicy.IMMEDIATE
    assert DurabilityPolicy.parse("Deferred") is DurabilityPolicy.DEFERRED
    assert DurabilityPolicy.parse(DurabilityPolicy.DEFERRED) is DurabilityPolicy.DEFERRED
    with pytest.raises(ValidationError, match="got 'fsync'"):
        DurabilityPolicy.parse("fsync")
    with pytest.raises(WrongTypeError, match="got int 1"):
        DurabilityPolicy.parse(1)  # type: ignore[arg-type]


# --- validation: every check, its error type, and a message naming field and value -----------

I64 = "0..9223372036854775807"


def bad(
    name: str, build: Callable[[], object], exc: type[ActionQueueError], *fragments: str
) -> Any:
    """A validation case: ``build()`` raises ``exc`` whose message holds ``fragments`` in order."""
    return pytest.param(build, exc, fragments, id=name)


BAD = [
    # sequence
    bad(
        "seq zero",
        lambda: EnginePauseCommand(0, 1),
        ValidationError,
        "EnginePauseCommand.sequence must be >= 1",
        "(or None to take the next sequence), got 0",
    ),
    bad(
        "seq negative",
        lambda: PruneCommand(-3, 1, 1),
        ValidationError,
        "PruneCommand.sequence must be >= 1",
        "got -3",
    ),
    bad(
        "seq float",
        lambda: EngineResumeCommand(1.0, 1),  # type: ignore[arg-type]
        WrongTypeError,
        "EngineResumeCommand.sequence must be an int >= 1 or None, got float 1.0",
    ),
    bad(
        "seq bool",
        lambda: EngineResumeCommand(True, 1),
        WrongTypeError,
        "EngineResumeCommand.sequence must be an int >= 1 or None, got bool True",
    ),
    # timestamps and other times
    bad(
        "ts negative",
        lambda: EnginePauseCommand(1, -1),
        ValidationError,
        f"EnginePauseCommand.timestamp must be milliseconds since the Unix epoch in {I64}",
        ", got -1",
    ),
    bad(
        "ts too big",
        lambda: EnginePauseCommand(1, 2**63),
        ValidationError,
        "EnginePauseCommand.timestamp must be milliseconds",
        ", got 9223372036854775808",
    ),
    bad(
        "ts float",
        lambda: EnginePauseCommand(1, 1.5),  # type: ignore[arg-type]
        WrongTypeError,
        "EnginePauseCommand.timestamp must be an int (milliseconds since the Unix epoch)",
        ", got float 1.5; convert seconds with int(seconds * 1000)",
    ),
    bad(
        "ts None",
        lambda: AttemptStartCommand(1, RID, AID, None),  # type: ignore[arg-type]
        WrongTypeError,
        "AttemptStartCommand.timestamp must be an int",
        ", got NoneType None",
    ),
    bad(
        "scheduled_at",
        lambda: RunCreateCommand(1, RID, TID, 0, -5, 0),
        ValidationError,
        "RunCreateCommand.scheduled_at must be milliseconds",
        ", got -5",
    ),
    bad(
        "schedule_origin",
        lambda: TaskCreateCommand(1, SPEC, 0, schedule_origin="now"),  # type: ignore[arg-type]
        WrongTypeError,
        "TaskCreateCommand.schedule_origin must be an int",
        ", got str 'now'",
    ),
    bad(
        "not_before",
        lambda: RunStateTransitionCommand(
            1, RID, RunState.RUNNING, RunState.RETRY_WAIT, 0, not_before=-1
        ),
        ValidationError,
        "RunStateTransitionCommand.not_before must be milliseconds",
        ", got -1",
    ),
    bad(
        "prune before",
        lambda: PruneCommand(1, 1.0, 1),  # type: ignore[arg-type]
        WrongTypeError,
        "PruneCommand.before must be an int",
        ", got float 1.0",
    ),
    bad(
        "heartbeat expires_at",
        lambda: LeaseHeartbeatCommand(1, RID, "w", -2, 0),
        ValidationError,
        "LeaseHeartbeatCommand.expires_at must be milliseconds",
        ", got -2",
    ),
    # ids must be the proper id class
    bad(
        "run_id is a task id",
        lambda: RunCreateCommand(1, TID, TID, 0, 0, 0),  # type: ignore[arg-type]
        WrongTypeError,
        "RunCreateCommand.run_id must be a RunId, got TaskId",
        f"TaskId('{TID}'); wrap the value with RunId(...)",
    ),
    bad(
        "task_id is a str",
        lambda: RunCreateCommand(1, RID, str(TID), 0, 0, 0),  # type: ignore[arg-type]
        WrongTypeError,
        f"RunCreateCommand.task_id must be a TaskId, got str '{TID}'",
        "; wrap the value with TaskId(...)",
    ),
    bad(
        "attempt_id is bytes",
        lambda: AttemptStartCommand(1, RID, AID.bytes, 0),  # type: ignore[arg-type]
        WrongTypeError,
        "AttemptStartCommand.attempt_id must be an AttemptId, got bytes b'",
    ),
    bad(
        "finish attempt_id is a run id",
        lambda: AttemptFinishCommand(1, RID, RID, AttemptOutcome.SUCCESS, 0),  # type: ignore[arg-type]
        WrongTypeError,
        "AttemptFinishCommand.attempt_id must be an AttemptId, got RunId",
    ),
    bad(
        "cancel task_id is a run id",
        lambda: TaskCancelCommand(1, RID, 0),  # type: ignore[arg-type]
        WrongTypeError,
        "TaskCancelCommand.task_id must be a TaskId, got RunId",
    ),
    bad(
        "lease run_id is None",
        lambda: LeaseReleaseCommand(1, None, "w", 0),  # type: ignore[arg-type]
        WrongTypeError,
        "LeaseReleaseCommand.run_id must be a RunId, got NoneType None",
    ),
    # ordinal
    bad(
        "ordinal negative",
        lambda: RunCreateCommand(1, RID, TID, -1, 0, 0),
        ValidationError,
        "RunCreateCommand.ordinal must be in 0..4294967295",
        "(runs of a task are numbered from 0), got -1",
    ),
    bad(
        "ordinal too big",
        lambda: RunCreateCommand(1, RID, TID, 2**32, 0, 0),
        ValidationError,
        "RunCreateCommand.ordinal must be in 0..4294967295",
        ", got 4294967296",
    ),
    bad(
        "ordinal str",
        lambda: RunCreateCommand(1, RID, TID, "0", 0, 0),  # type: ignore[arg-type]
        WrongTypeError,
        "RunCreateCommand.ordinal must be an int, got str '0'",
    ),
    # owner
    bad(
        "owner empty",
        lambda: LeaseAcquireCommand(1, RID, "", 10, 0),
        ValidationError,
        "LeaseAcquireCommand.owner must be a non-empty string, got ''",
    ),
    bad(
        "owner None",
        lambda: LeaseExpireCommand(1, RID, None, 0),  # type: ignore[arg-type]
        WrongTypeError,
        "LeaseExpireCommand.owner must be a non-empty str, got NoneType None",
    ),
    bad(
        "owner bytes",
        lambda: LeaseHeartbeatCommand(1, RID, b"w", 10, 0),  # type: ignore[arg-type]
        WrongTypeError,
        "LeaseHeartbeatCommand.owner must be a non-empty str, got bytes b'w'",
    ),
    bad(
        "release owner empty",
        lambda: LeaseReleaseCommand(1, RID, "", 0),
        ValidationError,
        "LeaseReleaseCommand.owner must be a non-empty string, got ''",
    ),
    # lease expiry
    bad(
        "expiry equal to timestamp",
        lambda: LeaseAcquireCommand(1, RID, "w", 10, 10),
        ValidationError,
        "LeaseAcquireCommand.expires_at must be later than timestamp 10, got 10",
        "; a lease needs a positive duration",
    ),
    bad(
        "expiry before timestamp",
        lambda: LeaseAcquireCommand(1, RID, "w", 5, 10),
        ValidationError,
        "LeaseAcquireCommand.expires_at must be later than timestamp 10, got 5",
    ),
    # states and transitions
    bad(
        "previous_state int",
        lambda: RunStateTransitionCommand(1, RID, 0, RunState.READY, 0),  # type: ignore[arg-type]
        WrongTypeError,
        "RunStateTransitionCommand.previous_state must be a RunState, got int 0",
        "; use RunState(value) to convert a wire value",
    ),
    bad(
        "new_state str",
        lambda: RunStateTransitionCommand(1, RID, RunState.READY, "Leased", 0),  # type: ignore[arg-type]
        WrongTypeError,
        "RunStateTransitionCommand.new_state must be a RunState, got str 'Leased'",
    ),
    bad(
        "illegal transition",
        lambda: RunStateTransitionCommand(1, RID, RunState.SCHEDULED, RunState.RUNNING, 0),
        InvalidTransitionError,
        "invalid run state transition Scheduled -> Running",
        ": Scheduled may only move to Ready, Canceled",
    ),
    bad(
        "self transition",
        lambda: RunStateTransitionCommand(1, RID, RunState.READY, RunState.READY, 0),
        InvalidTransitionError,
        "invalid run state transition Ready -> Ready",
    ),
    bad(
        "exit from terminal",
        lambda: RunStateTransitionCommand(1, RID, RunState.CANCELED, RunState.READY, 0),
        InvalidTransitionError,
        "Canceled -> Ready: Canceled is terminal and has no exits",
    ),
    bad(
        "retry without not_before",
        lambda: RunStateTransitionCommand(1, RID, RunState.RUNNING, RunState.RETRY_WAIT, 0),
        ValidationError,
        "RunStateTransitionCommand.not_before is required when entering RetryWait",
        f"got None for run {RID}",
    ),
    bad(
        "reason int",
        lambda: RunStateTransitionCommand(
            1,
            RID,
            RunState.SCHEDULED,
            RunState.READY,
            0,
            reason=1,  # type: ignore[arg-type]
        ),
        WrongTypeError,
        "RunStateTransitionCommand.reason must be a str or None, got int 1",
    ),
    # attempt finish
    bad(
        "outcome int",
        lambda: AttemptFinishCommand(1, RID, AID, 0, 0),  # type: ignore[arg-type]
        WrongTypeError,
        "AttemptFinishCommand.outcome must be an AttemptOutcome, got int 0",
        "; use AttemptOutcome(value) to convert a wire value",
    ),
    bad(
        "error is an exception",
        lambda: AttemptFinishCommand(
            1,
            RID,
            AID,
            AttemptOutcome.TERMINAL_FAILURE,
            0,
            error=ValueError("x"),  # type: ignore[arg-type]
        ),
        WrongTypeError,
        "AttemptFinishCommand.error must be a str or None, got ValueError ValueError('x')",
    ),
    bad(
        "output str",
        lambda: AttemptFinishCommand(1, RID, AID, AttemptOutcome.SUCCESS, 0, output="ok"),  # type: ignore[arg-type]
        WrongTypeError,
        "AttemptFinishCommand.output must be bytes or None, got str 'ok'",
        "; convert with bytes(...)",
    ),
    bad(
        "output bytearray",
        lambda: AttemptFinishCommand(
            1,
            RID,
            AID,
            AttemptOutcome.SUCCESS,
            0,
            output=bytearray(b"x"),  # type: ignore[arg-type]
        ),
        WrongTypeError,
        "AttemptFinishCommand.output must be bytes or None, got bytearray",
    ),
    # task create / cancel
    bad(
        "task_spec is a wire tuple",
        lambda: TaskCreateCommand(1, SPEC.to_wire(), 0),  # type: ignore[arg-type]
        WrongTypeError,
        "TaskCreateCommand.task_spec must be a TaskSpec, got tuple",
    ),
    bad(
        "cancel reason bytes",
        lambda: TaskCancelCommand(1, TID, 0, reason=b"x"),  # type: ignore[arg-type]
        WrongTypeError,
        "TaskCancelCommand.reason must be a str or None, got bytes b'x'",
    ),
]


@pytest.mark.parametrize(("build", "exc", "fragments"), BAD)
def test_validation_errors(
    build: Callable[[], object], exc: type[ActionQueueError], fragments: tuple[str, ...]
) -> None:
    with pytest.raises(exc) as info:
        build()
    # Each fragment (the field, the rule, the offending value, a hint) appears, in order.
    message = str(info.value)
    pos = 0
    for fragment in fragments:
        found = message.find(fragment, pos)
        assert found >= 0, f"{fragment!r} not in {message!r} after position {pos}"
        pos = found + len(fragment)
    # Typed errors are also the built-in a caller would catch.
    assert isinstance(info.value, TypeError if exc is WrongTypeError else ValueError)


def test_valid_edge_values() -> None:
    assert EnginePauseCommand(None, 0).sequence is None
    assert EnginePauseCommand(1, 2**63 - 1).timestamp == 2**63 - 1
    assert RunCreateCommand(1, RID, TID, 2**32 - 1, 0, 0).ordinal == 2**32 - 1
    assert LeaseAcquireCommand(1, RID, "w", 1, 0).expires_at == 1
    # A heartbeat may name an expiry in the past: the reducer keeps the later one.
    assert LeaseHeartbeatCommand(1, RID, "w", 0, 10).expires_at == 0
    # The seed's alias members are accepted wherever the upper-case ones are.
    cmd = RunStateTransitionCommand(1, RID, RunState.Leased, RunState.Running, 0)
    assert cmd.new_state is RunState.RUNNING


def test_from_wire_rejects_malformed_tuples() -> None:
    with pytest.raises(ValidationError, match=r"unknown command tag 13; known tags are 0\.\.12"):
        MutationCommand.from_wire((13, 0))
    with pytest.raises(ValidationError, match="unknown command tag '1'"):
        MutationCommand.from_wire(("1", 0))
    with pytest.raises(WrongTypeError, match="must be a non-empty tuple, got tuple"):
        MutationCommand.from_wire(())
    with pytest.raises(WrongTypeError, match="got bytes"):
        MutationCommand.from_wire(b"\x0a")
    with pytest.raises(
        ValidationError,
        match=re.escape("EnginePauseCommand wire value must be a tuple of 2 items starting"),
    ):
        MutationCommand.from_wire((10, 1, 2))
    with pytest.raises(ValidationError, match="is a EnginePauseCommand, not a PruneCommand"):
        PruneCommand.from_wire((10, 1))
    with pytest.raises(ValidationError, match="previous_state must be a run state wire value"):
        MutationCommand.from_wire((2, RID.bytes, 9, 1, None, None, 0))
    with pytest.raises(InvalidTransitionError, match="Ready -> Ready"):
        MutationCommand.from_wire((2, RID.bytes, 1, 1, None, None, 0))
    with pytest.raises(ValidationError, match="outcome must be an attempt outcome wire value"):
        MutationCommand.from_wire((4, RID.bytes, AID.bytes, 7, None, None, 0))
    with pytest.raises(ValidationError, match="nil"):
        MutationCommand.from_wire((3, bytes(16), AID.bytes, 0))


def test_from_wire_accepts_list_output_from_rust() -> None:
    cmd = MutationCommand.from_wire((4, RID.bytes, AID.bytes, 0, None, [1, 2], 0))
    assert isinstance(cmd, AttemptFinishCommand)
    assert cmd.output == b"\x01\x02"


# --- hypothesis round-trips -------------------------------------------------------------------

times = st.integers(0, 2**63 - 1)
seqs = st.none() | st.integers(1, 2**63 - 1)
texts = st.text(max_size=20)
run_ids = st.builds(RunId.new)
task_ids = st.builds(TaskId.new)
attempt_ids = st.builds(AttemptId.new)
owners = st.text(min_size=1, max_size=20)
legal_pairs = [(a, b) for a in RunState for b in RunState if is_valid_transition(a, b)]


@st.composite
def transitions(draw: st.DrawFn) -> RunStateTransitionCommand:
    src, dst = draw(st.sampled_from(legal_pairs))
    not_before = draw(times) if dst is RunState.RETRY_WAIT else draw(st.none() | times)
    return RunStateTransitionCommand(
        draw(seqs),
        draw(run_ids),
        src,
        dst,
        draw(times),
        not_before=not_before,
        reason=draw(st.none() | texts),
    )


@st.composite
def acquires(draw: st.DrawFn) -> LeaseAcquireCommand:
    at = draw(st.integers(0, 2**63 - 2))
    expires = draw(st.integers(at + 1, 2**63 - 1))
    return LeaseAcquireCommand(draw(seqs), draw(run_ids), draw(owners), expires, at)


specs = st.builds(
    lambda tid, data, ct: TaskSpec(tid, TaskPayload(data, ct), RunPolicy.once()),
    task_ids,
    st.binary(max_size=32),
    st.none() | st.text(min_size=1, max_size=10).filter(str.strip),
)

commands = st.one_of(
    st.builds(
        lambda s, spec, t, o: TaskCreateCommand(s, spec, t, schedule_origin=o),
        seqs, specs | full_specs, times, st.none() | times,
    ),
    st.builds(RunCreateCommand, seqs, run_ids, task_ids, st.integers(0, 2**32 - 1), times, times),
    transitions(),
    st.builds(AttemptStartCommand, seqs, run_ids, attempt_ids, times),
    st.builds(
        lambda s, r, a, o, t, e, out: AttemptFinishCommand(s, r, a, o, t, error=e, output=out),
        seqs, run_ids, attempt_ids, st.sampled_from(list(AttemptOutcome)), times,
        st.none() | texts, st.none() | st.binary(max_size=32),
    ),
    acquires(),
    st.builds(LeaseHeartbeatCommand, seqs, run_ids, owners, times, times),
    st.builds(LeaseExpireCommand, seqs, run_ids, owners, times),
    st.builds(LeaseReleaseCommand, seqs, run_ids, owners, times),
    st.builds(
        lambda s, t, at, r: TaskCancelCommand(s, t, at, reason=r),
        seqs, task_ids, times, st.none() | texts,
    ),
    st.builds(EnginePauseCommand, seqs, times),
    st.builds(EngineResumeCommand, seqs, times),
    st.builds(PruneCommand, seqs, times, times),
)  # fmt: skip


# Generating a full TaskSpec is slow-ish; on a loaded CI machine that alone can trip too_slow.
_slow_ok = settings(suppress_health_check=[HealthCheck.too_slow])


@_slow_ok
@given(commands)
def test_hypothesis_wire_round_trip(cmd: MutationCommand) -> None:
    wire = cmd.to_wire()
    assert isinstance(wire, tuple)
    assert wire[0] == type(cmd).TAG
    again = MutationCommand.from_wire(wire, cmd.sequence)
    assert again == cmd
    assert again.to_wire() == wire
    assert type(cmd).from_wire(wire, cmd.sequence) == cmd


@_slow_ok
@given(commands)
def test_wire_tuples_hold_only_plain_values(cmd: MutationCommand) -> None:
    def plain(v: object) -> bool:
        if isinstance(v, (tuple, list)):
            return all(plain(x) for x in v)
        return v is None or type(v) in (int, str, bytes, bool)

    assert plain(cmd.to_wire())
