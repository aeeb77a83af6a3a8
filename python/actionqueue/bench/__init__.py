"""Benchmark harness: actionqueue next to the physical disk limit and its peers, in one run.

Run ``python -m actionqueue.bench`` (or ``actionqueue bench``) for the quick version and
``--full`` for the complete one; see ``benches/README.md`` and ``docs/BENCHMARKS.md``.

Module map: :mod:`~actionqueue.bench.workload` (the model), :mod:`~actionqueue.bench.durability`
(levels), :mod:`~actionqueue.bench.timing` (loops), :mod:`~actionqueue.bench.stats`,
:mod:`~actionqueue.bench.baselines`, :mod:`~actionqueue.bench.peers`,
:mod:`~actionqueue.bench.ours` (our workloads and :func:`register_ours`),
:mod:`~actionqueue.bench.registry`, :mod:`~actionqueue.bench.runner`,
:mod:`~actionqueue.bench.analysis`, :mod:`~actionqueue.bench.targets`,
:mod:`~actionqueue.bench.report`, :mod:`~actionqueue.bench.chart`,
:mod:`~actionqueue.bench.machine`, :mod:`~actionqueue.bench.harness`.
"""

from __future__ import annotations

from actionqueue.bench.durability import Durability, DurabilityClass
from actionqueue.bench.harness import Artifacts, run_and_report
from actionqueue.bench.ours import register_ours
from actionqueue.bench.runner import BenchConfig
from actionqueue.bench.workload import (
    FULL,
    QUICK,
    RunContext,
    Sample,
    Scale,
    SizeClass,
    System,
    Unavailable,
    Workload,
)

__all__ = [
    "FULL",
    "QUICK",
    "Artifacts",
    "BenchConfig",
    "Durability",
    "DurabilityClass",
    "RunContext",
    "Sample",
    "Scale",
    "SizeClass",
    "System",
    "Unavailable",
    "Workload",
    "register_ours",
    "run_and_report",
]
