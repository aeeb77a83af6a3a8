"""RunState and the transition table (SPEC §4), checked pair by pair."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actionqueue.core.run.state import TERMINAL_STATES, RunState, is_terminal
from actionqueue.core.run.transitions import (
    TRANSITIONS,
    allowed_targets,
    is_valid_transition,
    validate_transition,
)
from actionqueue.errors import (
    ActionQueueError,
    CommandRejectedError,
    InvalidTransitionError,
    ValidationError,
    WrongTypeError,
)

# An independent literal copy of the SPEC §4 table, by CamelCase name, so a typo in the
# implementation's table cannot hide behind the same typo here.
SPEC_TABLE: dict[str, set[str]] = {
    "Scheduled": {"Ready", "Canceled"},
    "Ready": {"Leased", "Canceled"},
    "Leased": {"Ready", "Running", "Canceled"},
    "Running": {"RetryWait", "Suspended", "Completed", "Failed", "Canceled"},
    "RetryWait": {"Ready", "Failed", "Canceled"},
    "Suspended": {"Ready", "Canceled"},
    "Completed": set(),
    "Failed": set(),
    "Canceled": set(),
}

WIRE_VALUES = {
    "Scheduled": 0,
    "Ready": 1,
    "Leased": 2,
    "Running": 3,
    "RetryWait": 4,
    "Suspended": 5,
    "Completed": 6,
    "Failed": 7,
    "Canceled": 8,
}

ALL_PAIRS = list(itertools.product(WIRE_VALUES, repeat=2))


def test_there_are_nine_states_with_the_wire_values_of_the_rust_core() -> None:
    assert len(RunState) == 9
    assert len(ALL_PAIRS) == 81
    for name, value in WIRE_VALUES.items():
        state = RunState(value)
        assert state.label == name
        assert str(state) == name
        assert int(state) == value
        # The seed's CamelCase spelling is an alias of the same member.
        assert getattr(RunState, name) is state


def test_upper_case_names_are_the_canonical_member_names() -> None:
    assert [s.name for s in RunState] == [
        "SCHEDULED",
        "READY",
        "LEASED",
        "RUNNING",
        "RETRY_WAIT",
        "SUSPENDED",
        "COMPLETED",
        "FAILED",
        "CANCELED",
    ]
    assert repr(RunState.RETRY_WAIT) == "<RunState.RETRY_WAIT: 4>"
    assert f"{RunState.RETRY_WAIT}" == "RetryWait"
    assert f"{RunState.READY:>7}" == "  Ready"


@pytest.mark.parametrize(("src", "dst"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_every_pair_matches_the_spec_table(src: str, dst: str) -> None:
    a, b = RunState(WIRE_VALUES[src]), RunState(WIRE_VALUES[dst])
    legal = dst in SPEC_TABLE[src]
    assert is_valid_transition(a, b) is legal
    assert (b in allowed_targets(a)) is legal
    if legal:
        validate_transition(a, b)
    else:
        with pytest.raises(InvalidTransitionError) as info:
            validate_transition(a, b)
        message = str(info.value)
        assert f"{src} -> {dst}" in message


def test_allowed_targets_match_the_spec_table_exactly() -> None:
    for name, targets in SPEC_TABLE.items():
        got = {s.label for s in allowed_targets(RunState(WIRE_VALUES[name]))}
        assert got == targets, name
    assert {s.label: {t.label for t in ts} for s, ts in TRANSITIONS.items()} == SPEC_TABLE


def test_transitions_view_is_read_only() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[RunState.COMPLETED] = frozenset({RunState.READY})  # type: ignore[index]


def test_terminal_states() -> None:
    assert {s.label for s in TERMINAL_STATES} == {"Completed", "Failed", "Canceled"}
    for state in RunState:
        expected = state.label in {"Completed", "Failed", "Canceled"}
        assert state.is_terminal is expected
        assert is_terminal(state) is expected


def test_invalid_transition_error_is_typed_and_helpful() -> None:
    with pytest.raises(InvalidTransitionError) as info:
        validate_transition(RunState.SCHEDULED, RunState.RUNNING)
    assert isinstance(info.value, CommandRejectedError)
    assert isinstance(info.value, ActionQueueError)
    assert isinstance(info.value, ValueError)
    assert str(info.value) == (
        "invalid run state transition Scheduled -> Running: "
        "Scheduled may only move to Ready, Canceled"
    )


def test_self_transition_message() -> None:
    with pytest.raises(InvalidTransitionError, match="Ready -> Ready: a run cannot transition"):
        validate_transition(RunState.READY, RunState.READY)


def test_terminal_exit_message() -> None:
    with pytest.raises(InvalidTransitionError, match="Failed -> Ready: Failed is terminal"):
        validate_transition(RunState.FAILED, RunState.READY)


def test_plain_int_wire_values_are_accepted() -> None:
    assert is_valid_transition(0, 1)  # type: ignore[arg-type]
    validate_transition(0, 1)  # type: ignore[arg-type]
    assert allowed_targets(3) == allowed_targets(RunState.RUNNING)  # type: ignore[arg-type]
    with pytest.raises(InvalidTransitionError, match="Completed -> Scheduled"):
        validate_transition(6, 0)  # type: ignore[arg-type]


def test_wrong_types_and_out_of_range_values_name_the_argument() -> None:
    with pytest.raises(WrongTypeError, match=r"from_state must be a RunState .* got str 'x'"):
        validate_transition("x", RunState.READY)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"to_state must be a run state wire value 0\.\.8"):
        validate_transition(RunState.READY, 9)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="got -1"):
        allowed_targets(-1)  # type: ignore[arg-type]
    with pytest.raises(WrongTypeError, match="got NoneType None"):
        allowed_targets(None)  # type: ignore[arg-type]
    assert not is_valid_transition("Ready", "Leased")  # type: ignore[arg-type]


def test_from_wire() -> None:
    assert RunState.from_wire(4) is RunState.RETRY_WAIT
    assert RunState.from_wire(RunState.READY) is RunState.READY
    for bad in (-1, 9, 2**64):
        with pytest.raises(ValidationError, match=f"got {bad}"):
            RunState.from_wire(bad)
    for wrong in (True, 1.0, "1", None):
        with pytest.raises(WrongTypeError):
            RunState.from_wire(wrong)


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("running", RunState.RUNNING),
        ("RUNNING", RunState.RUNNING),
        ("Running", RunState.RUNNING),
        ("retry_wait", RunState.RETRY_WAIT),
        ("RetryWait", RunState.RETRY_WAIT),
        ("retry-wait", RunState.RETRY_WAIT),
        (4, RunState.RETRY_WAIT),
    ],
)
def test_parse(text: str | int, state: RunState) -> None:
    assert RunState.parse(text) is state


def test_parse_rejects_unknown_names() -> None:
    with pytest.raises(ValidationError, match=r"unknown run state 'done'; expected one of Sched"):
        RunState.parse("done")
    with pytest.raises(WrongTypeError):
        RunState.parse(1.5)  # type: ignore[arg-type]


states = st.sampled_from(list(RunState))


@given(states, states)
def test_valid_transitions_always_change_state(a: RunState, b: RunState) -> None:
    if is_valid_transition(a, b):
        assert a != b
        assert not a.is_terminal


@given(st.sampled_from(sorted(TERMINAL_STATES)), states)
def test_terminal_states_have_no_exits(a: RunState, b: RunState) -> None:
    assert not is_valid_transition(a, b)
    assert allowed_targets(a) == frozenset()
    with pytest.raises(InvalidTransitionError):
        validate_transition(a, b)


@given(states, states)
def test_python_table_agrees_with_the_literal_spec_copy(a: RunState, b: RunState) -> None:
    assert is_valid_transition(a, b) is (b.label in SPEC_TABLE[a.label])


@given(st.lists(states, min_size=1, max_size=30))
def test_any_legal_walk_stops_changing_once_terminal(walk: list[RunState]) -> None:
    current = RunState.SCHEDULED
    for nxt in walk:
        if is_valid_transition(current, nxt):
            current = nxt
    if current.is_terminal:
        assert all(not is_valid_transition(current, s) for s in RunState)


def test_every_member_of_the_model_enums_is_true() -> None:
    """``RunState.SCHEDULED`` and ``AttemptOutcome.SUCCESS`` have the wire value 0: as plain
    IntEnum members they were false, so ``attempt.outcome and attempt.outcome.label`` gave the
    enum instead of "Success", and ``if attempt.outcome:`` took a success for an open
    attempt. Still ints equal to their wire values."""
    from actionqueue.core.run.attempt import AttemptOutcome
    from actionqueue.core.task.constraints import HoldPolicy
    from actionqueue.core.task.run_policy import MisfireKind, PolicyKind

    for enum_cls in (RunState, AttemptOutcome, HoldPolicy, MisfireKind, PolicyKind):
        for member in enum_cls:
            assert member, member
            assert member == int(member)
    assert RunState.SCHEDULED == 0
    assert (AttemptOutcome.SUCCESS and AttemptOutcome.SUCCESS.label) == "Success"
