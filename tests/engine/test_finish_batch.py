"""``Engine.finish_attempts``: many finishes in one record, per-item results, fallbacks."""

from __future__ import annotations

from typing import Any

import pytest

from actionqueue.core import (
    AttemptId,
    AttemptOutcome,
    RunPolicy,
    RunState,
    TaskConstraints,
    TaskId,
    TaskSpec,
)
from actionqueue.engine import Finish
from actionqueue.errors import ActionQueueError, ValidationError, WrongTypeError


def _spec(max_attempts: int = 1) -> TaskSpec:
    return TaskSpec(TaskId.new(), b"", RunPolicy.once(), TaskConstraints(max_attempts=max_attempts))


def test_one_record_for_many_finishes(env: Any) -> None:
    e = env.engine
    e.submit_many([_spec(), _spec(), _spec(max_attempts=2)])
    d = e.dispatch_next(limit=3)
    assert len(d) == 3
    before = e._auth.latest_sequence
    out = e.finish_attempts(
        [
            Finish(d[0].run_id, d[0].attempt_id, AttemptOutcome.SUCCESS, output=b"ok"),
            Finish(d[1].run_id, d[1].attempt_id, AttemptOutcome.TERMINAL_FAILURE, error="no"),
            Finish(d[2].run_id, d[2].attempt_id, AttemptOutcome.RETRYABLE_FAILURE, error="x"),
        ]
    )
    assert out == [RunState.COMPLETED, RunState.FAILED, RunState.RETRY_WAIT]
    assert e._auth.latest_sequence == before + 6  # one record of 6 events
    (retry,) = e.dispatch_next(limit=3)
    assert retry.run_id == d[2].run_id
    assert retry.attempt == 2
    assert e.finish_attempts([Finish(retry.run_id, retry.attempt_id, AttemptOutcome.SUCCESS)]) == [
        RunState.COMPLETED
    ]


def test_a_stale_item_does_not_block_the_others(env: Any) -> None:
    e = env.engine
    ids = e.submit_many([_spec(), _spec(), _spec()])
    d = {x.task_id: x for x in e.dispatch_next(limit=3)}
    e.cancel_run(d[ids[1]].run_id)  # canceled while "running"
    out = e.finish_attempts(
        [Finish(d[t].run_id, d[t].attempt_id, AttemptOutcome.SUCCESS) for t in ids]
        + [Finish(d[ids[2]].run_id, AttemptId.new(), AttemptOutcome.SUCCESS)]
    )
    assert out[0] is RunState.COMPLETED
    assert out[1] is RunState.CANCELED
    assert out[2] is RunState.COMPLETED
    assert isinstance(out[3], ActionQueueError)  # no such attempt: reported, not raised
    states = [e.runs_for_task(t)[0].state for t in ids]
    assert states == [RunState.COMPLETED, RunState.CANCELED, RunState.COMPLETED]


def test_a_bad_item_is_its_own_error_and_the_valid_finishes_are_recorded(env: Any) -> None:
    """One item with an error text UTF-8 cannot encode, or one that is not a Finish at all,
    used to make the whole call raise, and the valid finishes beside it were lost."""
    e = env.engine
    e.submit_many([_spec(max_attempts=2), _spec(max_attempts=2)])
    d1, d2 = e.dispatch_next(limit=2)
    ok = Finish(d1.run_id, d1.attempt_id, AttemptOutcome.SUCCESS)
    bad = Finish(d2.run_id, d2.attempt_id, AttemptOutcome.RETRYABLE_FAILURE, "bad \ud800")
    states = e.finish_attempts([None, ok, bad])  # type: ignore[list-item]
    assert isinstance(states[0], WrongTypeError)
    assert states[1] is RunState.COMPLETED
    assert isinstance(states[2], ValidationError)
    assert "lone surrogate" in str(states[2])
    assert e.finish_attempt(d2.run_id, d2.attempt_id, AttemptOutcome.SUCCESS) is RunState.COMPLETED


def test_now_beyond_int64_is_a_validation_error(env: Any) -> None:
    with pytest.raises(ValidationError, match="now must be int milliseconds"):
        env.engine.dispatch_next(now=2**63)
    with pytest.raises(ValidationError, match="owner"):
        env.engine.dispatch_next(owner="\ud800")
