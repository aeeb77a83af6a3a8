"""Attempt outcomes and the retry decision (SPEC §4)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actionqueue.core.run.attempt import AttemptOutcome, counts_toward_cap, decide
from actionqueue.core.run.state import RunState
from actionqueue.core.run.transitions import is_valid_transition
from actionqueue.errors import ValidationError, WrongTypeError

A = AttemptOutcome
S = RunState


@dataclass(frozen=True)
class RetryOn:
    """Stand-in with the shape of the task constraints' retry classification."""

    timeout: bool = True
    lost: bool = True


def test_outcome_wire_values_and_seed_aliases() -> None:
    expected = {
        "Success": 0,
        "RetryableFailure": 1,
        "TerminalFailure": 2,
        "Timeout": 3,
        "Suspended": 4,
        "Lost": 5,
        "Canceled": 6,
    }
    assert len(AttemptOutcome) == 7
    for name, value in expected.items():
        outcome = AttemptOutcome(value)
        assert getattr(AttemptOutcome, name) is outcome
        assert outcome.label == name == str(outcome) == f"{outcome}"
        assert AttemptOutcome.from_wire(value) is outcome
    with pytest.raises(ValidationError, match=r"0\.\.6, got 7"):
        AttemptOutcome.from_wire(7)
    with pytest.raises(ValidationError, match="got -1"):
        AttemptOutcome.from_wire(-1)
    with pytest.raises(WrongTypeError, match="got str 'Success'"):
        AttemptOutcome.from_wire("Success")


def test_only_suspended_does_not_count_toward_the_cap() -> None:
    for outcome in AttemptOutcome:
        assert counts_toward_cap(outcome) is (outcome is not A.SUSPENDED)
        assert outcome.counts_toward_cap is (outcome is not A.SUSPENDED)


# (outcome, counted attempts including the one that just ended, max_attempts) -> next state
TABLE = [
    # Success / TerminalFailure / Suspended / Canceled ignore the counts.
    (A.SUCCESS, 1, 1, S.COMPLETED),
    (A.SUCCESS, 3, 3, S.COMPLETED),
    (A.SUCCESS, 1, 5, S.COMPLETED),
    (A.TERMINAL_FAILURE, 1, 5, S.FAILED),
    (A.TERMINAL_FAILURE, 5, 5, S.FAILED),
    (A.SUSPENDED, 0, 1, S.SUSPENDED),
    (A.SUSPENDED, 1, 1, S.SUSPENDED),
    (A.SUSPENDED, 9, 3, S.SUSPENDED),
    (A.CANCELED, 1, 3, S.CANCELED),
    # Retryable kinds: RetryWait strictly below the cap, Failed at or above it.
    (A.RETRYABLE_FAILURE, 1, 1, S.FAILED),
    (A.RETRYABLE_FAILURE, 1, 2, S.RETRY_WAIT),
    (A.RETRYABLE_FAILURE, 2, 2, S.FAILED),
    (A.RETRYABLE_FAILURE, 2, 3, S.RETRY_WAIT),
    (A.RETRYABLE_FAILURE, 3, 3, S.FAILED),
    (A.RETRYABLE_FAILURE, 4, 3, S.FAILED),
    (A.RETRYABLE_FAILURE, 0, 1, S.RETRY_WAIT),
    (A.TIMEOUT, 1, 1, S.FAILED),
    (A.TIMEOUT, 1, 2, S.RETRY_WAIT),
    (A.TIMEOUT, 2, 2, S.FAILED),
    (A.LOST, 1, 1, S.FAILED),
    (A.LOST, 1, 2, S.RETRY_WAIT),
    (A.LOST, 2, 2, S.FAILED),
    (A.LOST, 99, 100, S.RETRY_WAIT),
    (A.LOST, 100, 100, S.FAILED),
]


@pytest.mark.parametrize(("outcome", "counted", "cap", "expected"), TABLE)
def test_decision_table(outcome: A, counted: int, cap: int, expected: S) -> None:
    assert decide(outcome, counted, cap) is expected
    # With a classification that retries everything the answer is the same.
    assert decide(outcome, counted, cap, RetryOn()) is expected


