"""Engine scenarios (issue 5), each run against the fake and the real authority."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from actionqueue.core import (
    AttemptOutcome,
    Backoff,
    HoldPolicy,
    MisfirePolicy,
    RunPolicy,
    RunState,
    TaskConstraints,
    TaskId,
    TaskMetadata,
    TaskSpec,
)
from actionqueue.engine import DefaultSelector, Dispatch, Engine
from actionqueue.errors import (
    CommandRejectedError,
    InvalidTransitionError,
    LeaseError,
    NotFoundError,
    ValidationError,
    WrongTypeError,
)
from conftest import T0, Env

S = RunState
Out = AttemptOutcome
MIN = 60_000


def spec(
    policy: RunPolicy | None = None,
    *,
    max_attempts: int = 1,
    key: str | None = None,
    hold: HoldPolicy = HoldPolicy.HOLD_DURING_RETRY,
    timeout: int | None = None,
    retry: Backoff | None = None,
    priority: int = 0,
    dedupe: str | None = None,
    handler: str | None = None,
) -> TaskSpec:
    return TaskSpec(
        TaskId.new(),
        b"payload",
        policy or RunPolicy.once(),
        TaskConstraints(
            max_attempts=max_attempts,
            timeout=timeout,
            concurrency_key=key,
            hold_policy=hold,
            retry=retry,
        ),
        TaskMetadata(priority=priority),
        handler=handler,
        dedupe_key=dedupe,
    )


def drain(engine: Engine, outcome: AttemptOutcome = Out.SUCCESS, limit: int = 100) -> int:
    """Dispatch and finish everything runnable now; returns the number of attempts."""
    n = 0
    while True:
        batch = engine.dispatch_next(limit=limit)
        if not batch:
            return n
        for d in batch:
            engine.finish_attempt(d.run_id, d.attempt_id, outcome)
            n += 1


def states(engine: Engine, task_id: TaskId) -> list[RunState]:
    return [r.state for r in engine.runs_for_task(task_id)]


# --- accounting --------------------------------------------------------------------------------


def test_once_runs_exactly_once(env: Env) -> None:
    e = env.engine
    tid = e.submit(spec())
    assert drain(e) == 1
    env.clock.advance(10 * MIN)
    assert drain(e) == 0
    assert states(e, tid) == [S.COMPLETED]
    assert e.next_wakeup() is None


def test_repeat_runs_exactly_n_in_schedule_order(env: Env) -> None:
    e = env.engine
    tid = e.submit(spec(RunPolicy.repeat(4, 1_000)))
    seen: list[int] = []
    for _ in range(10):
        for d in e.dispatch_next(limit=10):
            seen.append(d.scheduled_at)
            e.finish_attempt(d.run_id, d.attempt_id, Out.SUCCESS)
        w = e.next_wakeup()
        if w is None:
            break
        env.clock.set(w)
    assert seen == [T0, T0 + 1_000, T0 + 2_000, T0 + 3_000]
    assert states(e, tid) == [S.COMPLETED] * 4


def test_submit_writes_task_and_runs_as_one_batch(env: Env) -> None:
    e = env.engine
    before = env.auth.latest_sequence
    tid = e.submit(spec(RunPolicy.repeat(3, 10)))
    assert env.auth.latest_sequence == before + 4  # TaskCreate + 3 RunCreates, one record
    rec = e.get_task(tid)
    assert rec is not None
    assert rec.derived == 3
    assert rec.non_terminal == 3


def test_submit_many_one_batch_and_dedupe(env: Env) -> None:
    e = env.engine
    a = spec(dedupe="daily-report")
    b = spec(dedupe="daily-report")
    c = spec()
    ids = e.submit_many([a, b, c])
    assert ids == [a.task_id, a.task_id, c.task_id]
    assert e.submit(spec(dedupe="daily-report")) == a.task_id
    assert e.get_task(b.task_id) is None
    drain(e)
    # The key is freed once the task is finished: a new task may take it.
    d = spec(dedupe="daily-report")
    assert e.submit(d) == d.task_id


def _engine_with_racing_writes(
    env: Env, on_write: Callable[[Callable[[], object]], object]
) -> Engine:
    """An engine whose every record goes through ``on_write(write)``: the hook may let other
    writers in before (or after) calling ``write()``, the authority's own submit."""
    inner = env.auth

    class Racing:
        def __getattr__(self, name: str) -> object:
            return getattr(inner, name)

        def submit_wire(
            self, events: object, durability: object, expected: object = None
        ) -> object:
            return on_write(lambda: inner.submit_wire(events, durability, expected))

    env.auth = Racing()
    try:
        return env._engine()
    finally:
        env.auth = inner


def test_submit_many_that_keeps_losing_dedupe_races_returns_the_winners(env: Env) -> None:
    """Other writers take keys of a batch between its lookup and its write, four times in a
    row (one more key each time): every key then names a live task, and the batch answers
    with those tasks and writes what is left. It raised the refusal after three lost races."""
    rivals = [spec(dedupe=f"k{i}") for i in range(4)]
    won = list(rivals)
    inner = env.auth
    rival = Engine(inner, env.clock, owner="rival")

    def on_write(write: Callable[[], object]) -> object:
        if rivals:  # another thread wins the race for one more key of the batch
            rival.submit(rivals.pop(0))
        return write()

    e = _engine_with_racing_writes(env, on_write)
    mine = [spec(dedupe=f"k{i}") for i in range(5)]
    assert e.submit_many(mine) == [r.task_id for r in won] + [mine[4].task_id]
    assert [e.get_task(s.task_id) is None for s in mine] == [True] * 4 + [False]


