"""Small, exact statistics: percentiles, medians, ratios, and a per-workload summary."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from actionqueue.bench.workload import Sample


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile: the smallest value with >= p% of values <= it.

    Nearest-rank (no interpolation) so every reported latency is one that was observed.

    >>> percentile([5, 1, 4, 2, 3], 50)
    3
    >>> percentile(list(range(1, 101)), 99)
    99
    """
    if not values:
        raise ValueError("percentile of an empty sequence is undefined")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def median(values: Sequence[float]) -> float:
    """The median (mean of the two middle values for an even count).

    >>> median([3, 1, 2])
    2
    >>> median([4, 1, 3, 2])
    2.5
    """
    if not values:
        raise ValueError("median of an empty sequence is undefined")
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when either side is missing or zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


@dataclass(frozen=True, slots=True)
class Summary:
    """Throughput over repetitions and latency over all calls of all repetitions."""

    runs: int
    records_per_s_median: float
    records_per_s_min: float
    records_per_s_max: float
    #: Per-repetition throughputs, in run order.
    records_per_s_runs: tuple[float, ...]
    #: Latency of one call in microseconds (pooled over every repetition); ``None`` when the
    #: workload does not time calls individually.
    p50_us: float | None
    p99_us: float | None
    calls: int


def summarize(samples: Sequence[Sample]) -> Summary:
    """Median/min/max throughput across repetitions; p50/p99 over the pooled call latencies.

    Latencies are pooled rather than averaged per repetition because p99 of a few hundred
    calls is one or two observations: pooling gives the tail more samples.
    """
    if not samples:
        raise ValueError("cannot summarize zero samples")
    rates = [s.records_per_s for s in samples]
    pooled = [ns for s in samples for ns in s.latencies_ns]
    return Summary(
        runs=len(samples),
        records_per_s_median=median(rates),
        records_per_s_min=min(rates),
        records_per_s_max=max(rates),
        records_per_s_runs=tuple(rates),
        p50_us=percentile(pooled, 50) / 1000 if pooled else None,
        p99_us=percentile(pooled, 99) / 1000 if pooled else None,
        calls=len(pooled),
    )
