"""Load: concurrency keys under contention, and 10k runs through 8 threads."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import pytest
from rt_helpers import MakeQueue, needs_real_storage

from actionqueue import DurabilityPolicy, RunState


@pytest.mark.timeout(120)
def test_concurrency_key_is_single_flight_under_load(make_queue: MakeQueue) -> None:
    q = make_queue(max_workers=8, durability=DurabilityPolicy.DEFERRED)
    lock = threading.Lock()
    running: collections.Counter[str] = collections.Counter()
    peak: collections.Counter[str] = collections.Counter()
    overall = {"now": 0, "peak": 0}

    @q.handler("keyed")
    def keyed(ctx: Any, key: str) -> None:
        with lock:
            running[key] += 1
            peak[key] = max(peak[key], running[key])
            overall["now"] += 1
            overall["peak"] = max(overall["peak"], overall["now"])
        time.sleep(0.001)  # hold the key long enough for overlap to be possible
        with lock:
            running[key] -= 1
            overall["now"] -= 1

    keys = ["a", "b", "c"]
    for i in range(300):
        k = keys[i % 3]
        q.submit("keyed", k, concurrency_key=k)
    for i in range(100):
        q.submit("keyed", f"free{i}")  # no key: may overlap freely
    q.start()
    q.run_until_idle(timeout=100)
    assert all(peak[k] == 1 for k in keys), peak
    assert overall["peak"] > 1  # the pool really ran things in parallel
    assert q.stats()["runs"]["Completed"] == 400


@needs_real_storage  # the pure-Python fake copies its state per batch: O(n^2)
@pytest.mark.timeout(120)
def test_10k_runs_through_8_threads(make_queue: MakeQueue) -> None:
    q = make_queue(max_workers=8, durability=DurabilityPolicy.DEFERRED)
    calls: collections.Counter[int] = collections.Counter()
    bad_numbers: list[tuple[int, int, int]] = []
    lock = threading.Lock()

    @q.handler("work", max_attempts=3)
    def work(ctx: Any, n: int) -> int:
        with lock:
            calls[n] += 1
            if ctx.attempt != calls[n]:  # ctx.attempt must count this run's dispatches
                bad_numbers.append((n, ctx.attempt, calls[n]))
        if n % 10 == 0 and ctx.attempt == 1:
            raise RuntimeError("first try fails")
        if n % 97 == 0:
            raise RuntimeError("always fails")
        return n

    t0 = time.monotonic()
    ids: list[Any] = []
    for start in range(0, 10_000, 1_000):
        ids += q.submit_many("work", range(start, start + 1_000))
    q.run_until_idle(timeout=110)
    elapsed = time.monotonic() - t0
    counts = q.stats()["runs"]
    assert counts["Completed"] + counts["Failed"] == 10_000, counts
    assert sum(counts.values()) == 10_000
    assert all(c <= 3 for c in calls.values())
    assert not bad_numbers, bad_numbers[:5]
    assert len(calls) == 10_000
    failed = sum(1 for n in range(10_000) if n % 97 == 0)
    assert counts["Failed"] == failed
    assert calls[97] == 3
    assert calls[10] == 2
    print(f"10k runs (10% retried once, 1% failing 3x) in {elapsed:.2f} s")
    for st in (RunState.READY, RunState.RUNNING, RunState.LEASED, RunState.RETRY_WAIT):
        assert counts[st.label] == 0