def test_submit_refused_over_a_dedupe_key_whose_holder_finished_since_writes_its_task(
    env: Env,
) -> None:
    """Another writer takes the key between this submit's lookup and its write, and its task
    finishes before the refusal is looked into: the key is free again, and the submit writes
    its own task. It raised the refusal (CommandRejectedError 'dedupe key ... is held by live
    task'), although a submit with a dedupe key never fails over the key: found under
    concurrent submitters with fast handlers (the runtime kill loop)."""
    inner = env.auth
    rival = Engine(inner, env.clock, owner="rival")
    raced = [spec(dedupe="k")]

    def on_write(write: Callable[[], object]) -> object:
        if not raced:
            return write()
        rival.submit(raced.pop())  # wins the race for the key...
        try:
            return write()
        finally:  # ...and its task finishes before the refusal is looked into
            (d,) = rival.dispatch_next()
            rival.finish_attempt(d.run_id, d.attempt_id, Out.SUCCESS)

    e = _engine_with_racing_writes(env, on_write)
    mine = spec(dedupe="k")
    assert e.submit(mine) == mine.task_id
    assert e.get_task(mine.task_id) is not None
    assert e.submit(spec(dedupe="k")) == mine.task_id  # it holds the key now


def test_submit_refused_for_another_reason_raises_although_it_has_a_dedupe_key(
    env: Env,
) -> None:
    """A refusal a lost race does not explain (here: the task id is taken) is raised, once."""
    e = env.engine
    first = spec()
    e.submit(first)
    again = TaskSpec(
        first.task_id,
        b"payload",
        RunPolicy.once(),
        TaskConstraints(),
        TaskMetadata(),
        dedupe_key="fresh",
    )
    with pytest.raises(CommandRejectedError, match="already exists"):
        e.submit(again)
    assert e.submit(spec(dedupe="fresh")) != first.task_id  # the key was never taken


# --- retries -------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", [Out.RETRYABLE_FAILURE, Out.TIMEOUT, Out.LOST])
@pytest.mark.parametrize("max_attempts", [1, 3])
def test_retry_cap(env: Env, outcome: AttemptOutcome, max_attempts: int) -> None:
    e = env.engine
    tid = e.submit(spec(max_attempts=max_attempts, retry=Backoff.fixed(500)))
    dispatches: list[Dispatch] = []
    for _ in range(10):
        batch = e.dispatch_next(limit=5)
        for d in batch:
            dispatches.append(d)
            e.finish_attempt(d.run_id, d.attempt_id, outcome)
        w = e.next_wakeup()
        if w is None:
            break
        env.clock.set(w)
    assert len(dispatches) == max_attempts
    assert [d.attempt for d in dispatches] == list(range(1, max_attempts + 1))
    assert len({d.run_id for d in dispatches}) == 1  # retries are attempts of the same run
    assert len({d.attempt_id for d in dispatches}) == max_attempts
    (run,) = e.runs_for_task(tid)
    assert run.state is S.FAILED
    assert run.attempt_count == max_attempts
    assert [a.outcome for a in run.attempts] == [outcome] * max_attempts


def test_mixed_outcomes_then_success(env: Env) -> None:
    e = env.engine
    tid = e.submit(spec(max_attempts=3, retry=Backoff.fixed(100)))
    outcomes = [Out.TIMEOUT, Out.RETRYABLE_FAILURE, Out.SUCCESS]
    for o in outcomes:
        (d,) = e.dispatch_next(limit=5)
        assert e.finish_attempt(d.run_id, d.attempt_id, o, error=None) in (
            S.RETRY_WAIT,
            S.COMPLETED,
        )
        env.clock.advance(100)
    (run,) = e.runs_for_task(tid)
    assert run.state is S.COMPLETED
    assert [a.outcome for a in run.attempts] == outcomes


def test_terminal_failure_fails_at_once(env: Env) -> None:
    e = env.engine
    e.submit(spec(max_attempts=5))
    (d,) = e.dispatch_next()
    assert e.finish_attempt(d.run_id, d.attempt_id, Out.TERMINAL_FAILURE, error="bad") is S.FAILED
    run = e.get_run(d.run_id)
    assert run is not None
    assert run.attempts[0].error == "bad"


def test_retry_waits_for_backoff_and_retry_delay_overrides(env: Env) -> None:
    e = env.engine
    e.submit(spec(max_attempts=3, retry=Backoff.fixed(5_000)))
    (d,) = e.dispatch_next()
    e.finish_attempt(d.run_id, d.attempt_id, Out.RETRYABLE_FAILURE)
    assert e.next_wakeup() == T0 + 5_000
    env.clock.set(T0 + 4_999)
    assert e.dispatch_next() == []
    env.clock.set(T0 + 5_000)
    (d2,) = e.dispatch_next()
    assert d2.attempt == 2
    e.finish_attempt(d2.run_id, d2.attempt_id, Out.RETRYABLE_FAILURE, retry_delay=1)
    assert e.next_wakeup() == T0 + 5_001


def test_suspended_does_not_count_and_retry_now_resumes(env: Env) -> None:
    e = env.engine
    e.submit(spec(max_attempts=1))
    (d,) = e.dispatch_next()
    assert e.finish_attempt(d.run_id, d.attempt_id, Out.SUSPENDED) is S.SUSPENDED
    assert e.dispatch_next() == []
    e.retry_now(d.run_id)
    (d2,) = e.dispatch_next()
    assert d2.attempt == 1
    assert e.finish_attempt(d2.run_id, d2.attempt_id, Out.SUCCESS) is S.COMPLETED


