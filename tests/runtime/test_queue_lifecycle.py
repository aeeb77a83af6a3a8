"""start/stop/close with work in flight, KeyboardInterrupt, run_forever + SIGTERM, reopen."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rt_helpers import MakeQueue, echo, needs_real_storage

import actionqueue as aq
from actionqueue import RunState
from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.runtime.executors.threads import ThreadExecutor

pytestmark = pytest.mark.timeout(60)


def test_stop_without_drain_gives_runs_back(make_queue: MakeQueue) -> None:
    q = make_queue(max_workers=2)
    started = threading.Semaphore(0)

    @q.handler("long", max_attempts=1)
    def long(ctx: Any, p: Any) -> None:
        started.release()
        ctx.cancelled.wait(30)
        ctx.raise_if_cancelled()

    q.start()
    tids = [q.submit("long") for _ in range(2)]
    for _ in range(2):
        assert started.acquire(timeout=10)
    assert q.stop(drain=False, timeout=10)
    for t in tids:
        (run,) = q.runs(t)
        # given back without using the only attempt: Ready again, attempt count 0
        assert run.state is RunState.READY, run
        assert run.attempt_count == 0
        assert run.attempts[-1].outcome is AttemptOutcome.SUSPENDED


def test_stop_with_drain_waits_for_in_flight(make_queue: MakeQueue) -> None:
    q = make_queue()
    started = threading.Event()
    release = threading.Event()

    @q.handler("h")
    def h(ctx: Any, p: Any) -> str:
        started.set()
        release.wait(10)
        return "done"

    q.start()
    tid = q.submit("h")
    assert started.wait(10)
    threading.Timer(0.05, release.set).start()
    assert q.stop(drain=True, timeout=10)
    assert q.result(tid) == "done"


def test_close_with_a_stuck_handler_releases_its_run(make_queue: MakeQueue) -> None:
    q = make_queue()
    started = threading.Event()
    never = threading.Event()

    @q.handler("stuck")
    def stuck(ctx: Any, p: Any) -> None:
        started.set()
        never.wait(30)  # ignores every signal

    q.start()
    tid = q.submit("stuck")
    assert started.wait(10)
    auth, engine = q.authority, q.engine
    q.close(drain=True, timeout=0.2)
    never.set()
    if hasattr(auth, "runs_for_task") and not getattr(auth, "closed", False):
        (run,) = engine.runs_for_task(tid)
        assert run.state is RunState.READY


def test_handlers_that_close_drains_can_still_use_the_queue(
    make_queue: MakeQueue, tmp_path: Path
) -> None:
    """close() lets in-flight attempts finish: a handler that submits its follow-up work,
    inspects or cancels while the drain runs does so (its submit used to raise ClosedError,
    which failed the run for good with no attempts left, and the follow-up was lost). Calls
    that would wait or drive stay refused, and so is everyone else."""
    path = tmp_path / "drain"
    q = make_queue(path)
    started = threading.Event()
    seen: dict[str, Any] = {}

    @q.handler("step1")  # max_attempts=1: a ClosedError here failed the run for good
    def step1(ctx: Any, p: Any) -> str:
        started.set()
        deadline = time.monotonic() + 10
        while not q.closed and time.monotonic() < deadline:  # close() has begun
            time.sleep(0.001)
        seen["next"] = q.submit("step2", p)
        seen["more"] = q.submit_many("step2", [1, 2])
        seen["state"] = q.get_run(ctx.run_id).state  # type: ignore[union-attr]
        seen["running"] = q.stats()["runs"]["Running"]
        q.cancel(seen["more"][1])
        for name, call in (("start", q.start), ("wait", lambda: q.wait(seen["next"], 1))):
            try:
                call()
            except aq.errors.ClosedError:
                seen[name] = "refused"
        return "done"

    q.register("step2", lambda ctx, p: p)
    q.start()
    tid = q.submit("step1", 7)
    assert started.wait(10)
    q.close()
    assert seen["state"] is RunState.RUNNING
    assert seen["running"] == 1
    assert seen["start"] == seen["wait"] == "refused"
    with pytest.raises(aq.errors.ClosedError):
        q.submit("step2", 8)  # not from a handler being drained

    q = make_queue(path)
    q.register("step2", lambda ctx, p: p)
    assert q.result(tid, timeout=10) == "done"
    assert q.result(seen["next"], timeout=10) == 7
    assert q.result(seen["more"][0], timeout=10) == 1
    assert q.runs(seen["more"][1])[0].state is RunState.CANCELED


def test_keyboard_interrupt_in_the_driving_thread_propagates(make_queue: MakeQueue) -> None:
    q = make_queue()
    started = threading.Event()
    release = threading.Event()

    @q.handler("h")
    def h(ctx: Any, p: Any) -> str:
        started.set()
        release.wait(10)
        return "recorded later"

    tid = q.submit("h")

    def interrupt() -> None:
        started.wait(10)
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered to the main thread

    threading.Thread(target=interrupt).start()
    with pytest.raises(KeyboardInterrupt):
        q.run_until_idle(timeout=20)
    # The handler kept running in its worker thread; its outcome is still recorded.
    release.set()
    assert q.result(tid, timeout=10) == "recorded later"


def test_handler_exceptions_never_hang_the_background_loop(make_queue: MakeQueue) -> None:
    q = make_queue(max_workers=2)
    q.register("exit", lambda ctx, p: (_ for _ in ()).throw(SystemExit(2)))
    q.register("ok", lambda ctx, p: p)
    q.start()
    bad = [q.submit("exit") for _ in range(5)]
    good = q.submit("ok", 42)
    assert q.result(good, timeout=10) == 42
    for t in bad:
        q.wait(t, timeout=10)
    assert q.running


@needs_real_storage
def test_reopen_keeps_results_and_pause(tmp_path: Path) -> None:
    with aq.ActionQueue.open(tmp_path) as q:
        q.register("h", lambda ctx, p: {"v": p})
        tid = q.submit("h", 7)
        q.run_until_idle()
        q.pause()
    with aq.ActionQueue.open(tmp_path) as q:
        assert q.result(tid, timeout=5) == {"v": 7}
        assert q.paused
    with pytest.raises(aq.errors.DataDirLockedError), aq.ActionQueue.open(tmp_path):
        aq.ActionQueue.open(tmp_path)


@needs_real_storage
@needs_real_storage
@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads /proc/self/maps")
def test_a_closed_queue_still_referenced_holds_none_of_its_state(tmp_path: Path) -> None:
    """close() releases the queue's state, not the last reference to the queue: a closed queue
    an application kept (in a list, a global, a traceback) held every task and run in memory,
    the payloads of its live tasks in Python too, and the snapshot it had loaded in place —
    mapped even after a checkpoint deleted the file, whose disk space came back only once the
    queue object was freed."""
    path = tmp_path / "q"
    with aq.ActionQueue.open(path, durability="deferred") as q:
        q.register("echo", echo)
        q.submit_many("echo", [b"x" * 200] * 6_000)
        q.run_until_idle()
    q = aq.ActionQueue.open(path, durability="deferred")  # loads the close's snapshot (> 1 MiB)
    loaded = q.recovery.snapshot_path
    assert loaded is not None
    assert os.path.getsize(loaded) > 1 << 20
    assert loaded in Path("/proc/self/maps").read_text()  # used in place
    q.register("echo", echo)
    q.submit_many("echo", [b"y" * 200] * 1_000, delay=3600)
    for _ in range(2):  # two newer snapshots: the checkpoint deletes the loaded one
        q.submit("echo", 1)
        q.run_until_idle()
        q.snapshot()
    assert not os.path.exists(loaded)
    q.close()
    assert loaded not in Path("/proc/self/maps").read_text()
    assert q.engine._tasks == {}
    assert q.engine._shapes == {}
    with pytest.raises(aq.errors.ClosedError):
        q.stats()


def test_attempts_of_a_dead_owner_found_lost_at_open_are_counted(
    make_queue: MakeQueue, tmp_path: Path
) -> None:
    """Opening a directory whose previous owner died mid-attempt records that attempt Lost
    (the expiry sweep at open); ``outcomes_total{outcome="Lost"}`` counts it."""
    clock = aq.ManualClock(1_700_000_000_000)
    q = make_queue(tmp_path / "d", clock=clock, lease=3)
    q.register("h", lambda ctx, p: None)
    tid = q.submit("h", max_attempts=2)
    # Started in the log, never finished: what a process killed mid-attempt leaves behind.
    assert len(q.engine.dispatch_next(q.owner)) == 1
    q.close(drain=False)
    clock.advance(60_000)
    q = make_queue(tmp_path / "d", clock=clock, lease=3)
    (run,) = q.runs(tid)
    assert [a.outcome for a in run.attempts] == [AttemptOutcome.LOST]
    assert q.metrics.value("outcomes_total", handler="h", outcome="Lost") == 1
    q.register("h", lambda ctx, p: None)
    q.run_until_idle(advance_clock=True)
    assert q.metrics.snapshot()["outcomes_total"] == {
        "handler=h,outcome=Lost": 1.0,
        "handler=h,outcome=Success": 1.0,
    }


@needs_real_storage
@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("executor", "to_group"),
    [("threads", False), ("processes", False), ("processes", True)],
    ids=["threads", "processes", "processes-whole-group"],
)
def test_run_forever_drains_on_sigterm(tmp_path: Path, executor: str, to_group: bool) -> None:
    """SIGTERM to the queue's process, or to the whole group as ``systemctl stop`` or a
    supervisor's group kill sends it. BUG (whole group, processes executor): the worker and
    the fork server died at once; the in-flight attempt failed (a counted attempt) instead of
    being drained."""
    ready = tmp_path / "ready"
    child_py = Path(__file__).with_name("run_forever_child.py")
    child = subprocess.Popen(
        [sys.executable, str(child_py), str(tmp_path / "d"), str(ready), executor],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=child_py.parent,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(child_py.parent), *sys.path])),
        start_new_session=True,  # its own group, which the test may signal as a whole
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():  # orchestration: signal once the handler is running
            assert time.monotonic() < deadline, "the child never ran its handler"
            assert child.poll() is None, child.communicate()
            time.sleep(0.01)
        if to_group:
            os.killpg(child.pid, signal.SIGTERM)
        else:
            child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(10)
    assert child.returncode == 0, err.decode()
    assert out.decode().strip() == "drained 1", err.decode()


def test_worker_threads_drive_while_the_driver_sleeps(make_queue: MakeQueue) -> None:
    """Thread-executor workers take the sleeping driver's steps (record, dispatch); the driver
    still returns as soon as its own condition holds: ``result()`` on a run recorded by a
    worker's step (which went on to dispatch more), and ``run_until_idle()`` at the end."""
    q = make_queue(max_workers=2, durability=aq.DurabilityPolicy.DEFERRED)
    gate = threading.Event()
    steps: list[str] = []
    d = q._dispatcher
    step = d.step

    def counted_step() -> tuple[int, int | None]:
        steps.append(threading.current_thread().name)
        return step()

    d.step = counted_step  # type: ignore[method-assign]

    def slow(ctx: Any, payload: Any) -> str:
        time.sleep(0.05)  # the driver is asleep when this finishes
        return "ok"

    q.register("gated", lambda ctx, payload: gate.wait(20))
    q.register("slow", slow)
    q.submit_many("gated", range(6))
    target = q.submit("slow", priority=10)  # dispatched first, next to one gated run
    # The worker that finishes `target` records it and dispatches another gated run; the
    # queue stays busy (both workers gated), yet the waiting driver is told.
    assert q.result(target, timeout=15) == "ok"
    gate.set()
    q.run_until_idle(timeout=20)
    assert q.stats()["runs"]["Completed"] == 7
    assert any(name.startswith("aq-worker") for name in steps)  # workers stood in


