"""What the engine remembers per task: one GC-untracked row, shapes shared by value, the
spec handed out by a dispatch equal to the one submitted."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from test_engine import spec

from actionqueue.core import (
    AttemptOutcome,
    RunPolicy,
    RunState,
    TaskConstraints,
    TaskId,
    TaskMetadata,
    TaskPayload,
    TaskSpec,
)
from actionqueue.errors import LeaseError


def test_rows_are_untracked_and_shapes_shared(env: Any) -> None:
    e = env.engine
    specs = [spec() for _ in range(50)]  # equal (not identical) policy/constraints/metadata
    e.submit_many(specs)
    e.submit(spec())
    gc.collect()  # untracks tuples of atomic values
    rows = [e._tasks[s.task_id.bytes] for s in specs]
    assert not any(gc.is_tracked(r) for r in rows)
    assert len({r[0] for r in rows}) == 1
    assert len(e._shapes) == 1
    other = spec(max_attempts=3)
    e.submit(other)
    assert len(e._shapes) == 2


def test_dispatch_hands_out_the_submitted_spec(env: Any) -> None:
    e = env.engine
    s = TaskSpec(
        TaskId.new(),
        TaskPayload(b'{"a": 1}', "application/json"),
        RunPolicy.once(),
        TaskConstraints(max_attempts=2, timeout=5_000, concurrency_key="k"),
        TaskMetadata(3, ("t1", "t2"), "described"),
        handler="h",
        dedupe_key="d",
    )
    e.submit(s)
    (d,) = e.dispatch_next(limit=5)
    assert d.spec == s
    assert d.task_id == s.task_id
    assert d.spec is not s
    assert d.deadline is not None
    assert d.lease_expires_at - d.deadline >= 5_000


def test_prune_forgets_rows_and_shapes_and_live_tasks_are_looked_up_again(env: Any) -> None:
    e = env.engine
    done, live = spec(), spec(max_attempts=2)
    e.submit_many([done, live])
    (d,) = e.dispatch_next(limit=1)  # creation order: `done` first
    assert d.task_id == done.task_id
    e.finish_attempt(d.run_id, d.attempt_id, AttemptOutcome.SUCCESS)
    env.clock.advance(1_000)
    e.prune(env.clock.now() + 1)
    assert e._tasks == {}
    assert e._shapes == {}
    (x,) = e.dispatch_next(limit=5)  # the live task: its spec comes from the authority now
    assert x.task_id == live.task_id
    assert x.spec == live


def test_a_once_tasks_row_is_forgotten_when_its_run_is_terminal(env: Any) -> None:
    """A finished Once task's row (its payload included) is dropped, so a long-lived queue does
    not keep every payload it ever ran in Python; retries and repeat tasks keep theirs."""
    from actionqueue.engine import Finish

    e = env.engine
    ok, failing, retried, batched = spec(), spec(), spec(max_attempts=2), spec()
    repeat = spec(RunPolicy.repeat(2, 1_000))
    e.submit_many([ok, failing, retried, batched, repeat])
    by_task = {d.task_id: d for d in e.dispatch_next(limit=10)}
    assert set(by_task) == {s.task_id for s in (ok, failing, retried, batched, repeat)}

    def row(s: TaskSpec) -> bool:
        return s.task_id.bytes in e._tasks

    d = by_task[ok.task_id]
    e.finish_attempt(d.run_id, d.attempt_id, AttemptOutcome.SUCCESS)
    d = by_task[failing.task_id]
    e.finish_attempt(d.run_id, d.attempt_id, AttemptOutcome.TERMINAL_FAILURE, error="boom")
    d = by_task[retried.task_id]
    e.finish_attempt(d.run_id, d.attempt_id, AttemptOutcome.RETRYABLE_FAILURE, error="again")
    d = by_task[repeat.task_id]
    e.finish_attempt(d.run_id, d.attempt_id, AttemptOutcome.SUCCESS)
    d = by_task[batched.task_id]
    (state,) = e.finish_attempts([Finish(d.run_id, d.attempt_id, AttemptOutcome.SUCCESS)])
    assert state is RunState.COMPLETED
    assert not row(ok)
    assert not row(failing)
    assert not row(batched)
    assert row(retried)
    assert row(repeat)

    # The retry is dispatched from its row, then forgotten once it is terminal.
    (again,) = e.dispatch_next(limit=10)
    assert again.task_id == retried.task_id
    assert again.spec == retried
    assert again.attempt == 2
    e.finish_attempt(again.run_id, again.attempt_id, AttemptOutcome.SUCCESS)
    assert not row(retried)

    # A repeated result for a forgotten task is still judged from the authority's record.
    d = by_task[ok.task_id]
    with pytest.raises(LeaseError, match="already finished"):
        e.finish_attempt(d.run_id, d.attempt_id, AttemptOutcome.SUCCESS)
    rec = e.get_task(ok.task_id)
    assert rec is not None
    assert rec.spec == ok