def test_retry_now_skips_backoff_and_refuses_terminal(env: Env) -> None:
    e = env.engine
    e.submit(spec(max_attempts=2, retry=Backoff.fixed(60_000)))
    (d,) = e.dispatch_next()
    e.finish_attempt(d.run_id, d.attempt_id, Out.RETRYABLE_FAILURE)
    e.retry_now(d.run_id)
    (d2,) = e.dispatch_next()
    assert d2.attempt == 2
    with pytest.raises(CommandRejectedError, match="RetryWait or"):
        e.retry_now(d2.run_id)  # Running: nothing to retry
    e.finish_attempt(d2.run_id, d2.attempt_id, Out.RETRYABLE_FAILURE)
    with pytest.raises(InvalidTransitionError, match="terminal"):
        e.retry_now(d2.run_id)  # Failed is final


# --- misfires --------------------------------------------------------------------------------


def _late(env: Env, policy: RunPolicy, gap: int) -> tuple[TaskId, list[RunState]]:
    tid = env.engine.submit(spec(policy))
    env.clock.advance(gap)
    env.engine.tick()
    return tid, states(env.engine, tid)


def test_misfire_catch_up_runs_every_missed_run(env: Env) -> None:
    tid, st = _late(env, RunPolicy.repeat(5, MIN), 10 * MIN)
    assert st == [S.READY] * 5
    run = env.engine.runs_for_task(tid)[0]
    assert run.history[-1].reason is not None
    assert run.history[-1].reason.startswith("misfire: caught up")
    assert drain(env.engine) == 5


def test_misfire_catch_up_cap(env: Env) -> None:
    pol = RunPolicy.repeat(5, MIN, misfire=MisfirePolicy.catch_up(cap=2, grace=0))
    _, st = _late(env, pol, 10 * MIN)
    assert st == [S.CANCELED] * 3 + [S.READY] * 2


def test_misfire_partial_catch_up_keeps_future_runs(env: Env) -> None:
    _, st = _late(env, RunPolicy.repeat(5, MIN), 2 * MIN + 10)
    assert st == [S.READY] * 3 + [S.SCHEDULED] * 2


def test_misfire_coalesce_and_skip(env: Env) -> None:
    pol = RunPolicy.repeat(4, MIN, misfire=MisfirePolicy.coalesce(grace=0))
    tid, st = _late(env, pol, 5 * MIN)
    assert st == [S.CANCELED] * 3 + [S.READY]
    reason = env.engine.runs_for_task(tid)[-1].history[-1].reason
    assert reason == "misfire: coalesced 4 missed occurrences"
    pol = RunPolicy.repeat(4, MIN, misfire=MisfirePolicy.skip(grace=0))
    _, st = _late(env, pol, 5 * MIN)
    assert st == [S.CANCELED] * 4


def test_on_time_runs_are_not_misfires(env: Env) -> None:
    pol = RunPolicy.repeat(2, MIN, misfire=MisfirePolicy.skip())
    tid, st = _late(env, pol, 500)  # within the default 1 s grace
    assert st == [S.READY, S.SCHEDULED]
    assert env.engine.runs_for_task(tid)[0].history[-1].reason is None


# --- leases ----------------------------------------------------------------------------------


def test_lease_boundary_and_clock_moved_back(env: Env) -> None:
    e = env.engine
    e.submit(spec(max_attempts=2, retry=Backoff.fixed(1_000)))
    (d,) = e.dispatch_next()
    assert d.lease_expires_at == T0 + 10_000
    assert e.next_wakeup() == d.lease_expires_at
    env.clock.set(d.lease_expires_at - 1)
    assert e.tick().expired == 0
    env.clock.set(T0 - 5_000)  # moved back: still live
    assert e.tick().expired == 0
    env.clock.set(d.lease_expires_at)
    assert e.tick().expired == 1
    run = e.get_run(d.run_id)
    assert run is not None
    assert run.state is S.RETRY_WAIT
    assert run.attempts[0].outcome is Out.LOST
    with pytest.raises(LeaseError):
        e.finish_attempt(d.run_id, d.attempt_id, Out.SUCCESS)  # too late: already Lost


def test_lease_expiry_reeligible_completes_with_lineage(env: Env) -> None:
    e = env.engine
    tid = e.submit(spec(max_attempts=3))
    (d,) = e.dispatch_next()
    env.clock.advance(10_000)
    (d2,) = e.dispatch_next()  # the sweep runs first, then the run is re-dispatched
    assert d2.run_id == d.run_id
    assert d2.attempt == 2
    assert d2.attempt_id != d.attempt_id
    e.finish_attempt(d2.run_id, d2.attempt_id, Out.SUCCESS)
    (run,) = e.runs_for_task(tid)
    assert run.state is S.COMPLETED
    assert [a.outcome for a in run.attempts] == [Out.LOST, Out.SUCCESS]
    assert any(h.reason and "lease expired" in h.reason for h in run.history)


def test_lost_on_last_attempt_fails(env: Env) -> None:
    e = env.engine
    e.submit(spec(max_attempts=1))
    (d,) = e.dispatch_next()
    env.clock.advance(10_000)
    e.tick()
    run = e.get_run(d.run_id)
    assert run is not None
    assert run.state is S.FAILED


def test_the_sweep_reports_each_lost_attempt_once_by_handler(env: Env) -> None:
    """``on_lost`` hears of the attempts the expiry sweep finished as Lost (a runtime counts
    them: no result of theirs is ever recorded), by handler, once."""
    reported: list[dict[str | None, int]] = []
    e = Engine(
        env.auth,
        env.clock,
        owner="w1",
        default_lease_ms=10_000,
        on_lost=lambda lost: reported.append(dict(lost)),
    )
    for handler in ("a", "b", "a", None):
        e.submit(spec(max_attempts=2, handler=handler))
    batch = e.dispatch_next(limit=4)
    assert len(batch) == 4
    e.tick()
    assert reported == []  # leases still live
    env.clock.advance(10_000)
    assert e.tick().expired == 4
    assert reported == [{"a": 2, "b": 1, None: 1}]
    with pytest.raises(LeaseError):
        e.finish_attempt(batch[0].run_id, batch[0].attempt_id, Out.SUCCESS)
    env.clock.advance(10 * MIN)
    e.tick()
    drain(e)
    assert reported == [{"a": 2, "b": 1, None: 1}]