@pytest.mark.parametrize(
    ("outcome", "retry_on", "expected"),
    [
        (A.TIMEOUT, RetryOn(timeout=False), S.FAILED),
        (A.TIMEOUT, RetryOn(lost=False), S.RETRY_WAIT),
        (A.LOST, RetryOn(lost=False), S.FAILED),
        (A.LOST, RetryOn(timeout=False), S.RETRY_WAIT),
        (A.RETRYABLE_FAILURE, RetryOn(timeout=False, lost=False), S.RETRY_WAIT),
        (A.SUCCESS, RetryOn(timeout=False, lost=False), S.COMPLETED),
        (A.SUSPENDED, RetryOn(timeout=False, lost=False), S.SUSPENDED),
    ],
)
def test_retry_classification(outcome: A, retry_on: RetryOn, expected: S) -> None:
    assert decide(outcome, 1, 3, retry_on) is expected


def test_plain_int_outcomes_are_accepted() -> None:
    assert decide(1, 1, 2) is S.RETRY_WAIT  # type: ignore[arg-type]
    assert decide(0, 1, 1) is S.COMPLETED  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="outcome must be an attempt outcome"):
        decide(7, 1, 1)  # type: ignore[arg-type]
    with pytest.raises(WrongTypeError, match="outcome must be an AttemptOutcome"):
        decide("Success", 1, 1)  # type: ignore[arg-type]


def test_bad_counts_are_rejected_with_field_and_value() -> None:
    with pytest.raises(ValidationError, match="max_attempts must be >= 1, got 0"):
        decide(A.SUCCESS, 0, 0)
    with pytest.raises(ValidationError, match="counted_attempts must be >= 0, got -1"):
        decide(A.SUCCESS, -1, 1)
    with pytest.raises(WrongTypeError, match=r"counted_attempts must be an int, got float 1\.0"):
        decide(A.SUCCESS, 1.0, 1)  # type: ignore[arg-type]
    with pytest.raises(WrongTypeError, match="max_attempts must be an int, got bool True"):
        decide(A.SUCCESS, 1, True)


retryable = st.sampled_from([A.RETRYABLE_FAILURE, A.TIMEOUT, A.LOST])


@given(retryable, st.integers(0, 1000), st.integers(1, 1000))
def test_retry_never_exceeds_the_cap(outcome: A, counted: int, cap: int) -> None:
    state = decide(outcome, counted, cap)
    assert state in (S.RETRY_WAIT, S.FAILED)
    assert (state is S.RETRY_WAIT) is (counted < cap)


@given(
    st.sampled_from(list(A)), st.integers(0, 50), st.integers(1, 50), st.booleans(), st.booleans()
)
def test_decision_is_always_a_legal_exit_from_running(
    outcome: A, counted: int, cap: int, timeout: bool, lost: bool
) -> None:
    state = decide(outcome, counted, cap, RetryOn(timeout=timeout, lost=lost))
    assert is_valid_transition(S.RUNNING, state)


@given(st.integers(1, 50))
def test_simulated_run_makes_exactly_max_attempts_counted_attempts(cap: int) -> None:
    # A handler that always fails retryably: the run makes exactly `cap` counted attempts.
    counted = 0
    state = S.RUNNING
    while state is not S.FAILED:
        counted += 1  # an attempt is counted when it starts
        state = decide(A.RETRYABLE_FAILURE, counted, cap)
    assert counted == cap


def test_works_with_the_task_constraints_retry_classification() -> None:
    from actionqueue.core.task.constraints import RetryOn as RealRetryOn
    from actionqueue.core.task.constraints import TaskConstraints

    strict = TaskConstraints(max_attempts=3, retry_on=RealRetryOn(timeout=False, lost=True))
    assert decide(A.TIMEOUT, 1, strict.max_attempts, strict.retry_on) is S.FAILED
    assert decide(A.LOST, 1, strict.max_attempts, strict.retry_on) is S.RETRY_WAIT
    default = TaskConstraints()
    assert default.max_attempts == 1
    assert decide(A.RETRYABLE_FAILURE, 1, default.max_attempts, default.retry_on) is S.FAILED
