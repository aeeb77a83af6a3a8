"""Exact-input tests of the harness's statistics and ratio logic (no timing involved)."""

from __future__ import annotations

import pytest

from actionqueue.bench.analysis import (
    baseline_ratio,
    check_targets,
    comparable,
    compare_ours,
)
from actionqueue.bench.durability import Durability, DurabilityClass
from actionqueue.bench.stats import median, percentile, ratio, summarize
from actionqueue.bench.targets import TARGETS, Target
from actionqueue.bench.workload import RunContext, Sample, SizeClass, System, Workload


def _never(_ctx: RunContext) -> Sample:
    raise AssertionError("not run in these tests")


PEER = System("peer", "test")
OURS = System("ours", "test", is_ours=True)
BASE = System("base", "test", is_baseline=True)


def _w(
    name: str,
    system: System = PEER,
    kind: str = "submit",
    durability: Durability = Durability.FSYNC_PER_OP,
    threads: int = 1,
    batch: int = 1,
    baseline: str | None = None,
) -> Workload:
    return Workload(
        name, system, kind, durability, _never, SizeClass.DURABLE, threads, batch, baseline
    )


def test_percentile_nearest_rank_exact() -> None:
    values = [15, 20, 35, 40, 50]
    assert percentile(values, 5) == 15
    assert percentile(values, 30) == 20
    assert percentile(values, 40) == 20
    assert percentile(values, 50) == 35
    assert percentile(values, 100) == 50
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile(list(range(1, 1001)), 99) == 990
    assert percentile([7], 1) == 7
    assert percentile([3, 1, 2], 50) == 2  # input order does not matter


@pytest.mark.parametrize("p", [0, -1, 100.5])
def test_percentile_rejects_out_of_range(p: float) -> None:
    with pytest.raises(ValueError, match="percentile must be in"):
        percentile([1, 2], p)


def test_percentile_and_median_reject_empty() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
    with pytest.raises(ValueError, match="empty"):
        median([])


def test_median_odd_and_even() -> None:
    assert median([5, 1, 3]) == 3
    assert median([4, 1, 3, 2]) == 2.5
    assert median([2.0]) == 2.0


def test_ratio_handles_missing_and_zero() -> None:
    assert ratio(10, 4) == 2.5
    assert ratio(None, 4) is None
    assert ratio(4, None) is None
    assert ratio(4, 0) is None


def test_summarize_median_min_max_and_pooled_percentiles() -> None:
    samples = [
        Sample(100, 1.0, [1000] * 50 + [2000] * 50),  # 100 records/s
        Sample(100, 0.5, [3000] * 100),  # 200 records/s
        Sample(100, 0.25, [4000] * 99 + [100_000]),  # 400 records/s
    ]
    s = summarize(samples)
    assert s.runs == 3
    assert s.records_per_s_median == 200
    assert s.records_per_s_min == 100
    assert s.records_per_s_max == 400
    assert s.records_per_s_runs == (100, 200, 400)
    assert s.calls == 300
    # Pooled 300 latencies: ranks 1-50 = 1 µs, 51-100 = 2 µs, 101-200 = 3 µs, 201-299 = 4 µs.
    assert s.p50_us == 3.0
    assert s.p99_us == 4.0


def test_summarize_without_latencies() -> None:
    s = summarize([Sample(10, 2.0), Sample(30, 2.0)])
    assert s.records_per_s_median == 10
    assert s.p50_us is None
    assert s.p99_us is None


def test_summarize_rejects_no_samples() -> None:
    with pytest.raises(ValueError, match="zero samples"):
        summarize([])


def test_durability_classes() -> None:
    assert Durability.FSYNC_PER_OP.cls is DurabilityClass.DURABLE
    assert Durability.GROUP_COMMIT.cls is DurabilityClass.DURABLE
    assert Durability.FSYNC_PER_BATCH.cls is DurabilityClass.DURABLE
    assert Durability.OS_BUFFERED.cls is DurabilityClass.BUFFERED
    assert Durability.FSYNC_EVERY_K.cls is DurabilityClass.CEILING
    assert all(d.meaning for d in Durability)


def test_baseline_ratio() -> None:
    w = _w("x", baseline="b")
    assert baseline_ratio(w, {"x": 300.0, "b": 600.0}) == 0.5
    assert baseline_ratio(w, {"x": 300.0}) is None
    assert baseline_ratio(_w("y"), {"y": 1.0}) is None


def test_comparable_requires_same_kind_class_threads_batch() -> None:
    base = _w("a", durability=Durability.FSYNC_PER_OP)
    assert comparable(base, _w("b", durability=Durability.GROUP_COMMIT))
    assert not comparable(base, _w("b", durability=Durability.OS_BUFFERED))
    assert not comparable(base, _w("b", kind="claim-complete"))
    assert not comparable(base, _w("b", threads=8))
    assert not comparable(base, _w("b", batch=1000))


def test_compare_ours_pairs_only_equal_durability_peers_that_ran() -> None:
    mine = _w("ours.t1", OURS, durability=Durability.GROUP_COMMIT)
    mine_deferred = _w("ours.deferred", OURS, durability=Durability.OS_BUFFERED)
    fsync_peer = _w("peer.full")
    buffered_peer = _w("peer.normal", durability=Durability.OS_BUFFERED)
    absent_peer = _w("peer.absent")
    baseline = _w("base", BASE)
    medians = {
        "ours.t1": 5000.0,
        "ours.deferred": 400_000.0,
        "peer.full": 250.0,
        "peer.normal": 20_000.0,
        "base": 5000.0,
    }
    out = compare_ours(
        [mine, mine_deferred, fsync_peer, buffered_peer, absent_peer, baseline], medians
    )
    assert [(c.ours, c.peer, c.ratio) for c in out] == [
        ("ours.t1", "peer.full", 20.0),
        ("ours.deferred", "peer.normal", 20.0),
    ]


def test_check_targets_met_missed_absolute_and_missing() -> None:
    targets = [
        Target("ratio met", "a", "b", 2.0),
        Target("ratio missed", "b", "a", 2.0),
        Target("absolute met", "a", None, 300.0),
        Target("missing", "a", "zzz", 1.0),
        Target("zero denominator", "a", "zero", 1.0),
    ]
    out = check_targets(targets, {"a": 400.0, "b": 100.0, "zero": 0.0})
    assert [(r.status, r.value) for r in out] == [
        ("met", 4.0),
        ("MISSED", 0.25),
        ("met", 400.0),
        ("n/a", None),
        ("n/a", None),
    ]
    assert "zzz" in out[3].detail


def test_spec_targets_name_registered_workloads() -> None:
    from actionqueue.bench.registry import all_workloads

    names = {w.name for w in all_workloads()}
    for t in TARGETS:
        assert t.numerator in names, t.label
        assert t.denominator is None or t.denominator in names, t.label


def test_ratio_formatting_keeps_small_ratios_visible() -> None:
    from actionqueue.bench.report import _ratio

    assert _ratio(None) == "-"
    assert _ratio(1.234) == "1.23x"
    assert _ratio(0.0041) == "0.0041x"
    assert _ratio(0.05) == "0.05x"