def test_dispatch_due_at_is_when_the_run_became_due_for_this_attempt(env: Env) -> None:
    """``Dispatch.due_at``: ``scheduled_at`` for a first attempt, the end of the backoff for a
    retry (however late it is promoted or woken), the moment ``retry_now`` or a release made the
    run Ready again; ``scheduled_at`` itself stays the run's."""
    e = env.engine
    tid = e.submit(spec(max_attempts=3, retry=Backoff.fixed(MIN)))
    (d,) = e.dispatch_next()
    assert d.due_at == d.scheduled_at == T0
    e.finish_attempt(d.run_id, d.attempt_id, Out.RETRYABLE_FAILURE)
    env.clock.advance(MIN + 5_000)  # promoted and dispatched 5 s after the backoff ended
    (d,) = e.dispatch_next()
    assert (d.attempt, d.scheduled_at, d.due_at) == (2, T0, T0 + MIN)
    e.finish_attempt(d.run_id, d.attempt_id, Out.SUSPENDED)
    env.clock.advance(MIN)
    woken = env.clock.now()
    e.retry_now(d.run_id)
    env.clock.advance(1_000)
    (d,) = e.dispatch_next()
    assert (d.scheduled_at, d.due_at) == (T0, woken)
    env.clock.advance(1_000)
    released = env.clock.now()
    e.release(d.run_id)
    env.clock.advance(1_000)
    (d,) = e.dispatch_next()
    assert d.due_at == released
    e.finish_attempt(d.run_id, d.attempt_id, Out.RETRYABLE_FAILURE)
    backoff_end = env.clock.now() + MIN
    env.clock.advance(2 * MIN)  # no tick promoted it: retry_now finds the backoff long over
    e.retry_now(d.run_id)
    (d,) = e.dispatch_next()
    assert (d.attempt, d.due_at) == (3, backoff_end)
    e.finish_attempt(d.run_id, d.attempt_id, Out.SUCCESS)
    assert states(e, tid) == [S.COMPLETED]


def test_heartbeat_extends_and_refuses_others(env: Env) -> None:
    e = env.engine
    e.submit(spec())
    (d,) = e.dispatch_next()
    env.clock.advance(9_000)
    assert e.heartbeat(d.run_id, "w1") == T0 + 19_000
    env.clock.advance(5_000)
    assert e.tick().expired == 0
    with pytest.raises(LeaseError):
        e.heartbeat(d.run_id, "intruder")
    env.clock.set(T0 + 19_000)
    with pytest.raises(LeaseError):
        e.heartbeat(d.run_id, "w1")  # expired: never revived


def test_timeout_sets_deadline_and_longer_lease(env: Env) -> None:
    e = env.engine
    e.submit(spec(timeout=60_000))
    (d,) = e.dispatch_next()
    assert d.deadline == T0 + 60_000
    assert d.lease_expires_at == T0 + 65_000


def test_release_gives_the_attempt_back(env: Env) -> None:
    e = env.engine
    e.submit(spec(max_attempts=1))
    (d,) = e.dispatch_next()
    with pytest.raises(LeaseError):
        e.release(d.run_id, "someone-else")
    e.release(d.run_id, "w1")
    run = e.get_run(d.run_id)
    assert run is not None
    assert run.state is S.READY
    assert run.attempt_count == 0
    (d2,) = e.dispatch_next()
    assert d2.attempt == 1
    assert e.finish_attempt(d2.run_id, d2.attempt_id, Out.SUCCESS) is S.COMPLETED


# --- concurrency keys --------------------------------------------------------------------------


def test_concurrency_key_exclusion_and_release_on_completion(env: Env) -> None:
    e = env.engine
    a = e.submit(spec(key="db"))
    b = e.submit(spec(key="db"))
    c = e.submit(spec(key="other"))
    batch = e.dispatch_next(limit=10)
    assert {d.task_id for d in batch} == {a, c}
    assert e.dispatch_next(limit=10) == []
    assert states(e, b) == [S.READY]  # skipped, not dropped
    first = next(d for d in batch if d.task_id == a)
    e.finish_attempt(first.run_id, first.attempt_id, Out.SUCCESS)
    (d,) = e.dispatch_next(limit=10)
    assert d.task_id == b


def test_key_held_during_retry_and_released_on_failure(env: Env) -> None:
    e = env.engine
    a = e.submit(spec(key="k", max_attempts=2, retry=Backoff.fixed(1_000)))
    b = e.submit(spec(key="k"))
    (d,) = e.dispatch_next(limit=5)
    assert d.task_id == a
    e.finish_attempt(d.run_id, d.attempt_id, Out.RETRYABLE_FAILURE)
    assert e.dispatch_next(limit=5) == []  # a holds "k" in RetryWait
    env.clock.advance(1_000)
    (d2,) = e.dispatch_next(limit=5)
    e.finish_attempt(d2.run_id, d2.attempt_id, Out.RETRYABLE_FAILURE)  # -> Failed, releases
    (d3,) = e.dispatch_next(limit=5)
    assert d3.task_id == b


