"""The timing loops and the registry, with tiny call counts and no timing assertions."""

from __future__ import annotations

import threading

import pytest

from actionqueue.bench.registry import all_workloads, select
from actionqueue.bench.timing import Op, time_calls, time_threads


def test_time_calls_calls_each_index_once() -> None:
    seen: list[int] = []
    sample = time_calls(seen.append, 5, records_per_call=10)
    assert seen == [0, 1, 2, 3, 4]
    assert sample.records == 50
    assert len(sample.latencies_ns) == 5
    assert all(ns >= 0 for ns in sample.latencies_ns)


@pytest.mark.parametrize(("threads", "calls"), [(1, 7), (3, 10), (8, 8), (32, 5)])
def test_time_threads_splits_calls_exactly(threads: int, calls: int) -> None:
    lock = threading.Lock()
    per_thread: dict[int, list[int]] = {}
    made_on: dict[int, int] = {}

    def make_op(index: int) -> Op:
        made_on[index] = threading.get_ident()

        def op(i: int) -> None:
            with lock:
                per_thread.setdefault(index, []).append(i)

        return op

    sample = time_threads(make_op, threads, calls)
    assert sample.records == calls
    assert len(sample.latencies_ns) == calls
    assert sum(len(v) for v in per_thread.values()) == calls
    for calls_of_one in per_thread.values():
        assert calls_of_one == list(range(len(calls_of_one)))
    assert len(made_on) == threads
    if threads > 1:  # per-thread setup ran on the producer threads themselves
        assert threading.get_ident() not in made_on.values()


def test_time_threads_reraises_producer_error() -> None:
    def make_op(index: int) -> Op:
        def op(i: int) -> None:
            if index == 2 and i == 1:
                raise RuntimeError("boom in producer")

        return op

    with pytest.raises(RuntimeError, match="boom in producer"):
        time_threads(make_op, 4, 20)


def test_time_threads_reraises_setup_error_without_hanging() -> None:
    def make_op(index: int) -> Op:
        if index == 1:
            raise OSError("cannot open")
        return lambda _i: None

    with pytest.raises(OSError, match="cannot open"):
        time_threads(make_op, 3, 9)


def test_time_threads_rejects_zero_threads() -> None:
    with pytest.raises(ValueError, match="threads must be >= 1"):
        time_threads(lambda _t: lambda _i: None, 0, 1)


def test_registry_names_unique_and_baselines_resolvable() -> None:
    workloads = all_workloads()
    names = [w.name for w in workloads]
    assert len(names) == len(set(names))
    for w in workloads:
        assert w.baseline is None or w.baseline in names, w.name
        assert w.threads >= 1
        assert w.batch >= 1


def test_select_adds_the_baselines_of_selected_workloads() -> None:
    chosen = [w.name for w in select(all_workloads(), r"^persist-queue\.submit\.t1$")]
    assert chosen == ["baseline.fdatasync-per-op.t1", "persist-queue.submit.t1"]


def test_select_none_keeps_everything_and_bad_regex_is_one_clear_error() -> None:
    workloads = all_workloads()
    assert select(workloads, None) == workloads
    with pytest.raises(ValueError, match=r"--only '\(' is not a valid regular expression"):
        select(workloads, "(")