@pytest.mark.parametrize("durability", ["deferred", "immediate"])
def test_run_until_idle_counts_every_attempt_started(
    make_queue: MakeQueue, durability: str
) -> None:
    # Executor threads step for the sleeping driver (and lease ahead for quick handlers): the
    # count covers their dispatches too, retries included.
    clock = aq.ManualClock(1_700_000_000_000)
    q = make_queue(durability=durability, clock=clock)
    q.register("noop", lambda ctx, payload: None)
    q.register("twice", lambda ctx, payload: None if ctx.attempt == 2 else 1 / 0, max_attempts=2)
    q.submit_many("noop", [b""] * 100)
    assert q.run_until_idle() == 100
    q.submit_many("twice", [b""] * 10)
    assert q.run_until_idle(advance_clock=True) == 20
    assert q.run_until_idle() == 0


@pytest.mark.timeout(90)
def test_a_script_that_ends_without_close_lets_its_running_attempts_finish(
    tmp_path: Path,
) -> None:
    """BUG: nothing closed a queue at interpreter exit, and its loop and workers are daemon
    threads: a script that ended after ``q.start()`` stopped like a ``kill -9``. The run of a
    handler that had started stayed Running (Lost at the next open, an attempt used, with
    ``max_attempts=1`` Failed) although the handler never finished."""
    child = Path(__file__).with_name("exit_child.py")
    done = tmp_path / "done"
    out = subprocess.run(
        [sys.executable, str(child), str(tmp_path / "q"), str(done)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert done.read_text() == "done"
    with aq.ActionQueue.open(tmp_path / "q") as q:
        runs = q.list_runs(limit=None)
        assert [r.state for r in runs] == [RunState.COMPLETED]
        assert [a.outcome for a in runs[0].attempts] == [AttemptOutcome.SUCCESS]


def test_advance_clock_with_the_background_loop_and_a_real_clock_waits_for_future_work(
    make_queue: MakeQueue,
) -> None:
    """BUG: with ``start()`` and the system clock, ``run_until_idle(advance_clock=True)``
    returned 0 at once and left a run due 0.2 s later Scheduled (docs: any other clock is
    slept on)."""
    q = make_queue()
    q.register("h", lambda ctx, p: p)
    q.start()
    tid = q.submit("h", 1, delay=0.2)
    assert q.run_until_idle(advance_clock=True, timeout=30) == 1
    assert q.runs(tid)[0].state is RunState.COMPLETED


@needs_real_storage
def _drive_in_thread(q: aq.ActionQueue) -> tuple[threading.Thread, list[BaseException]]:
    """``q.run_until_idle()`` on a daemon thread, started; what it raised lands in the list."""
    errors: list[BaseException] = []

    def drive() -> None:
        try:
            q.run_until_idle()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=drive, daemon=True)
    t.start()
    return t, errors


def test_close_waits_for_a_step_that_began_before_it(tmp_path: Path) -> None:
    """close() stops dispatching (``draining``), but a step that had read that flag before
    (a ``run_until_idle()``/``wait()`` driver, or an executor thread standing in for a sleeping
    driver) went on: its batch, leased in the log after close found nothing in flight, was
    handed to the shut-down executor (``ExecutorError`` to the driver) and given back on a
    closed log, so its runs stayed Running in the log — their attempts Lost at the next open."""
    path = tmp_path / "q"
    q = aq.ActionQueue.open(path, executor=ThreadExecutor(2))
    q.register("echo", echo)
    tids = [q.submit("echo", i) for i in range(2)]  # one step leases both
    d = q._dispatcher
    real_dispatch = q.engine.dispatch_next
    real_shutdown = q.executor.shutdown
    entered, leased, shut = threading.Event(), threading.Event(), threading.Event()

    def dispatch_next(*args: Any, **kwargs: Any) -> Any:
        if entered.is_set():
            return real_dispatch(*args, **kwargs)
        entered.set()  # this step saw no close: it dispatches
        deadline = time.monotonic() + 5
        while not d.closing and time.monotonic() < deadline:
            time.sleep(0.001)
        out = real_dispatch(*args, **kwargs)
        leased.set()
        # Give close() every chance to get ahead of this step (to the end, on the old code).
        shut.wait(0.5)
        deadline = time.monotonic() + 0.5
        while not d.closed and time.monotonic() < deadline:
            time.sleep(0.001)
        return out

    def shutdown(*args: Any, **kwargs: Any) -> None:
        leased.wait(5)
        real_shutdown(*args, **kwargs)
        shut.set()

    q.engine.dispatch_next = dispatch_next  # type: ignore[method-assign]
    q.executor.shutdown = shutdown  # type: ignore[method-assign]
    t, errors = _drive_in_thread(q)
    assert entered.wait(5)
    q.close()
    t.join(10)
    assert not t.is_alive()
    assert [type(e) for e in errors] in ([], [aq.errors.ClosedError])
    with aq.ActionQueue.open(path) as q2:
        states = {q2.runs(tid)[0].state for tid in tids}
    assert states == {RunState.COMPLETED}


def test_a_start_racing_close_is_refused(make_queue: MakeQueue) -> None:
    """A start() that passed its closed check just before close() began, and took the lock
    after close() had stopped the loop, set ``draining`` back and started a new loop: it
    leased runs through the drain, past the executor's shutdown and the log's close."""
    q = make_queue(executor=ThreadExecutor(1))
    q.register("echo", echo)
    d = q._dispatcher
    real_await_step = d.await_step
    at_drain, go_on = threading.Event(), threading.Event()

    def await_step() -> None:
        at_drain.set()  # close() has set closing and stopped the loop
        go_on.wait(5)
        real_await_step()

    d.await_step = await_step  # type: ignore[method-assign]
    closer = threading.Thread(target=q.close)
    real_check = q._check_open
    calls = 0

    def check_open() -> None:
        nonlocal calls
        calls += 1
        real_check()
        if calls == 1:  # passed: close() begins now
            closer.start()
            assert at_drain.wait(5)

    q._check_open = check_open  # type: ignore[method-assign]
    try:
        with pytest.raises(aq.errors.ClosedError):
            q.start()
        assert q._thread is None
        assert d.draining
    finally:
        go_on.set()
        closer.join(10)


def test_close_from_inside_a_step_of_its_own_thread_does_not_wait_for_it(
    make_queue: MakeQueue,
) -> None:
    """close() waits for a step begun before it, but not for one of its own thread (a signal
    handler calling close() while the main thread drives): that one would wait for itself."""
    q = make_queue(executor=ThreadExecutor(1))
    q.register("echo", echo)
    q.submit("echo", 1)
    real_dispatch = q.engine.dispatch_next
    closed: list[bool] = []

    def dispatch_next(*args: Any, **kwargs: Any) -> Any:
        if not closed:
            closed.append(True)
            q.close()  # as a signal handler interrupting this step would
        return real_dispatch(*args, **kwargs)

    q.engine.dispatch_next = dispatch_next  # type: ignore[method-assign]
    t, errors = _drive_in_thread(q)
    t.join(10)
    assert not t.is_alive()
    assert q.closed
    assert all(isinstance(e, aq.errors.ActionQueueError) for e in errors)