def test_a_due_retry_goes_before_a_higher_priority_run_of_its_key(env: Env) -> None:
    """Under hold_during_retry the retry keeps its place at the key when it is due again: a
    run of the same key with a higher priority (or an earlier schedule) used to take the key
    the moment the retry became Ready."""
    e = env.engine
    a = e.submit(spec(key="k", max_attempts=2, retry=Backoff.fixed(1_000)))
    (d,) = e.dispatch_next(limit=5)
    e.finish_attempt(d.run_id, d.attempt_id, Out.RETRYABLE_FAILURE)
    b = e.submit(spec(key="k", priority=9))
    other = e.submit(spec(key="other", priority=1))
    env.clock.advance(1_000)
    got = e.dispatch_next(limit=5)
    assert [x.task_id for x in got] == [other, a]  # selection order across keys unchanged
    assert got[1].attempt == 2
    e.finish_attempt(got[1].run_id, got[1].attempt_id, Out.SUCCESS)
    (d3,) = e.dispatch_next(limit=5)
    assert d3.task_id == b


def test_release_on_retry_lets_others_run(env: Env) -> None:
    e = env.engine
    e.submit(
        spec(key="k", max_attempts=2, retry=Backoff.fixed(1_000), hold=HoldPolicy.RELEASE_ON_RETRY)
    )
    b = e.submit(spec(key="k"))
    (d,) = e.dispatch_next(limit=5)
    e.finish_attempt(d.run_id, d.attempt_id, Out.RETRYABLE_FAILURE)
    (d2,) = e.dispatch_next(limit=5)
    assert d2.task_id == b


def test_cancel_releases_key(env: Env) -> None:
    e = env.engine
    a = e.submit(spec(key="k"))
    b = e.submit(spec(key="k"))
    (d,) = e.dispatch_next(limit=5)
    assert d.task_id == a
    e.cancel_task(a, "no longer needed")
    assert e.finish_attempt(d.run_id, d.attempt_id, Out.SUCCESS) is S.CANCELED
    (d2,) = e.dispatch_next(limit=5)
    assert d2.task_id == b


# --- cancellation and negative transitions -----------------------------------------------------


def test_cancel_any_non_terminal_state(env: Env) -> None:
    e = env.engine
    t_sched = e.submit(spec(), origin=T0 + MIN)
    t_ready = e.submit(spec(priority=-1))
    t_run = e.submit(spec(priority=5))
    t_retry = e.submit(spec(priority=4, max_attempts=2, retry=Backoff.fixed(MIN)))
    got = {d.task_id: d for d in e.dispatch_next(limit=2)}
    assert set(got) == {t_run, t_retry}
    d = got[t_retry]
    e.finish_attempt(d.run_id, d.attempt_id, Out.RETRYABLE_FAILURE)
    for tid, st in [(t_sched, S.SCHEDULED), (t_ready, S.READY), (t_run, S.RUNNING)]:
        assert states(e, tid) == [st]
    assert states(e, t_retry) == [S.RETRY_WAIT]
    for tid in (t_sched, t_ready, t_run, t_retry):
        (run,) = e.runs_for_task(tid)
        e.cancel_run(run.run_id, "stop")
        assert states(e, tid) == [S.CANCELED]
        with pytest.raises(InvalidTransitionError):
            e.cancel_run(run.run_id)  # canceled runs cannot be revived
        with pytest.raises(InvalidTransitionError):
            e.retry_now(run.run_id)
    running = e.runs_for_task(t_run)[0]
    assert running.attempts[0].outcome is Out.CANCELED
    env.clock.advance(2 * MIN)
    assert drain(e) == 0


def test_cancel_task_cancels_runs_and_refuses_twice(env: Env) -> None:
    e = env.engine
    tid = e.submit(spec(RunPolicy.repeat(3, MIN)))
    e.cancel_task(tid)
    assert states(e, tid) == [S.CANCELED] * 3
    with pytest.raises(CommandRejectedError):
        e.cancel_task(tid)
    with pytest.raises(NotFoundError):
        e.cancel_task(TaskId.new())
    env.clock.advance(10 * MIN)
    assert drain(e) == 0


def test_refused_batch_changes_nothing(env: Env) -> None:
    e = env.engine
    e.submit(spec())
    (d,) = e.dispatch_next()
    seq = env.auth.latest_sequence
    with pytest.raises(CommandRejectedError):
        # Ready -> Running is not in the table.
        env.auth.submit_wire([(2, d.run_id.bytes, 1, 3, None, None, T0)], e.durability)
    with pytest.raises(CommandRejectedError):
        e.finish_attempt(d.run_id, type(d.attempt_id).new(), Out.SUCCESS)
    assert env.auth.latest_sequence == seq
    assert e.finish_attempt(d.run_id, d.attempt_id, Out.SUCCESS) is S.COMPLETED


# --- selection -------------------------------------------------------------------------------


def test_priority_then_schedule_then_creation(env: Env) -> None:
    e = env.engine
    low = e.submit(spec(priority=0))
    high = e.submit(spec(priority=10))
    early = e.submit(spec(priority=5), origin=T0 - 500)
    same = e.submit(spec(priority=5), origin=T0 - 500)
    order = [d.task_id for d in e.dispatch_next(limit=10)]
    assert order == [high, early, same, low]


def test_custom_selector(env: Env) -> None:
    class Lifo(DefaultSelector):
        def select(self, candidates, limit, held_keys=frozenset()):  # type: ignore[no-untyped-def]
            return list(reversed(list(candidates)))[:limit]

    env.engine = Engine(env.auth, env.clock, owner="w1", selector=Lifo())
    a = env.engine.submit(spec())
    b = env.engine.submit(spec())
    assert [d.task_id for d in env.engine.dispatch_next(limit=1)] == [b]
    assert [d.task_id for d in env.engine.dispatch_next(limit=1)] == [a]


# --- pause -----------------------------------------------------------------------------------


