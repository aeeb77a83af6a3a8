"""Timing loops: one thread, or many threads released together by a barrier."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from actionqueue.bench.workload import Sample

#: One call of a workload; receives the call index (0-based, per thread).
Op = Callable[[int], object]


def time_calls(op: Op, calls: int, records_per_call: int = 1) -> Sample:
    """Call ``op(i)`` for i in range(calls) on this thread, timing each call and the whole."""
    clock = time.perf_counter_ns
    latencies = [0] * calls
    start = clock()
    for i in range(calls):
        t = clock()
        op(i)
        latencies[i] = clock() - t
    elapsed = clock() - start
    return Sample(calls * records_per_call, elapsed / 1e9, latencies)


def time_threads(
    make_op: Callable[[int], Op], threads: int, calls: int, records_per_call: int = 1
) -> Sample:
    """Split ``calls`` over ``threads`` producers and time them from a common start.

    ``make_op(thread_index)`` runs on the producer thread itself, before the start barrier,
    so per-thread connections are created where they are used and outside the timed section.
    Wall time runs from the barrier release to the last producer's end. With one thread
    everything runs on the calling thread (no barrier, no thread-switch noise).
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if threads == 1:
        return time_calls(make_op(0), calls, records_per_call)
    shares = [calls // threads + (1 if t < calls % threads else 0) for t in range(threads)]
    barrier = threading.Barrier(threads + 1)
    latencies: list[list[int]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def producer(index: int) -> None:
        try:
            op = make_op(index)
        except BaseException as exc:  # reported to the caller below, never swallowed
            errors.append(exc)
            barrier.abort()
            return
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        clock = time.perf_counter_ns
        mine = latencies[index]
        try:
            for i in range(shares[index]):
                t = clock()
                op(i)
                mine.append(clock() - t)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=producer, args=(t,), daemon=True) for t in range(threads)]
    for w in workers:
        w.start()
    # A producer whose setup failed aborts the barrier; its error is raised after the joins.
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    start = time.perf_counter_ns()
    for w in workers:
        w.join()
    elapsed = time.perf_counter_ns() - start
    if errors:
        raise errors[0]
    pooled = [ns for per_thread in latencies for ns in per_thread]
    return Sample(calls * records_per_call, elapsed / 1e9, pooled)
