"""64 threads submitting, cancelling and inspecting while a dispatcher loop leases, runs and
finishes work (with retries and concurrency keys), for a bounded time: no deadlock (the test
has a timeout and every thread must finish), no lost or duplicated record, core invariants
hold throughout (no key held by two in-flight runs, no run with two live leases), and the
state digest equals a replay of the log after reopening."""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from pathlib import Path

import pytest

from actionqueue.core import (
    AttemptOutcome,
    Backoff,
    DurabilityPolicy,
    RunPolicy,
    RunState,
    TaskConstraints,
    TaskId,
    TaskMetadata,
    TaskSpec,
)
from actionqueue.engine import Engine, ManualClock
from actionqueue.errors import InvalidTransitionError
from actionqueue.storage.mutation import StorageMutationAuthority
from actionqueue.storage.recovery import bootstrap

T0 = 1_700_000_000_000
SOAK = os.environ.get("AQ_SOAK", "0") not in ("", "0")
SECONDS = float(os.environ.get("AQ_CONCURRENCY_SECONDS", "20" if SOAK else "2"))


def in_flight_keys(auth: StorageMutationAuthority) -> list[str]:
    keys = []
    for state in (RunState.LEASED, RunState.RUNNING):
        for run in auth.runs_in_state(state, 100_000):
            task = auth.get_task(run[1])  # run wire tuple: (run_id, task_id, ...)
            assert task is not None
            key = task.spec.constraints.concurrency_key
            if key is not None:
                keys.append(key)
    return keys


@pytest.mark.timeout(120)
def test_64_threads_with_a_dispatcher_never_deadlock_lose_or_duplicate(fast_tmp: Path) -> None:
    data = fast_tmp / "data"
    auth = StorageMutationAuthority.open(data, snapshot_every=500)
    clock = ManualClock(T0)
    engine = Engine(
        auth,
        clock,
        owner="dispatcher",
        rng=random.Random(1),
        default_lease_ms=60_000,
        durability=DurabilityPolicy.DEFERRED,
    )
    stop = threading.Event()
    errors: list[BaseException] = []
    submitted: list[list[TaskId]] = [[] for _ in range(64)]
    canceled: set[TaskId] = set()
    dispatched = [0]

    def client(i: int) -> None:
        rng = random.Random(i)
        try:
            while not stop.is_set():
                r = rng.random()
                if r < 0.5:
                    spec = TaskSpec(
                        TaskId.new(),
                        b"p",
                        RunPolicy.once(),
                        TaskConstraints(
                            max_attempts=2,
                            concurrency_key=rng.choice([None, "k0", "k1", "k2"]),
                            retry=Backoff.fixed(1),
                        ),
                        TaskMetadata(),
                    )
                    durability = DurabilityPolicy.IMMEDIATE if r < 0.1 else None
                    submitted[i].append(engine.submit(spec, durability=durability))
                elif r < 0.6 and submitted[i]:
                    tid = rng.choice(submitted[i])
                    if tid not in canceled:
                        # A task that finished meanwhile has nothing left to cancel.
                        with contextlib.suppress(InvalidTransitionError):
                            engine.cancel_task(tid)
                        canceled.add(tid)
                elif submitted[i]:
                    tid = rng.choice(submitted[i])
                    assert engine.get_task(tid) is not None
                    assert len(engine.runs_for_task(tid)) == 1
        except BaseException as e:
            errors.append(e)
            stop.set()

    def dispatcher() -> None:
        rng = random.Random(99)
        try:
            while not stop.is_set():
                batch = engine.dispatch_next(limit=8)
                keys = in_flight_keys(auth)
                assert len(keys) == len(set(keys)), f"a key held twice: {keys}"
                for d in batch:
                    outcome = (
                        AttemptOutcome.SUCCESS
                        if rng.random() < 0.7
                        else AttemptOutcome.RETRYABLE_FAILURE
                    )
                    engine.finish_attempt(d.run_id, d.attempt_id, outcome, error="e")
                    dispatched[0] += 1
                clock.advance(2)
                engine.tick()
        except BaseException as e:
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(64)]
    threads.append(threading.Thread(target=dispatcher))
    for t in threads:
        t.start()
    time.sleep(SECONDS)
    stop.set()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive(), "deadlock: a thread did not finish"
    if errors:
        raise errors[0]

    all_ids = [tid for ids in submitted for tid in ids]
    assert len(all_ids) == len(set(all_ids)), "duplicate task ids"
    assert auth.task_count == len(all_ids), "lost or duplicated tasks"
    for tid in all_ids:
        runs = engine.runs_for_task(tid)
        assert len(runs) == 1
        (run,) = runs
        assert run.attempt_count <= 2
        assert run.lease is None or run.state in (RunState.LEASED, RunState.RUNNING)
        if tid in canceled:
            assert run.state in (RunState.CANCELED, RunState.COMPLETED, RunState.FAILED)
    live = auth.state_digest()
    auth.flush()
    auth.close()
    _, with_snapshot = bootstrap(data, digest=True, snapshot_on_close=False)
    assert with_snapshot.digest == live
    print(
        f"concurrency: {len(all_ids)} tasks from 64 threads, {len(canceled)} cancels, "
        f"{dispatched[0]} attempts in {SECONDS}s; digest after reopen == live digest"
    )