def test_pause_stops_leasing_and_promotion_but_not_the_sweep(env: Env) -> None:
    e = env.engine
    e.submit(spec(max_attempts=2))
    (d,) = e.dispatch_next()
    later = e.submit(spec(RunPolicy.repeat(3, MIN, misfire=MisfirePolicy.coalesce(grace=0))))
    assert e.pause() is True
    assert e.pause() is False
    assert e.is_paused
    assert e.next_wakeup() == T0 + 10_000  # only the lease expiry (``later`` is due at T0)
    env.clock.advance(5 * MIN)
    report = e.tick()
    assert report.expired == 1
    assert report.promoted == 0
    assert e.dispatch_next() == []
    assert states(e, later) == [S.SCHEDULED] * 3
    run = e.get_run(d.run_id)
    assert run is not None
    assert run.state is S.RETRY_WAIT
    # finish/submit/cancel keep working while paused
    e.submit(spec())
    assert e.resume() is True
    assert e.resume() is False
    e.tick()
    assert states(e, later) == [S.CANCELED, S.CANCELED, S.READY]  # downtime = misfire


# --- wake-ups, prune, stats ----------------------------------------------------------------


def test_next_wakeup(env: Env) -> None:
    e = env.engine
    assert e.next_wakeup() is None
    e.submit(spec(), origin=T0 + 5_000)
    assert e.next_wakeup() == T0 + 5_000
    e.submit(spec(), origin=T0 - 1)
    assert e.next_wakeup() == T0  # overdue: clamped to now


def test_prune_and_stats(env: Env) -> None:
    e = env.engine
    tid = e.submit(spec())
    drain(e)
    assert e.stats()["runs"]["Completed"] == 1
    env.clock.advance(MIN)
    e.prune(env.clock.now())
    assert e.runs_for_task(tid) == []
    assert e.get_task(tid) is None
    assert e.counts()[S.COMPLETED] == 0


# --- cron ------------------------------------------------------------------------------------


def test_cron_window_refills_and_respects_max_occurrences(env: Env) -> None:
    e = env.engine
    env.clock.set(T0 - T0 % MIN)  # on a minute boundary
    tid = e.submit(spec(RunPolicy.cron("* * * * *", max_occurrences=4, window=1)))
    done = 0
    for _ in range(10):
        done += drain(e)
        w = e.next_wakeup()
        if w is None:
            break
        env.clock.set(w)
    assert done == 4
    assert states(e, tid) == [S.COMPLETED] * 4


def test_cron_after_downtime_coalesces(env: Env) -> None:
    e = env.engine
    start = T0 - T0 % MIN
    env.clock.set(start)
    pol = RunPolicy.cron("* * * * *", window=2, misfire=MisfirePolicy.coalesce())
    tid = e.submit(spec(pol))
    env.clock.set(start + 24 * 60 * MIN + 30_000)  # a day later
    e.tick()
    assert drain(e) == 1
    runs = e.runs_for_task(tid)
    assert len(runs) <= 6  # not 1440
    ready_reasons = [h.reason for r in runs for h in r.history if h.to_state is S.READY]
    assert any(r and r.startswith("misfire: coalesced") for r in ready_reasons)
    assert S.SCHEDULED in [r.state for r in runs]  # the window is refilled


def test_cron_misfire_survivor_counts_toward_the_window(env: Env) -> None:
    e = env.engine
    start = T0 - T0 % MIN
    env.clock.set(start)
    tid = e.submit(spec(RunPolicy.cron("* * * * *", window=3, misfire=MisfirePolicy.coalesce())))
    env.clock.advance(2 * MIN + 30_000)  # 00:00 .. 00:02 missed, nothing after them yet
    e.tick()
    runs = e.runs_for_task(tid)
    assert [(r.scheduled_at - start, r.state) for r in runs] == [
        (0, S.CANCELED),
        (MIN, S.CANCELED),
        (2 * MIN, S.READY),  # the survivor is one of the window's 3 non-terminal runs
        (3 * MIN, S.SCHEDULED),
        (4 * MIN, S.SCHEDULED),
    ]


def test_cron_cancel_run_refills_window(env: Env) -> None:
    e = env.engine
    tid = e.submit(spec(RunPolicy.cron("0 * * * *", window=1)))
    (run,) = e.runs_for_task(tid)
    e.cancel_run(run.run_id)
    assert states(e, tid) == [S.CANCELED, S.SCHEDULED]


# --- argument errors ---------------------------------------------------------------------------


def test_bad_arguments_are_typed_errors(env: Env) -> None:
    from actionqueue.errors import ValidationError, WrongTypeError

    e = env.engine
    with pytest.raises(ValidationError, match="owner"):
        e.dispatch_next(owner="")
    with pytest.raises(ValidationError, match="limit"):
        e.dispatch_next(limit=-1)
    with pytest.raises(WrongTypeError, match="TaskSpec"):
        e.submit("not a spec")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        e.cancel_run(TaskId.new().bytes)
    with pytest.raises(NotFoundError):
        e.retry_now(TaskId.new().bytes)
    e.submit(spec())
    (d,) = e.dispatch_next()
    with pytest.raises(WrongTypeError, match="output"):
        e.finish_attempt(d.run_id, d.attempt_id, Out.SUCCESS, output="text")  # type: ignore[arg-type]
    assert e.finish_attempt(d.run_id, d.attempt_id, Out.SUCCESS, output=b"ok") is S.COMPLETED
    run = e.get_run(d.run_id)
    assert run is not None
    assert run.attempts[0].output == b"ok"


