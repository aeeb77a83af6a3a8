"""End to end through ActionQueue: policies on a ManualClock, results, outcomes, control."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rt_helpers import T0, MakeQueue, needs_real_storage

import actionqueue as aq
from actionqueue import RunPolicy, RunState, TaskId, TaskSpec
from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.engine import ManualClock
from actionqueue.errors import (
    NotFoundError,
    RunCanceledError,
    RunFailedError,
    ValidationError,
    WaitTimeoutError,
    WrongTypeError,
)

pytestmark = pytest.mark.timeout(60)


def test_once_result_and_json_payload(make_queue: MakeQueue, clock: ManualClock) -> None:
    q = make_queue(clock=clock)

    @q.handler("add")
    def add(ctx: Any, payload: dict[str, int]) -> int:
        return payload["a"] + payload["b"]

    tid = q.submit("add", {"a": 2, "b": 3})
    assert q.run_until_idle() == 1
    assert q.result(tid) == 5
    (run,) = q.runs(tid)
    assert run.state is RunState.COMPLETED
    assert run.attempts[0].outcome is AttemptOutcome.SUCCESS
    assert q.stats()["runs"]["Completed"] == 1


def test_bytes_payloads_pass_through(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.register("rev", lambda ctx, p: p[::-1])
    tid = q.submit("rev", b"\x00\x01\x02")
    assert q.result(tid, timeout=10) == b"\x02\x01\x00"


def test_repeat_and_delay_through_a_manual_clock(make_queue: MakeQueue, clock: ManualClock) -> None:
    q = make_queue(clock=clock)
    seen: list[tuple[int, int]] = []
    q.register("tick", lambda ctx, p: seen.append((ctx.scheduled_at, clock.now())))
    q.submit("tick", policy=aq.every(60, count=3), delay=10)
    assert q.run_until_idle() == 0  # nothing due yet: honest
    assert q.run_until_idle(advance_clock=True) == 3
    due = [T0 + 10_000 + k * 60_000 for k in range(3)]
    assert seen == [(t, t) for t in due]
    assert clock.now() == due[-1]


def test_cron_with_max_time(make_queue: MakeQueue, clock: ManualClock) -> None:
    q = make_queue(clock=clock)
    seen: list[int] = []
    q.register("cron", lambda ctx, p: seen.append(ctx.scheduled_at))
    tid = q.submit("cron", policy=aq.RunPolicy.cron("*/5 * * * *"))
    q.run_until_idle(advance_clock=True, max_time=timedelta(minutes=30))
    assert len(seen) == 6
    assert all(b - a == 300_000 for a, b in itertools.pairwise(seen))
    with pytest.raises(WaitTimeoutError):
        q.wait(tid, timeout=0.05)  # an endless cron never finishes


def test_cron_tasks_of_one_shape_each_refill_their_own_window(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    """BUG: tasks with the same policy, constraints and metadata share one info record in the
    engine, and a finished run refilled the window of the task that record was made for: the
    other task stalled short of max_occurrences with nothing left to run (for ever, once all
    its window was due at once: after downtime, a restart, a misfire catch-up)."""
    q = make_queue(clock=clock)
    q.register("tick", lambda ctx, p: p)
    policy = aq.RunPolicy.cron("* * * * * *", max_occurrences=3, window=2)
    tasks = [q.submit("tick", name, policy=policy) for name in "ABC"]
    clock.advance(5_000)  # every task's whole window is due at once
    q.run_until_idle(advance_clock=True, max_time=60)
    for t in tasks:
        assert [r.state for r in q.runs(t)] == [RunState.COMPLETED] * 3
        rec = q.get_task(t)
        assert rec is not None
        assert (rec.derived, rec.non_terminal) == (3, 0)


def test_unbounded_cron_tasks_of_one_shape_keep_running_after_downtime(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    q = make_queue(clock=clock)
    q.register("tick", lambda ctx, p: p)
    policy = aq.RunPolicy.cron("* * * * *")  # every minute, window 5
    a, b = (q.submit("tick", name, policy=policy) for name in "AB")
    clock.advance(timedelta(minutes=10))  # down for 10 minutes: the whole window is due
    q.run_until_idle(advance_clock=True, max_time=timedelta(minutes=30))
    runs_a, runs_b = q.runs(a), q.runs(b)
    assert len(runs_a) == len(runs_b) > 10
    for runs in (runs_a, runs_b):
        assert sum(r.state is RunState.SCHEDULED for r in runs) == 5  # the window, refilled


def test_cron_coalesce_after_a_long_handler_runs_once(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    """The first run's handler takes an hour: the hour it missed (00:01 .. 01:00) is one
    missed window, so coalesce runs once for it, not once per refill."""
    midnight = 1_704_067_200_000  # 2024-01-01 00:00 UTC
    clock.set(midnight)
    q = make_queue(clock=clock)
    seen: list[int] = []

    def job(ctx: Any, p: Any) -> None:
        seen.append(ctx.scheduled_at)
        if len(seen) == 1:
            clock.advance(60 * 60_000 + 30_000)

    q.register("job", job)
    policy = aq.RunPolicy.cron("* * * * *", window=3, misfire=aq.MisfirePolicy.coalesce())
    tid = q.submit("job", None, policy=policy)
    assert q.run_until_idle() == 2
    assert [(t - midnight) // 60_000 for t in seen] == [0, 60]
    runs = q.runs(tid)
    assert [((r.scheduled_at - midnight) // 60_000, r.state) for r in runs] == [
        (0, RunState.COMPLETED),
        (1, RunState.CANCELED),
        (2, RunState.CANCELED),
        (3, RunState.CANCELED),
        (60, RunState.COMPLETED),
        (61, RunState.SCHEDULED),
        (62, RunState.SCHEDULED),
        (63, RunState.SCHEDULED),
    ]
    reasons = [h.reason for h in runs[4].history if h.reason]
    assert reasons == ["misfire: coalesced 60 missed occurrences"]


def test_at_takes_an_aware_datetime(make_queue: MakeQueue, clock: ManualClock) -> None:
    from datetime import datetime, timezone

    q = make_queue(clock=clock)
    q.register("h", lambda ctx, p: ctx.scheduled_at)
    when = datetime.fromtimestamp(T0 / 1000 + 3600, tz=timezone.utc)
    tid = q.submit("h", at=when)
    q.run_until_idle(advance_clock=True)
    assert q.result(tid) == T0 + 3_600_000
    with pytest.raises(ValidationError, match="not both"):
        q.submit("h", at=when, delay=1)


def test_retries_with_backoff_then_success(make_queue: MakeQueue, clock: ManualClock) -> None:
    q = make_queue(clock=clock)
    calls: list[int] = []

    @q.handler("flaky", max_attempts=4, backoff=aq.exponential(1, 60))
    def flaky(ctx: Any, payload: Any) -> str:
        calls.append(clock.now())
        if ctx.attempt < 3:
            raise ConnectionError("try again")
        return "ok"

    tid = q.submit("flaky")
    q.run_until_idle()
    assert len(calls) == 1  # the retry waits for its backoff
    q.run_until_idle(advance_clock=True)
    assert q.result(tid) == "ok"
    assert [b - a for a, b in itertools.pairwise(calls)] == [1_000, 2_000]
    (run,) = q.runs(tid)
    assert [a.outcome for a in run.attempts] == [
        AttemptOutcome.RETRYABLE_FAILURE,
        AttemptOutcome.RETRYABLE_FAILURE,
        AttemptOutcome.SUCCESS,
    ]
    assert run.attempts[0].error is not None
    assert run.attempts[0].error.startswith("ConnectionError: try again")


def test_retry_cap_and_failure_result(make_queue: MakeQueue, clock: ManualClock) -> None:
    q = make_queue(clock=clock)
    q.register("bad", lambda ctx, p: 1 / 0, max_attempts=2)
    tid = q.submit("bad")
    q.run_until_idle(advance_clock=True)
    (run,) = q.runs(tid)
    assert run.state is RunState.FAILED
    assert run.attempt_count == 2
    with pytest.raises(RunFailedError, match="ZeroDivisionError") as info:
        q.result(tid)
    assert "Traceback" in (info.value.error or "")


def test_control_signals(make_queue: MakeQueue, clock: ManualClock) -> None:
    q = make_queue(clock=clock)

    def retry(ctx: Any, p: Any) -> str:
        if ctx.attempt == 1:
            raise aq.Retry(delay=30)
        return "second"

    q.register("retry", retry, max_attempts=2)
    q.register("fail", lambda ctx, p: (_ for _ in ()).throw(aq.Fail("bad input")), max_attempts=5)
    suspended = {"n": 0}

    def park(ctx: Any, p: Any) -> str:
        suspended["n"] += 1
        if suspended["n"] == 1:
            raise aq.Suspend()
        return "resumed"

    q.register("park", park)
    t_retry = q.submit("retry")
    t_fail = q.submit("fail")
    t_park = q.submit("park")
    q.run_until_idle()
    (r,) = q.runs(t_retry)
    assert r.state is RunState.RETRY_WAIT
    assert r.not_before == T0 + 30_000
    (f,) = q.runs(t_fail)
    assert f.state is RunState.FAILED
    assert f.attempt_count == 1
    assert f.attempts[0].error == "Fail: bad input"
    (p,) = q.runs(t_park)
    assert p.state is RunState.SUSPENDED
    assert p.attempt_count == 0  # a Suspended attempt does not count
    q.retry_now(p.run_id)
    q.run_until_idle(advance_clock=True)
    assert q.result(t_retry) == "second"
    assert q.result(t_park) == "resumed"


def test_dispatch_latency_counts_from_when_the_attempt_became_due(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    """``dispatch_latency_seconds`` was measured from the run's ``scheduled_at``: a retry
    started the instant its 60 s backoff ended read 60 s late, and a Suspended run woken by
    ``retry_now`` an hour on read an hour late."""
    q = make_queue(clock=clock)

    def flaky(ctx: Any, p: Any) -> str:
        if ctx.attempt == 1:
            raise ConnectionError("blip")
        return "ok"

    parked = {"n": 0}

    def park(ctx: Any, p: Any) -> str:
        parked["n"] += 1
        if parked["n"] == 1:
            raise aq.Suspend()
        return "resumed"

    q.register("flaky", flaky, max_attempts=2, backoff=aq.fixed(60))
    q.register("park", park)
    t_flaky = q.submit("flaky")
    t_park = q.submit("park")
    q.run_until_idle(advance_clock=True)  # the clock moves exactly to the retry's due time
    assert q.result(t_flaky) == "ok"
    assert clock.now() == T0 + 60_000
    clock.advance(3_600_000)
    (run,) = q.runs(t_park)
    q.retry_now(run.run_id)
    q.run_until_idle()
    assert q.result(t_park) == "resumed"
    for handler in ("flaky", "park"):
        h = q.metrics.histogram("dispatch_latency_seconds", handler=handler)
        assert h is not None
        assert (h.n, h.total) == (2, 0.0), handler


def test_terminal_exceptions_fail_at_once(make_queue: MakeQueue) -> None:
    q = make_queue()

    @q.handler("strict", max_attempts=5, terminal=[KeyError])
    def strict(ctx: Any, p: Any) -> None:
        raise KeyError("missing")

    tid = q.submit("strict")
    q.run_until_idle()
    (run,) = q.runs(tid)
    assert (run.state, run.attempt_count) == (RunState.FAILED, 1)
    assert run.attempts[0].outcome is AttemptOutcome.TERMINAL_FAILURE


class Ärger(Exception):
    pass


@needs_real_storage
def test_terminal_class_with_a_non_ascii_name_survives_a_restart(
    make_queue: MakeQueue, clock: ManualClock, tmp_path: Path
) -> None:
    """A task whose terminal exception class has a non-ASCII name (a valid identifier) was
    accepted at submit, but after a restart the first tick that met it raised
    ValidationError: nothing in the queue could be dispatched any more."""

    def boom(ctx: Any, payload: Any) -> None:
        raise Ärger(payload)

    q = make_queue(tmp_path / "q", clock=clock)
    q.register("boom", boom, max_attempts=3, terminal=[Ärger])
    tid = q.submit("boom", "x", delay=10)
    q.close()
    q = make_queue(tmp_path / "q", clock=clock)
    q.register("boom", boom, max_attempts=3, terminal=[Ärger])
    spec = q.get_task(tid).spec
    assert spec.constraints.retry_on.terminal_errors == (f"{__name__}.Ärger",)
    clock.advance(10_000)
    q.run_until_idle()
    (run,) = q.runs(tid)
    assert run.state is RunState.FAILED
    assert len(run.attempts) == 1  # terminal: not retried


def test_base_exceptions_in_handlers_do_not_stop_the_queue(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.register("exit", lambda ctx, p: (_ for _ in ()).throw(SystemExit(1)))
    q.register("kbd", lambda ctx, p: (_ for _ in ()).throw(KeyboardInterrupt()))
    q.register("ok", lambda ctx, p: "fine")
    a, b, c = q.submit("exit"), q.submit("kbd"), q.submit("ok")
    q.run_until_idle()
    assert q.runs(a)[0].state is RunState.FAILED
    assert "SystemExit" in (q.runs(a)[0].attempts[0].error or "")
    assert q.runs(b)[0].state is RunState.FAILED
    assert q.result(c) == "fine"


def test_unknown_handler_fails_the_run_clearly(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.register("known", lambda ctx, p: None)
    tid = q.submit("nobody_home", {"x": 1}, allow_unregistered=True)
    q.run_until_idle()
    (run,) = q.runs(tid)
    assert run.state is RunState.FAILED
    err = run.attempts[0].error or ""
    assert err.startswith("UnknownHandlerError: no handler is registered under 'nobody_home'")
    assert "'known'" in err


def test_undecodable_payload_fails_the_run(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.register("h", lambda ctx, p: p)
    tid = q.submit("h", b"\x80not json", content_type="application/json")
    q.run_until_idle()
    (run,) = q.runs(tid)
    assert run.state is RunState.FAILED
    assert "could not be decoded" in (run.attempts[0].error or "")


def test_submit_argument_errors(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.register("h", lambda ctx, p: None)
    with pytest.raises(ValidationError):
        q.submit("")
    with pytest.raises(WrongTypeError, match="unknown option"):
        q.submit("h", max_atempts=3)
    with pytest.raises(WrongTypeError, match="RunPolicy"):
        q.submit("h", policy="daily")  # type: ignore[arg-type]
    with pytest.raises(aq.errors.PayloadError, match="cannot encode"):
        q.submit("h", object())
    with pytest.raises(ValidationError, match="delay must be >= 0"):
        q.submit("h", delay=-1)


def test_dedupe_key_returns_the_live_task(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.register("h", lambda ctx, p: p)
    a = q.submit("h", 1, dedupe_key="k")
    assert q.submit("h", 2, dedupe_key="k") == a
    q.run_until_idle()
    assert q.result(a) == 1
    assert q.submit("h", 3, dedupe_key="k") != a  # the first one finished


@needs_real_storage
def test_immediate_dedupe_hit_returns_only_once_the_live_task_is_durable(
    make_queue: MakeQueue,
) -> None:
    """A dedupe hit writes nothing, but an Immediate submit still promises a durable task: the
    live task it returns may be visible before it is durable (a Deferred submit, or another
    thread's Immediate one still waiting for its group sync). It returned without syncing."""
    q = make_queue(durability="immediate")
    q.register("h", lambda ctx, p: p)
    a = q.submit("h", 1, dedupe_key="k", durability="deferred")
    assert q.authority.stats().synced_sequence < q.authority.latest_sequence
    assert q.submit("h", 2, dedupe_key="k") == a
    assert q.authority.stats().synced_sequence >= q.authority.latest_sequence
    # A Deferred hit does not sync.
    b = q.submit("h", 1, dedupe_key="k2", durability="deferred")
    assert q.submit("h", 2, dedupe_key="k2", durability="deferred") == b
    assert q.authority.stats().synced_sequence < q.authority.latest_sequence
    # The engine's submit_many: a batch whose every spec is a hit.
    spec = TaskSpec(TaskId.new(), b"", RunPolicy.once(), dedupe_key="k2")
    assert q.engine.submit_many([spec, spec], durability="immediate") == [b, b]
    assert q.authority.stats().synced_sequence >= q.authority.latest_sequence


def test_dedupe_key_is_freed_by_cancel_and_kept_across_reopen(
    make_queue: MakeQueue, clock: ManualClock, tmp_path: Path
) -> None:
    """docs/runtime.md: a key names a live task; cancelling the task, or the last unfinished
    run of it, frees the key; a run cancelled while others remain does not; a reopen keeps it."""
    q = make_queue(tmp_path / "d", clock=clock)
    q.register("h", lambda ctx, p: p)
    a = q.submit("h", 1, dedupe_key="k")
    q.cancel(a)
    b = q.submit("h", 2, dedupe_key="k")
    assert b != a
    q.cancel(q.runs(b)[0].run_id)  # its only run: the task is finished
    c = q.submit("h", 3, dedupe_key="k", policy=aq.every(60, count=2))
    assert c not in (a, b)
    q.cancel(q.runs(c)[0].run_id)  # one run of two: still live
    assert q.submit("h", 4, dedupe_key="k") == c
    q.close()
    q = make_queue(tmp_path / "d", clock=clock)
    q.register("h", lambda ctx, p: p)
    assert q.submit("h", 5, dedupe_key="k", durability="deferred") == c
    q.run_until_idle(advance_clock=True)
    assert [r.state for r in q.runs(c)] == [RunState.CANCELED, RunState.COMPLETED]
    assert q.submit("h", 6, dedupe_key="k") != c


def test_dedupe_key_from_many_threads_gives_one_task(make_queue: MakeQueue) -> None:
    """16 threads submitting one dedupe key at once: one task, and every caller gets its id."""
    q = make_queue()
    q.register("h", lambda ctx, p: p)

    def submit_all(durability: str) -> list[TaskId]:
        barrier = threading.Barrier(16)
        got: list[TaskId] = []

        def submit(i: int) -> None:
            barrier.wait()
            got.append(q.submit("h", i, dedupe_key=f"k-{durability}", durability=durability))

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return got

    for durability in ("immediate", "deferred"):
        got = submit_all(durability)
        assert len(got) == 16
        assert len(set(got)) == 1
    assert q.stats()["total_runs"] == 2


def test_priorities_order_dispatch(make_queue: MakeQueue, clock: ManualClock) -> None:
    q = make_queue(clock=clock, max_workers=1)
    order: list[int] = []
    q.register("p", lambda ctx, p: order.append(p))
    q.pause()
    for prio in (0, 5, -3, 10, 5):
        q.submit("p", prio, priority=prio)
    assert q.run_until_idle() == 0  # paused: nothing runnable
    q.resume()
    q.run_until_idle()
    assert order == [10, 5, 5, 0, -3]


def test_pause_resume_and_durable_pause_state(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.register("h", lambda ctx, p: p)
    assert q.pause()
    assert not q.pause()
    tid = q.submit("h", 1)
    q.run_until_idle()
    # paused: not even promoted (paused time counts as downtime for misfire policies)
    assert q.runs(tid)[0].state is RunState.SCHEDULED
    assert q.paused
    assert q.resume()
    assert q.result(tid) == 1


def test_cancel_a_running_thread_handler(make_queue: MakeQueue) -> None:
    q = make_queue()
    started = threading.Event()
    saw_cancel = threading.Event()

    @q.handler("long")
    def long(ctx: Any, p: Any) -> str:
        started.set()
        if ctx.cancelled.wait(20):
            saw_cancel.set()
        ctx.raise_if_cancelled()
        return "finished"

    q.start()
    tid = q.submit("long")
    assert started.wait(10)
    q.cancel(tid)
    assert saw_cancel.wait(10)
    q.wait(tid, timeout=10)
    (run,) = q.runs(tid)
    assert run.state is RunState.CANCELED
    assert run.attempts[0].outcome is AttemptOutcome.CANCELED
    with pytest.raises(RunCanceledError):
        q.result(tid)
    assert q.stop(drain=True, timeout=10)


def test_cancel_by_run_id_and_unknown_ids(make_queue: MakeQueue, clock: ManualClock) -> None:
    q = make_queue(clock=clock)
    q.register("h", lambda ctx, p: p)
    tid = q.submit("h", 1, delay=60)
    (run,) = q.runs(tid)
    q.cancel(str(run.run_id))
    assert q.get_run(run.run_id).state is RunState.CANCELED  # type: ignore[union-attr]
    with pytest.raises(NotFoundError):
        q.cancel("00000000-0000-4000-8000-000000000001")


def test_wait_and_result_refuse_unknown_ids_in_every_form(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    # An unknown TaskId/RunId object used to make wait() return at once, as if it were done.
    import asyncio

    q = make_queue(clock=clock)
    q.register("h", lambda ctx, p: p)
    done = q.submit("h", 1)
    assert q.result(done) == 1
    unknown = [aq.TaskId.new(), str(aq.TaskId.new()), aq.RunId.new()]
    for ident in unknown:
        for call in (q.wait, q.result, q.cancel):
            with pytest.raises(NotFoundError):
                call(ident)  # type: ignore[operator]
        with pytest.raises(NotFoundError):
            asyncio.run(q.await_task(ident))
        with pytest.raises(NotFoundError):
            asyncio.run(q.aresult(ident))
    # known ids, finished, as objects and strings: no error
    (run,) = q.runs(done)
    for known in (done, str(done), run.run_id, str(run.run_id)):
        q.wait(known, timeout=5)
        assert q.result(known) == 1


def test_thread_timeout_is_cooperative(make_queue: MakeQueue) -> None:
    q = make_queue()
    released = threading.Event()

    @q.handler("slow", timeout=0.05, max_attempts=1)
    def slow(ctx: Any, p: Any) -> str:
        ctx.cancelled.wait(20)
        released.set()
        return "late"

    tid = q.submit("slow")
    q.run_until_idle(timeout=20)
    assert released.wait(10)
    (run,) = q.runs(tid)
    assert run.state is RunState.FAILED
    assert run.attempts[0].outcome is AttemptOutcome.TIMEOUT
    assert "timed out after 0.05 s" in (run.attempts[0].error or "")


def test_stuck_handlers_past_max_abandoned_do_not_strand_the_queue(
    make_queue: MakeQueue,
) -> None:
    # More stuck threads than max_abandoned (4 x max_workers) used to leave the pool with no
    # worker for good: the next run stayed Running and unstarted, close() never returned.
    q = make_queue(max_workers=1)
    release = threading.Event()

    @q.handler("stuck", timeout=0.02, max_attempts=1)
    def stuck(ctx: Any, p: Any) -> str:
        release.wait(20)  # ignores ctx.cancelled
        return "late"

    q.register("echo", lambda ctx, p: p, timeout=30)
    q.start()
    stuck_ids = [q.submit("stuck", i) for i in range(5)]
    for tid in stuck_ids:
        q.wait(tid, timeout=10)
    ex = q.executor
    assert (ex.live_workers, ex.abandoned_threads) == (0, 5)  # type: ignore[attr-defined]
    later = q.submit("echo", "later")
    with pytest.raises(WaitTimeoutError):
        q.wait(later, timeout=0.05)  # no thread can run it yet
    release.set()  # the stuck handlers return: a thread comes back as a worker
    assert q.result(later, timeout=10) == "later"
    assert q.result(q.submit("echo", "next"), timeout=10) == "next"
    for tid in stuck_ids:
        (run,) = q.runs(tid)
        assert run.attempts[0].outcome is AttemptOutcome.TIMEOUT
    q.close()  # drain, no timeout: returns


def test_close_does_not_wait_for_abandoned_threads(make_queue: MakeQueue) -> None:
    from actionqueue.runtime.executors import ThreadExecutor

    q = make_queue(executor=ThreadExecutor(1, max_abandoned=0))
    release = threading.Event()
    ran: list[str] = []

    @q.handler("stuck", timeout=0.02, max_attempts=1)
    def stuck(ctx: Any, p: str) -> str:
        ran.append(p)
        release.wait(20)  # ignores ctx.cancelled
        return "late"

    q.start()
    first = q.submit("stuck", "first")
    q.wait(first, timeout=10)
    # No worker is left: a queued run waits at most its timeout, then times out unrun.
    queued = q.submit("stuck", "queued")
    q.wait(queued, timeout=10)
    (run,) = q.runs(queued)
    assert run.state is RunState.FAILED
    assert run.attempts[0].outcome is AttemptOutcome.TIMEOUT
    assert ran == ["first"]
    # close() (drain, no timeout) returns while the abandoned thread is still stuck.
    closer = threading.Thread(target=q.close)
    closer.start()
    closer.join(10)
    alive = closer.is_alive()
    release.set()
    closer.join(10)
    assert not alive


def test_context_facts_and_progress(make_queue: MakeQueue) -> None:
    q = make_queue()
    gate = threading.Event()
    facts: dict[str, Any] = {}

    @q.handler("facts", max_attempts=3, timeout=60)
    def facts_h(ctx: Any, p: Any) -> None:
        facts.update(
            run=ctx.run_id,
            task=ctx.task_id,
            attempt=ctx.attempt,
            max=ctx.max_attempts,
            deadline=ctx.deadline,
        )
        ctx.report_progress(0.5)
        ctx.heartbeat()
        gate.wait(10)

    q.start()
    tid = q.submit("facts", tags=["x"])
    while "run" not in facts:
        q._dispatcher.wait_in_flight(0.01)
    assert q.progress(facts["run"]) == 0.5
    gate.set()
    q.wait(tid, timeout=10)
    assert facts["task"] == tid
    assert (facts["attempt"], facts["max"]) == (1, 3)
    assert facts["deadline"] is not None


def test_background_loop_and_wait(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.register("sq", lambda ctx, p: p * p)
    q.start()
    ids = [q.submit("sq", i) for i in range(20)]
    assert [q.result(t, timeout=10) for t in ids] == [i * i for i in range(20)]
    q.run_until_idle(timeout=10)  # waits for the background loop to be idle
    assert q.stats()["in_flight"] == 0
    assert q.stop()
    assert not q.running


def test_wait_drives_the_queue_when_nothing_else_does(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.register("h", lambda ctx, p: "done")
    assert q.result(q.submit("h"), timeout=10) == "done"


def test_metrics_and_stats(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.register("ok", lambda ctx, p: None)
    q.register("bad", lambda ctx, p: 1 / 0)
    for _ in range(3):
        q.submit("ok")
    q.submit("bad")
    q.run_until_idle()
    m = q.metrics
    assert m.value("submitted_total", handler="ok") == 3
    assert m.value("outcomes_total", handler="ok", outcome="Success") == 3
    assert m.value("outcomes_total", handler="bad", outcome="RetryableFailure") == 1
    assert m.value("runs", state="Completed") == 3
    text = m.prometheus_text()
    assert 'actionqueue_runs{state="Failed"} 1.0' in text
    stats = q.stats()
    assert set(stats["runs"]) == {s.label for s in RunState}
    assert stats["runs"]["Suspended"] == 0


@needs_real_storage
def test_wal_metrics_count_this_processs_appends(make_queue: MakeQueue, tmp_path: Any) -> None:
    """The WAL's bytes were exposed as a gauge ``wal_bytes``, "Bytes in the write-ahead log",
    which read 0 after reopening a full log: they are the bytes appended since the queue was
    opened, so they are a counter named and described as such."""
    path = tmp_path / "wal-metrics"
    q = make_queue(path)
    q.register("h", lambda ctx, p: None)
    q.submit_many("h", [b"x" * 1000] * 20)
    q.run_until_idle()
    m = q.metrics
    appended = m.value("wal_appended_bytes_total")
    assert appended > 20 * 1000
    assert m.total("wal_appended_bytes_total") == appended
    text = m.prometheus_text()
    assert "# TYPE actionqueue_wal_appended_bytes_total counter" in text
    help_line = next(x for x in text.splitlines() if x.startswith("# HELP actionqueue_wal_app"))
    assert help_line.endswith("since the queue was opened.")
    assert "actionqueue_wal_bytes" not in text
    q.close()
    again = make_queue(path)
    assert again.metrics.value("wal_appended_bytes_total") == 0.0  # nothing appended yet
    again.register("h", lambda ctx, p: None)
    again.submit("h")
    assert 0 < again.metrics.value("wal_appended_bytes_total") < appended


def test_asyncio_submit_and_await(make_queue: MakeQueue) -> None:
    import asyncio

    q = make_queue(executor="asyncio")

    @q.handler("aecho")
    async def aecho(ctx: Any, p: Any) -> Any:
        await asyncio.sleep(0)
        return p

    async def main() -> Any:
        q.start()
        tid = await q.asubmit("aecho", {"v": 1})
        await q.await_task(tid, timeout=10)
        return await q.aresult(tid)

    assert asyncio.run(main()) == {"v": 1}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("looping", [False, True], ids=["no-loop", "loop"])
def test_a_cancelled_aresult_or_await_task_ends_its_thread(
    make_queue: MakeQueue, looping: bool
) -> None:
    """Cancelling ``aresult`` / ``await_task`` used to leave its ``to_thread`` worker waiting
    with no timeout (driving the queue when no loop ran), so ``asyncio.run`` never returned."""
    import asyncio

    q = make_queue()
    q.register("echo", lambda ctx, p: p)
    assert q.result(q.submit("echo", 0)) == 0  # the executor's threads are up
    if looping:
        q.start()
    baseline = {t.ident for t in threading.enumerate()}
    timeouts = []

    async def main() -> None:
        tid = await q.asubmit("echo", 1, delay=3600)
        for wait in (q.aresult(tid), q.await_task(tid)):
            try:
                await asyncio.wait_for(wait, 0.05)
            except TimeoutError:
                timeouts.append(True)

    runner = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    runner.start()
    runner.join(5)
    assert not runner.is_alive(), "asyncio.run() waited for a cancelled wait's thread"
    assert timeouts == [True, True]
    left = [t for t in threading.enumerate() if t.ident not in baseline]
    assert left == []
    q.close()


def test_asubmit_awaits_durability_without_a_thread_per_fsync(make_queue: MakeQueue) -> None:
    """Immediate asubmits write Deferred on a worker thread, then await the group sync on the
    loop: when they return, their records are durable; a Deferred asubmit does not wait."""
    import asyncio

    q = make_queue(durability="immediate")
    q.handler("h")(lambda ctx, p: None)
    synced = getattr(q.authority, "wait_durable_async", None)

    async def main() -> None:
        ids = await asyncio.gather(*(q.asubmit("h", i) for i in range(16)))
        ids += await q.asubmit_many("h", [1, 2, 3])
        assert len(set(ids)) == 19
        if synced is not None:  # the storage authority: durable through the latest record
            assert q.authority.stats().synced_sequence >= q.authority.latest_sequence
        await q.asubmit("h", 99, durability="deferred")
        if synced is not None:
            assert q.authority.stats().synced_sequence < q.authority.latest_sequence

    asyncio.run(main())
    assert q.stats()["total_runs"] == 20


def test_asubmit_writes_on_the_loop_or_falls_back_to_a_thread(
    make_queue: MakeQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain asubmit is written on the loop when that cannot wait; when the engine gives up
    (lock held, snapshot due) or the submit is not plain (dedupe key), a worker thread
    writes it. Either way the task is there, once."""
    import asyncio

    import actionqueue.runtime.queue as queue_module

    q = make_queue(durability="immediate")
    q.handler("h")(lambda ctx, p: None)
    hops: list[str] = []
    real_to_thread = asyncio.to_thread

    async def counting_to_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(fn, "__name__", "?"))
        return await real_to_thread(fn, *args, **kwargs)

    monkeypatch.setattr(queue_module.asyncio, "to_thread", counting_to_thread)
    inline = getattr(q.authority, "try_submit_uniform_wire", None) is not None

    async def main() -> list[Any]:
        plain = await q.asubmit("h", 1)
        deduped = await q.asubmit("h", 2, dedupe_key="k")
        again = await q.asubmit("h", 3, dedupe_key="k")
        assert again == deduped
        monkeypatch.setattr(q.engine, "try_submit_uniform", lambda *a, **k: None)
        busy = await q.asubmit("h", 4)
        return [plain, deduped, busy]

    ids = asyncio.run(main())
    assert len(set(ids)) == 3
    assert all(q.get_task(t) is not None for t in ids)
    # dedupe (twice) and the "busy" one went to a thread; the plain one too without the path
    assert hops.count("submit") == (3 if inline else 4)
    assert q.stats()["total_runs"] == 3


def test_closed_queue_refuses_calls(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.close()
    q.close()  # idempotent
    with pytest.raises(aq.errors.ClosedError):
        q.submit("h")


def _outcome_series(q: aq.ActionQueue) -> tuple[dict[str, float], dict[str, int]]:
    """``outcomes_total`` and ``attempt_duration_seconds`` counts by their labels."""
    snap = q.metrics.snapshot()
    durations = snap.get("attempt_duration_seconds", {})
    return snap.get("outcomes_total", {}), {k: h["count"] for k, h in durations.items()}


def _running_until_stopped(q: aq.ActionQueue, handler: str) -> aq.TaskId:
    """Starts the loop and a task whose handler runs until asked to stop; returns the task
    once its handler is running."""
    started = threading.Event()

    def wait_for_stop(ctx: Any, p: Any) -> None:
        started.set()
        ctx.cancelled.wait(30)
        ctx.raise_if_cancelled()

    q.register(handler, wait_for_stop)
    q.start()
    tid = q.submit(handler)
    assert started.wait(10)
    return tid


def test_a_run_canceled_while_running_is_counted_canceled_in_the_metrics(
    make_queue: MakeQueue,
) -> None:
    """The log says Canceled (the cancellation records the attempt); the metrics used to count
    the handler's interrupted end as a TerminalFailure, and ``attempt_duration_seconds`` still
    labelled it so (the handler's verdict, before the engine decided)."""
    q = make_queue()
    tid = _running_until_stopped(q, "slow")
    q.cancel(tid)
    q.wait(tid, timeout=10)
    (run,) = q.runs(tid)
    assert [a.outcome.label for a in run.attempts] == ["Canceled"]
    q.close()  # drains: the handler's end is recorded
    assert _outcome_series(q) == (
        {"handler=slow,outcome=Canceled": 1.0},
        {"handler=slow,outcome=Canceled": 1},
    )


@needs_real_storage
def test_attempt_duration_of_a_result_too_large_to_record_is_labelled_as_recorded(
    make_queue: MakeQueue,
) -> None:
    """A return value over the record size limit is recorded as a TerminalFailure; its
    duration was labelled Success."""
    q = make_queue(storage_options={"max_record_size": 64 * 1024})
    q.register("big", lambda ctx, p: "x" * 200_000)
    tid = q.submit("big")
    q.run_until_idle()
    (run,) = q.runs(tid)
    assert [a.outcome for a in run.attempts] == [AttemptOutcome.TERMINAL_FAILURE]
    assert _outcome_series(q) == (
        {"handler=big,outcome=TerminalFailure": 1.0},
        {"handler=big,outcome=TerminalFailure": 1},
    )


def test_attempt_duration_of_a_run_given_back_at_stop_is_labelled_released(
    make_queue: MakeQueue,
) -> None:
    """``stop(drain=False)`` gives the run back (counted Released); its duration was labelled
    Suspended, the handler's verdict."""
    q = make_queue()
    tid = _running_until_stopped(q, "long")
    assert q.stop(drain=False, timeout=10)
    (run,) = q.runs(tid)
    assert run.state is RunState.READY
    assert _outcome_series(q) == (
        {"handler=long,outcome=Released": 1.0},
        {"handler=long,outcome=Released": 1},
    )


def test_list_runs_by_handler_keeps_no_spec_after_the_call(make_queue: MakeQueue) -> None:
    """A queue-wide spec cache kept every scanned task's spec (payload included) for ever,
    pruned tasks too: memory grew with every monitoring poll."""
    q = make_queue()
    q.register("h", lambda ctx, p: None)
    q.submit_many("h", [b"x" * 1000] * 50)
    q.run_until_idle(timeout=20)
    assert len(q.list_runs(handler="h", state="Completed", limit=None)) == 50
    assert not any(isinstance(v, dict) and len(v) >= 50 for v in vars(q).values())
    q.prune(older_than=0)
    assert q.list_runs(handler="h", limit=None) == []


def test_prune_older_than_the_epoch_prunes_nothing(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    """BUG: an age reaching back past 1970 (``older_than=10**12`` seconds) raised a
    ValidationError about a negative ``Prune.before``, which names no argument of the call:
    nothing is that old, so nothing is pruned."""
    q = make_queue(clock=clock)
    q.register("h", lambda ctx, p: p)
    tid = q.submit("h", 1)
    q.run_until_idle()
    q.prune(older_than=10**12)
    q.prune(older_than=timedelta(days=10**6))
    assert q.result(tid) == 1
    clock.advance(1)
    q.prune(older_than=0)
    assert q.get_task(tid) is None


def test_a_refused_submit_reusing_a_task_id_changes_nothing(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    """BUG: a submit refused because its task id exists replaced the existing task's row in
    the engine: the task then ran with the refused submit's handler, payload and options (and a
    cron task given a refused Once spec stopped deriving for good)."""
    q = make_queue(clock=clock)
    seen: list[tuple[str, Any, int]] = []

    def h(ctx: Any, payload: Any) -> Any:
        seen.append((ctx.handler, payload, ctx.max_attempts))
        return payload

    q.register("a", h)
    q.register("b", h, max_attempts=4)
    x = aq.TaskId.new()
    q.submit("a", {"who": "original"}, task_id=x, delay=10)
    cron = aq.TaskId.new()
    q.submit("a", "tick", task_id=cron, policy=aq.RunPolicy.cron("* * * * *", window=1))
    for tid in (x, cron):
        with pytest.raises(aq.errors.CommandRejectedError, match="already exists"):
            q.submit("b", {"who": "impostor"}, task_id=tid, tags=["evil"])
    q.run_until_idle(advance_clock=True, max_time=timedelta(minutes=5))
    assert ("a", {"who": "original"}, 1) in seen
    assert all(name == "a" for name, _, _ in seen), seen
    assert q.result(x) == {"who": "original"}
    assert sum(p == "tick" for _, p, _ in seen) >= 4  # the cron task kept deriving


@pytest.mark.parametrize(
    "misfire",
    [aq.MisfirePolicy.coalesce(), aq.MisfirePolicy.catch_up(cap=2)],
    ids=["coalesce", "cap2"],
)
def test_misfire_plans_cover_a_tasks_runs_across_tick_pages(
    make_queue: MakeQueue,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    misfire: aq.MisfirePolicy,
) -> None:
    """BUG: the tick reads due runs in pages (4096) and planned each page on its own, so a
    task whose missed runs spanned pages ran coalesce once per page (a cap per page). A small
    page makes that happen with a few runs."""
    from actionqueue.engine import engine as engine_module

    monkeypatch.setattr(engine_module, "PAGE", 8)
    q = make_queue(clock=clock)
    calls: list[Any] = []
    q.register("j", lambda ctx, p: calls.append(p))
    q.pause()  # the whole schedule is missed meanwhile
    tasks = [q.submit("j", i, policy=aq.every(1, count=10, misfire=misfire)) for i in range(3)]
    clock.advance(timedelta(hours=1))
    q.resume()
    q.run_until_idle()
    from actionqueue.core.task.run_policy import MisfireKind

    per_task = 1 if misfire.kind is MisfireKind.COALESCE else 2
    assert sorted(calls) == sorted(list(range(3)) * per_task)
    for t in tasks:
        states = [r.state for r in q.runs(t)]
        assert states.count(RunState.COMPLETED) == per_task
        assert states.count(RunState.CANCELED) == 10 - per_task


def test_cron_coalesce_across_tick_pages_runs_once_per_task(
    make_queue: MakeQueue, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actionqueue.engine import engine as engine_module

    monkeypatch.setattr(engine_module, "PAGE", 4)
    q = make_queue(clock=clock)
    calls: list[Any] = []
    q.register("j", lambda ctx, p: calls.append(p))
    q.pause()
    for i in range(3):
        q.submit("j", i, policy=aq.RunPolicy.cron("* * * * *", misfire=aq.MisfirePolicy.coalesce()))
    clock.advance(timedelta(hours=1, seconds=30))
    q.resume()
    q.run_until_idle()
    assert sorted(calls) == [0, 1, 2]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("background", [False, True], ids=["driving-waiter", "background-loop"])
def test_close_ends_waits_and_no_waiter_drives_the_closing_queue(
    tmp_path: Any, background: bool
) -> None:
    """BUG: a thread blocked in wait() took over driving once close() stopped the loop: a wait
    without a timeout hung for ever after close, and the waiters kept leasing runs that the
    shut-down executor refused, leaving them Running in the log (Lost, an attempt used, on
    the next open). Now close() makes every driver return; a wait whose target did not finish
    raises ClosedError, and close() dispatches nothing new."""
    import logging

    d = tmp_path / "q"
    q = aq.ActionQueue.open(d, max_workers=2)
    started = threading.Event()
    ran: list[int] = []

    def slow(ctx: Any, p: int) -> int:
        started.set()
        threading.Event().wait(0.2)
        ran.append(p)
        return p

    q.register("slow", slow)
    q.register("later", lambda ctx, p: p)
    if background:
        q.start()
    backlog = q.submit_many("slow", list(range(200)))
    later = q.submit("later", 1, delay=3600)
    outcomes: list[BaseException | None] = []

    def waiter(target: Any) -> None:
        try:
            q.wait(target)  # no timeout
            outcomes.append(None)
        except BaseException as e:
            outcomes.append(e)

    waiters = [threading.Thread(target=waiter, args=(t,)) for t in (later, backlog[-1], later)]
    for w in waiters:
        w.start()
    assert started.wait(10)
    logging.disable(logging.WARNING)
    try:
        q.close()
    finally:
        logging.disable(logging.NOTSET)
    for w in waiters:
        w.join(15)
        assert not w.is_alive(), "a wait() hung after close()"
    assert len(outcomes) == 3
    assert all(isinstance(e, aq.errors.ClosedError) for e in outcomes), outcomes
    assert len(ran) < 50  # close() did not run the backlog
    with aq.ActionQueue.open(d) as again:
        stats = again.stats()["runs"]
        assert stats.get("Running", 0) == stats.get("Leased", 0) == 0, stats
        assert all(len(r.attempts) <= 1 for t in backlog for r in again.runs(t))


def test_a_finished_task_cannot_be_canceled_and_a_deduplicated_submit_is_not_counted(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    """BUGs: canceling a completed task was accepted and relabelled it canceled (the CLI said
    it canceled its unfinished runs: there were none); a submit answered by the live task
    holding its dedupe key counted in submitted_total although nothing was written."""
    q = make_queue(clock=clock)
    q.register("h", lambda ctx, p: p)
    done = q.submit("h", 1)
    q.run_until_idle()
    with pytest.raises(aq.errors.InvalidTransitionError, match="nothing left to cancel"):
        q.cancel(done)
    rec = q.get_task(done)
    assert rec is not None
    assert rec.canceled_at is None
    assert q.result(done) == 1
    once = q.submit("h", 2, delay=60)
    (run,) = q.runs(once)
    q.cancel(run.run_id)  # its only run: the task is finished too
    with pytest.raises(aq.errors.InvalidTransitionError):
        q.cancel(once)
    live = q.submit("h", 3, delay=60, dedupe_key="k")
    assert q.submit("h", 4, dedupe_key="k") == live
    assert q.metrics.total("submitted_total") == 3
    q.cancel(live)  # a task with unfinished runs is canceled as before
    # Cancelling twice is refused like cancelling a terminal run: the same error type.
    with pytest.raises(aq.errors.InvalidTransitionError, match="already canceled"):
        q.cancel(live)
    with pytest.raises(aq.errors.InvalidTransitionError):
        q.cancel(run.run_id)


class _ActBetweenPages:
    """Stands in for the queue's authority in ``list_runs``: once the first page of runs has
    been read, ``act(last run of that page)`` runs, as another thread might at that moment."""

    def __init__(self, auth: Any, act: Any) -> None:
        self._auth, self._act, self._pages = auth, act, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._auth, name)

    def _page(self, read: Any) -> Any:
        if self._pages == 1:
            self._act(aq.RunId(self._last))
        self._pages += 1
        got = read()
        rows = got[0] if isinstance(got, tuple) else got
        if rows:
            self._last = rows[-1][0]
        return got

    def runs_page(self, *args: Any, **kwargs: Any) -> Any:
        return self._page(lambda: self._auth.runs_page(*args, **kwargs))

    def runs_in_state(self, *args: Any) -> Any:  # how a listing used to read its pages
        return self._page(lambda: self._auth.runs_in_state(*args))


def _suspend_all(q: aq.ActionQueue, clock: ManualClock) -> None:
    q.register("s", lambda ctx, p: aq.Suspend("parked"))
    for _ in range(3):  # three finish times, so that states' index orders are not all ties
        q.submit_many("s", [b""] * 400)
        q.run_until_idle(timeout=30)
        clock.advance(1)


def _fail_into_retry_wait(q: aq.ActionQueue, clock: ManualClock) -> None:
    q.register("b", lambda ctx, p: 1 / 0, max_attempts=3, backoff=aq.fixed(100))
    for _ in range(3):
        q.submit_many("b", [b""] * 400)
        q.run_until_idle(timeout=30)
        clock.advance(1)


def _complete_all(q: aq.ActionQueue, clock: ManualClock) -> None:
    q.register("n", lambda ctx, p: None)
    for _ in range(3):
        q.submit_many("n", [b""] * 400)
        q.run_until_idle(timeout=30)
        clock.advance(1)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("setup", "state", "act"),
    [
        (_suspend_all, RunState.SUSPENDED, lambda q, run: q.retry_now(run)),
        (_fail_into_retry_wait, RunState.RETRY_WAIT, lambda q, run: q.retry_now(run)),
        (_fail_into_retry_wait, RunState.RETRY_WAIT, lambda q, run: q.cancel(run)),
        (_complete_all, RunState.COMPLETED, lambda q, run: q.prune(older_than=0)),
    ],
    ids=["suspended-woken", "retry-wait-retried", "retry-wait-canceled", "completed-pruned"],
)
def test_list_runs_pages_on_when_the_last_listed_run_changes(
    make_queue: MakeQueue, clock: ManualClock, setup: Any, state: RunState, act: Any
) -> None:
    """BUG: list_runs continued each page after the last run of the previous one, found where
    that run is *now*: a run that left Suspended meanwhile made the listing skip every
    Suspended run after it, one that left RetryWait restarted it (duplicates), one pruned
    raised NotFoundError. Pages now continue from a position in the index."""
    q = make_queue(clock=clock)
    setup(q, clock)
    q.pause()  # nothing moves but what the test does
    real = q.authority
    q.authority = _ActBetweenPages(real, lambda run: act(q, run))  # type: ignore[assignment]
    try:
        listed = [r.run_id for r in q.list_runs(state=state, limit=None)]
    finally:
        q.authority = real  # type: ignore[assignment]
    still = {r.run_id for r in q.list_runs(state=state, limit=None)}
    assert len(listed) == len(set(listed)), "a run listed twice"
    assert still <= set(listed), f"{len(still - set(listed))} runs that stayed {state} missing"
    assert len(listed) >= 512  # the first page, at least


def test_list_runs_names_each_state_once(make_queue: MakeQueue, clock: ManualClock) -> None:
    q = make_queue(clock=clock)
    q.register("n", lambda ctx, p: None)
    q.submit_many("n", [1, 2, 3])
    q.run_until_idle(timeout=10)
    runs = q.list_runs(state=["Completed", "completed", RunState.COMPLETED], limit=None)
    assert len(runs) == 3


class _CountRows:
    """Stands in for the queue's authority, counting the run tuples ``runs_page`` returns."""

    def __init__(self, auth: Any) -> None:
        self._auth, self.rows, self.pages = auth, 0, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._auth, name)

    def runs_page(self, *args: Any, **kwargs: Any) -> Any:
        rows, cursor = self._auth.runs_page(*args, **kwargs)
        self.rows += len(rows)
        self.pages += 1
        return rows, cursor


def test_list_runs_filters_by_tag_and_handler_in_the_core(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    """A tag / handler filter was applied in Python to a run tuple built for every run of
    the state, and a task looked up per run: ~25 us per run, 2.6 s to find one rare tag among
    100k runs. The core now filters (8,192 index entries per page at most): only the runs
    kept cross into Python, and the listing pages on past the scan budget."""
    q = make_queue(clock=clock)
    q.register("n", lambda ctx, p: None)
    q.register("m", lambda ctx, p: None)
    q.submit_many("n", [b""] * 9_000, tags=["common"])  # Ready: nothing drives the queue
    rare = [q.submit("m", b"", tags=["rare", "common"]) for _ in range(3)]
    real = q.authority
    counting = _CountRows(real)
    q.authority = counting  # type: ignore[assignment]
    try:
        by_tag = q.list_runs(state="Ready", tag="rare", limit=None)
        assert (counting.rows, counting.pages) == (3, 2)  # 9,003 runs: two pages of entries
        by_handler = q.list_runs(state="Ready", handler="m", limit=None)
        both = q.list_runs(tag="common", handler="m", limit=2)
        first = q.list_runs(state="Ready", tag="common", limit=5)
        assert counting.rows == 3 + 3 + 2 + 5
    finally:
        q.authority = real  # type: ignore[assignment]
    assert [r.task_id for r in by_tag] == rare
    assert [r.task_id for r in by_handler] == rare
    assert [r.task_id for r in both] == rare[:2]
    assert first == q.list_runs(state="Ready", limit=5)
    assert q.list_runs(tag="nope") == []
    assert q.list_runs(handler="n", tag="rare") == []


def test_every_id_argument_takes_the_same_forms(make_queue: MakeQueue) -> None:
    """``get_task`` / ``get_run`` took a ``uuid.UUID`` or 16 raw bytes, while ``wait``,
    ``result`` and ``cancel`` refused them with ``WrongTypeError``: one rule for all."""
    import uuid

    q = make_queue()
    q.register("h", lambda ctx, p: p)
    tid = q.submit("h", 5)
    (run,) = q.runs(tid)
    q.run_until_idle(timeout=10)
    for ident in (tid, str(tid), uuid.UUID(str(tid)), tid.bytes):
        q.wait(ident, timeout=5)
        assert q.result(ident, timeout=5) == 5
        assert q.get_task(ident) is not None
    for ident in (uuid.UUID(str(run.run_id)), run.run_id.bytes):
        assert q.result(ident, timeout=5) == 5
    with pytest.raises(aq.errors.WrongTypeError, match="16 bytes"):
        q.wait(12345)  # type: ignore[arg-type]
    with pytest.raises(aq.errors.InvalidIdError):
        q.wait(b"short")
    with pytest.raises(aq.errors.NotFoundError):
        q.cancel(uuid.uuid4())


def test_runtime_records_about_an_attempt_carry_the_attempts_fields(
    make_queue: MakeQueue, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Records of ``actionqueue.runtime`` about one attempt (a failure, a retry) carry the same
    fields as ``ctx.log``'s, so one formatter serves both (they lacked task_id and attempt)."""
    import logging

    q = make_queue(clock=clock)
    q.register("bad", lambda ctx, p: 1 / 0, max_attempts=2)
    tid = q.submit("bad")
    fmt = logging.Formatter("%(run_id)s %(attempt_id)s %(task_id)s %(handler)s %(attempt)s")
    with caplog.at_level(logging.INFO, logger="actionqueue.runtime"):
        q.run_until_idle(advance_clock=True, timeout=20)
    about = [r for r in caplog.records if r.name == "actionqueue.runtime" and "run " in r.msg]
    assert len(about) >= 2  # the retry, then the failure
    (run,) = q.runs(tid)
    for rec in about:
        run_id, attempt_id, task_id, handler, attempt = fmt.format(rec).split()
        assert (run_id, task_id, handler) == (str(run.run_id), str(tid), "bad")
        assert attempt_id in {str(a.attempt_id) for a in run.attempts}
        assert attempt in {"1", "2"}


def test_a_cron_task_that_would_never_run_is_refused(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    """A cron whose expression has no occurrence left after its start (occurrences end with
    year 9999) was written with zero runs and silently never ran; a start after year 9999
    raised an unhelpful 'ms is outside the range of datetime', and one in a zone east of UTC
    a bare OverflowError."""
    from datetime import datetime, timezone

    q = make_queue(clock=clock)
    q.register("h", lambda ctx, p: None)
    before = q.authority.latest_sequence
    cases = [
        (aq.RunPolicy.cron("0 0 1 1 *"), datetime(9999, 6, 1, tzinfo=timezone.utc)),
        (
            aq.RunPolicy.cron("0 12 31 12 *", timezone="Pacific/Kiritimati"),
            datetime(9999, 12, 31, 12, tzinfo=timezone.utc),
        ),
        (aq.RunPolicy.cron("* * * * *"), 300_000_000_000.0),  # year ~11476
    ]
    for policy, at in cases:
        with pytest.raises(ValidationError, match="has no occurrence at or after") as e:
            q.submit("h", policy=policy, at=at)
        assert "the task would never run; nothing was submitted" in str(e.value)
    assert q.authority.latest_sequence == before
    assert q.stats()["total_runs"] == 0


def test_a_queue_that_fails_to_open_leaves_a_shared_clock_alone(
    tmp_path: Any, monkeypatch: Any
) -> None:
    """The first tick fails (say, a failed log): the queue never comes to life, and a shared
    ManualClock neither calls it nor keeps it alive (it stayed subscribed)."""
    from actionqueue.engine import Engine

    clock = ManualClock(T0)

    def broken_tick(self: Any, now: Any = None) -> Any:
        raise RuntimeError("the log failed")

    monkeypatch.setattr(Engine, "tick", broken_tick)
    with pytest.raises(RuntimeError, match="the log failed"):
        aq.ActionQueue(tmp_path / "q", clock=clock)
    assert clock._listeners == []
    monkeypatch.undo()
    with aq.ActionQueue(tmp_path / "q", clock=clock) as q:  # the directory was let go too
        assert len(clock._listeners) == 1
        assert q.stats()["total_runs"] == 0
    assert clock._listeners == []
