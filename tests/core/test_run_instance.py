"""RunInstance and the run tuple (Rust -> Python) of docs/DESIGN.md."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actionqueue.core.ids import AttemptId, RunId, TaskId
from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.core.run.run_instance import AttemptRecord, Lease, RunInstance, StateChange
from actionqueue.core.run.state import RunState
from actionqueue.errors import ValidationError, WrongTypeError

RID = RunId("00000000-0000-4000-8000-000000000001")
TID = TaskId("00000000-0000-4000-8000-000000000002")
AID1 = AttemptId("00000000-0000-4000-8000-000000000003")
AID2 = AttemptId("00000000-0000-4000-8000-000000000004")


def running_wire() -> tuple[Any, ...]:
    """A run in its second attempt, written out by hand as the Rust side produces it."""
    return (
        RID.bytes,
        TID.bytes,
        3,  # Running
        0,
        1_000,
        900,
        2,
        AID2.bytes,
        7,
        1_500,
        None,
        ("worker-1", 31_500),
        [
            (None, 0, 900, None),
            (0, 1, 1_000, None),
            (1, 2, 1_100, None),
            (2, 3, 1_100, None),
            (3, 4, 1_200, "ValueError: boom"),
            (4, 1, 1_300, None),
            (1, 2, 1_500, None),
            (2, 3, 1_500, None),
        ],
        [
            (AID1.bytes, 1_100, 1_200, 1, "ValueError: boom", None),
            (AID2.bytes, 1_500, None, None, None, None),
        ],
    )


def test_from_wire_builds_typed_values() -> None:
    run = RunInstance.from_wire(running_wire())
    assert run.run_id == RID
    assert run.id == RID
    assert run.task_id == TID
    assert run.state is RunState.RUNNING
    assert run.ordinal == 0
    assert run.scheduled_at == 1_000
    assert run.created_at == 900
    assert run.attempt_count == 2
    assert run.current_attempt == AID2
    assert run.effective_priority == 7
    assert run.last_state_change_at == 1_500
    assert run.not_before is None
    assert run.lease == Lease("worker-1", 31_500)
    assert run.created_seq is None
    assert run.history[0] == StateChange(None, RunState.SCHEDULED, 900, None)
    assert run.history[4] == StateChange(
        RunState.RUNNING, RunState.RETRY_WAIT, 1_200, "ValueError: boom"
    )
    assert all(type(h.to_state) is RunState for h in run.history)
    assert run.attempts[0] == AttemptRecord(
        AID1, 1_100, 1_200, AttemptOutcome.RETRYABLE_FAILURE, "ValueError: boom", None
    )
    assert run.attempts[1].is_open
    assert not run.attempts[0].is_open
    assert run.open_attempt == run.attempts[1]
    assert not run.is_terminal


def test_wire_round_trip() -> None:
    wire = running_wire()
    run = RunInstance.from_wire(wire)
    assert run.to_wire() == wire
    assert RunInstance.from_wire(run.to_wire()) == run


def test_pickle_round_trip() -> None:
    run = RunInstance.from_wire(running_wire())
    assert pickle.loads(pickle.dumps(run)) == run


def test_optional_created_seq_is_the_fifteenth_item() -> None:
    wire = (*running_wire(), 42)
    run = RunInstance.from_wire(wire)
    assert run.created_seq == 42
    assert run.to_wire() == wire


def test_lists_or_tuples_and_bytearray_output_are_accepted() -> None:
    wire = list(running_wire())
    wire[13] = [
        (AID1.bytes, 1, 2, 0, None, bytearray(b"out")),
        (AID2.bytes, 3, None, None, None, None),
    ]
    run = RunInstance.from_wire(wire)
    assert run.attempts[0].output == b"out"
    assert type(run.attempts[0].output) is bytes


def test_bad_run_tuples_are_rejected() -> None:
    with pytest.raises(ValidationError, match="a run tuple has 14 or 15 items"):
        RunInstance.from_wire(running_wire()[:13])
    wire = list(running_wire())
    wire[2] = 9
    with pytest.raises(
        ValidationError, match=r"run state must be a run state wire value 0\.\.8, got 9"
    ):
        RunInstance.from_wire(wire)
    wire = list(running_wire())
    wire[0] = bytes(16)
    with pytest.raises(ValidationError, match="nil"):
        RunInstance.from_wire(wire)


def test_defaults_for_a_fresh_run() -> None:
    run = RunInstance(RID, TID, RunState.SCHEDULED, 0, 5_000, 4_000)
    assert run.last_state_change_at == 4_000  # defaults to created_at
    assert run.attempt_count == 0
    assert run.current_attempt is None
    assert run.open_attempt is None
    assert run.lease is None
    assert run.history == ()
    assert run.attempts == ()


def test_instances_are_immutable_and_slotted() -> None:
    run = RunInstance(RID, TID, RunState.SCHEDULED, 0, 5_000, 4_000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.state = RunState.READY  # type: ignore[misc]
    assert not hasattr(run, "__dict__")
    assert dataclasses.replace(run, state=RunState.READY).state is RunState.READY


def test_current_attempt_only_while_running() -> None:
    with pytest.raises(ValidationError, match=r"current_attempt is .* but state is Ready"):
        RunInstance(RID, TID, RunState.READY, 0, 1, 1, current_attempt=AID1)


def test_constructor_type_errors_name_the_field() -> None:
    with pytest.raises(WrongTypeError, match=r"RunInstance\.run_id must be a RunId, got TaskId"):
        RunInstance(TID, TID, RunState.READY, 0, 1, 1)  # type: ignore[arg-type]
    with pytest.raises(WrongTypeError, match=r"RunInstance\.task_id must be a TaskId, got RunId"):
        RunInstance(RID, RID, RunState.READY, 0, 1, 1)  # type: ignore[arg-type]
    with pytest.raises(WrongTypeError, match=r"RunInstance\.state must be a RunState, got int 1"):
        RunInstance(RID, TID, 1, 0, 1, 1)  # type: ignore[arg-type]


def test_terminal_and_lease_helpers() -> None:
    done = RunInstance(RID, TID, RunState.COMPLETED, 0, 1, 1)
    assert done.is_terminal
    lease = Lease("w", 100)
    assert not lease.is_expired(99)
    assert lease.is_expired(100)


ids16 = st.binary(min_size=16, max_size=16).filter(lambda b: b != bytes(16))
times = st.integers(0, 2**63 - 1)
opt_times = st.none() | times
states = st.integers(0, 8)
history = st.lists(
    st.tuples(st.none() | states, states, times, st.none() | st.text(max_size=8)), max_size=3
)
attempts = st.lists(
    st.tuples(
        ids16,
        times,
        opt_times,
        st.none() | st.integers(0, 6),
        st.none() | st.text(max_size=8),
        st.none() | st.binary(max_size=8),
    ),
    max_size=3,
)


@st.composite
def run_tuples(draw: st.DrawFn) -> tuple[Any, ...]:
    state = draw(states)
    current = draw(ids16) if state == 3 and draw(st.booleans()) else None
    base: tuple[Any, ...] = (
        draw(ids16),
        draw(ids16),
        state,
        draw(st.integers(0, 2**32 - 1)),
        draw(times),
        draw(times),
        draw(st.integers(0, 1000)),
        current,
        draw(st.none() | st.integers(-(2**31), 2**31 - 1)),
        draw(times),
        draw(opt_times),
        draw(st.none() | st.tuples(st.text(min_size=1, max_size=8), times)),
        draw(history),
        draw(attempts),
    )
    if draw(st.booleans()):
        base += (draw(st.integers(1, 2**63 - 1)),)
    return base


# Many draws per example; a loaded CI machine can trip the too_slow health check.
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(run_tuples())
def test_hypothesis_wire_round_trip(wire: tuple[Any, ...]) -> None:
    run = RunInstance.from_wire(wire)
    assert run.to_wire() == wire
    assert RunInstance.from_wire(run.to_wire()) == run