@pytest.mark.parametrize("limit", [1, 3, 200])  # 200: past the core's fast path
@pytest.mark.parametrize("selector", [False, True])
def test_busy_keys_are_skipped_not_dropped(env: Env, limit: int, selector: bool) -> None:
    """Keys the caller keeps busy (the runtime: a stopped handler still running) are treated
    like keys the log holds; the runs behind them stay Ready for a later dispatch."""
    if selector:
        env.engine = Engine(env.auth, env.clock, owner="w1", selector=DefaultSelector())
    e = env.engine
    busy = e.submit(spec(key="busy", priority=9))  # first in selection order
    keyed = e.submit(spec(key="other"))
    free = e.submit(spec())
    assert e.ready_on_keys(["busy"]) is False  # Scheduled: not promoted yet
    e.tick()
    assert e.ready_on_keys(["busy"]) is True
    got = e.dispatch_next(limit=limit, busy_keys={"busy"})
    assert [d.task_id for d in got] == [keyed, free][:limit]
    assert states(e, busy) == [S.READY]
    assert e.ready_on_keys(["busy"]) is True  # waiting only for that key
    assert e.ready_on_keys(["other", "nobody"]) is False  # its run is Running: not a candidate
    (d,) = e.dispatch_next(limit=limit)  # no longer busy
    assert d.task_id == busy


def test_busy_keys_must_be_a_collection_of_str(env: Env) -> None:
    e = env.engine
    e.submit(spec(key="k"))
    with pytest.raises(WrongTypeError, match="busy_keys"):
        e.dispatch_next(limit=1, busy_keys="k")
    with pytest.raises(WrongTypeError, match="busy_keys"):
        e.dispatch_next(limit=1, busy_keys=[b"k"])
    with pytest.raises(WrongTypeError, match="busy_keys"):
        e.ready_on_keys(7)  # type: ignore[arg-type]
    assert len(e.dispatch_next(limit=1)) == 1  # nothing was changed by the refused calls


def test_ready_on_keys_is_false_while_paused(env: Env) -> None:
    e = env.engine
    e.submit(spec(key="k"))
    e.tick()
    e.pause()
    assert e.ready_on_keys(["k"]) is False
    e.resume()
    assert e.ready_on_keys(["k"]) is True


def test_has_ready_sees_dispatch_candidates_only(env: Env) -> None:
    e = env.engine
    assert e.has_ready() is False
    e.submit(spec(key="k"))
    e.submit(spec(key="k"))
    assert e.has_ready() is False  # Scheduled: not promoted yet
    e.tick()
    assert e.has_ready() is True
    e.pause()
    assert e.has_ready() is False
    e.resume()
    assert len(e.dispatch_next(limit=10)) == 1
    assert e.has_ready() is False  # the other run waits for the key the log holds


def test_selector_violating_the_key_contract_cannot_break_the_gate(env: Env) -> None:
    class Greedy(DefaultSelector):
        def select(self, candidates, limit, held_keys=frozenset()):  # type: ignore[no-untyped-def]
            got = list(candidates)
            return got + got  # duplicates: the engine drops them

    env.engine = Engine(env.auth, env.clock, owner="w1", selector=Greedy())
    env.engine.submit(spec(key="k"))
    env.engine.submit(spec(key="k"))
    env.engine.submit(spec())
    assert len(env.engine.dispatch_next(limit=10)) == 2


# --- uniform batches -----------------------------------------------------------------------


def test_submit_uniform_stamps_the_template(env: Env) -> None:
    e = env.engine
    before = env.auth.latest_sequence
    template = spec(RunPolicy.repeat(2, 10), max_attempts=3, priority=7, handler="h")
    ids = e.submit_uniform(template, [(b"a", None), (b"b", "text/plain"), (bytearray(b"c"), None)])
    assert len(set(ids)) == len(ids) == 3
    assert template.task_id not in ids
    # One record: three TaskCreates, two RunCreates each, and the first run of each (due now,
    # on time) promoted in the same record: 3 x (1 + 2 + 1) events.
    assert env.auth.latest_sequence == before + 12
    specs = [e.get_task(t).spec for t in ids]  # type: ignore[union-attr]
    assert [(s.payload.data, s.payload.content_type) for s in specs] == [
        (b"a", None),
        (b"b", "text/plain"),
        (b"c", None),
    ]
    for s, tid in zip(specs, ids, strict=True):
        assert s.task_id == tid
        assert (s.run_policy, s.constraints, s.metadata, s.handler, s.dedupe_key) == (
            template.run_policy,
            template.constraints,
            template.metadata,
            "h",
            None,
        )
        assert sorted(r.scheduled_at for r in e.runs_for_task(tid)) == [T0, T0 + 10]
    assert e.submit_uniform(template, []) == []


def test_submit_uniform_creates_due_runs_ready(env: Env) -> None:
    """Runs due at the submit (and on time) are promoted in the submit's own record, as the
    next tick would promote them at that instant: Ready, one plain history step, no tick."""
    e = env.engine
    ids = e.submit_uniform(spec(RunPolicy.repeat(3, 10)), [(b"a", None), (b"b", None)])
    for tid in ids:
        runs = sorted(e.runs_for_task(tid), key=lambda r: r.scheduled_at)
        assert [r.state for r in runs] == [S.READY, S.SCHEDULED, S.SCHEDULED]
        assert [(h.from_state, h.to_state, h.reason) for h in runs[0].history][-1] == (
            S.SCHEDULED,
            S.READY,
            None,
        )
    assert not e.tick(T0).changed  # nothing left for the tick at T0
    assert len(e.dispatch_next("w", T0, 10)) == 2


def test_try_submit_uniform_writes_deferred_or_gives_up(env: Env) -> None:
    """The nonblocking variant: on the storage authority, the same tasks as submit_uniform
    (runs left Scheduled for the tick: reading the pause flag could wait); ``None`` and
    nothing written where it cannot promise not to wait (cron, an authority without the
    path)."""
    e = env.engine
    before = env.auth.latest_sequence
    got = e.try_submit_uniform(spec(RunPolicy.repeat(2, 10)), [(b"a", None), (b"b", None)])
    if env.kind == "fake":
        assert got is None
        assert env.auth.latest_sequence == before
        return
    assert got is not None
    assert len(got) == 2
    for tid in got:
        assert [r.state for r in e.runs_for_task(tid)] == [S.SCHEDULED, S.SCHEDULED]
    assert e.tick(T0).promoted == 2
    seq = env.auth.latest_sequence
    assert e.try_submit_uniform(spec(RunPolicy.cron("*/5 * * * *")), [(b"c", None)]) is None
    assert env.auth.latest_sequence == seq
    with pytest.raises(ValidationError, match="dedupe key"):
        e.try_submit_uniform(spec(dedupe="k"), [(b"d", None)])


def test_submit_uniform_leaves_future_late_and_paused_runs_to_the_tick(env: Env) -> None:
    e = env.engine
    (future,) = e.submit_uniform(spec(), [(b"f", None)], origin=T0 + 5)
    assert [r.state for r in e.runs_for_task(future)] == [S.SCHEDULED]
    # Late beyond the misfire grace: the tick's misfire planning decides, not the submit.
    late_spec = spec(RunPolicy.once(misfire=MisfirePolicy.skip(grace=0.001)))
    (late,) = e.submit_uniform(late_spec, [(b"l", None)], origin=T0 - 1000)
    assert [r.state for r in e.runs_for_task(late)] == [S.SCHEDULED]
    assert e.pause(now=T0)
    (paused,) = e.submit_uniform(spec(), [(b"p", None)])
    assert [r.state for r in e.runs_for_task(paused)] == [S.SCHEDULED]


def test_submit_uniform_refusals_write_nothing(env: Env) -> None:
    e = env.engine
    before = env.auth.latest_sequence
    with pytest.raises(ValidationError, match="dedupe key"):
        e.submit_uniform(spec(dedupe="k"), [(b"a", None)])
    with pytest.raises(WrongTypeError, match="pairs"):
        e.submit_uniform(spec(), [b"a"])  # type: ignore[list-item]
    with pytest.raises(WrongTypeError, match="payload data must be bytes"):
        e.submit_uniform(spec(), [(b"a", None), ("text", None)])  # type: ignore[list-item]
    with pytest.raises(ValidationError):
        e.submit_uniform(spec(), [(b"a", "")])
    with pytest.raises(WrongTypeError, match="TaskSpec template"):
        e.submit_uniform("not a spec", [(b"a", None)])  # type: ignore[arg-type]
    assert env.auth.latest_sequence == before


def test_submit_uniform_cron_derives_per_task(env: Env) -> None:
    e = env.engine
    ids = e.submit_uniform(spec(RunPolicy.cron("*/5 * * * *")), [(b"a", None), (b"b", None)])
    for tid in ids:
        runs = e.runs_for_task(tid)
        assert runs
        assert all(r.state is S.SCHEDULED for r in runs)
    assert [len(e.runs_for_task(t)) for t in ids] == [len(e.runs_for_task(ids[0]))] * 2


@pytest.mark.parametrize("lean", [True, False])
def test_late_catch_up_promotions_are_plain_with_their_reason(env: Env, lean: bool) -> None:
    # A backlog older than the grace under catch-up-all is promoted without planning (the
    # lean page) with the same history as the planned path; a skip policy in the page, or
    # no lean query at all, takes the planned path.
    e = env.engine
    if not lean:
        e._due_ids = None
    on_time = e.submit(spec(RunPolicy.once()), origin=T0 + 5_000 - 500)
    late = e.submit(spec(RunPolicy.repeat(2, 1_000)))
    env.clock.advance(5_000)
    e.tick()
    assert states(e, on_time) == [S.READY]
    assert e.runs_for_task(on_time)[0].history[-1].reason is None
    assert states(e, late) == [S.READY, S.READY]
    reasons = [r.history[-1].reason for r in sorted(e.runs_for_task(late), key=lambda r: r.ordinal)]
    assert reasons == ["misfire: caught up 5 s late", "misfire: caught up 4 s late"]
    skip = e.submit(spec(RunPolicy.repeat(2, 1_000, misfire=MisfirePolicy.skip(grace=0))))
    env.clock.advance(1_500)
    e.tick()
    assert states(e, skip) == [S.CANCELED, S.CANCELED]  # both late, grace 0: skipped


def test_a_cron_task_with_no_occurrence_left_is_refused_and_nothing_is_written(env: Env) -> None:
    """It was written with zero runs and silently never ran."""
    e = env.engine
    end = 253_402_300_800_000  # 10000-01-01 UTC: cron occurrences end before it
    ok = spec()
    never = spec(RunPolicy.cron("* * * * *"))
    before = env.auth.latest_sequence
    for origin in (end - 30_000, end, 2**63 - 1):
        with pytest.raises(ValidationError, match="has no occurrence at or after") as exc:
            e.submit(never, origin=origin)
        assert "would never run; nothing was submitted" in str(exc.value)
        with pytest.raises(ValidationError, match="has no occurrence"):
            e.submit_many([ok, never], origin=origin)  # all or nothing
    assert env.auth.latest_sequence == before
    assert e.get_task(never.task_id) is None
    assert e.get_task(ok.task_id) is None
    # A cron with occurrences left before the end is fine, and stops there without an error.
    seconds = e.submit(spec(RunPolicy.cron("* * * * * *", window=2)), origin=end - 3_000)
    env.clock.set(end)
    assert drain(e) == 3
    assert [r.scheduled_at - end for r in e.runs_for_task(seconds)] == [-3_000, -2_000, -1_000]
