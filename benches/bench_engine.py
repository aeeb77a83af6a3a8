"""Engine hot paths over the real authority: dispatch + finish round trips, promotion and
selection with many Ready runs. Skipped cleanly while ``actionqueue.storage.mutation`` is missing.

``AQ_BENCH_1M=1`` adds the 1,000,000-Ready-runs variant.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actionqueue.core import AttemptOutcome, DurabilityPolicy, RunPolicy, TaskId, TaskSpec
from actionqueue.engine import Engine, ManualClock
from conftest import Rates

T0 = 1_700_000_000_000
SUCCESS = AttemptOutcome.SUCCESS


def _authority(path: Path) -> Any:
    try:
        mod = importlib.import_module("actionqueue.storage.mutation")
    except ImportError as exc:
        pytest.skip(f"the Rust authority is not available: {exc}")
    return mod.StorageMutationAuthority.open(str(path))


@pytest.fixture
def auth(workdir: Path) -> Iterator[Any]:
    a = _authority(workdir / "data")
    yield a
    a.close()


def _fill(engine: Engine, n: int, batch: int = 10_000) -> None:
    for i in range(0, n, batch):
        engine.submit_many(
            [TaskSpec(TaskId.new(), b"", RunPolicy.once()) for _ in range(min(batch, n - i))],
            durability=DurabilityPolicy.DEFERRED,
        )


@pytest.mark.parametrize("durability", ["DEFERRED", "IMMEDIATE"])
def test_dispatch_finish_round_trip(
    benchmark: Any, auth: Any, rates: Rates, durability: str
) -> None:
    """One run per round trip: dispatch_next(limit=1) + finish_attempt (no handler)."""
    dur = DurabilityPolicy[durability]
    engine = Engine(auth, ManualClock(T0), owner="bench", durability=dur)
    n = 2_000 if dur is DurabilityPolicy.IMMEDIATE else 50_000
    _fill(engine, n + 10)
    engine.tick()

    def round_trip() -> None:
        (d,) = engine.dispatch_next(limit=1)
        engine.finish_attempt(d.run_id, d.attempt_id, SUCCESS)

    benchmark.pedantic(round_trip, rounds=n // 10, iterations=10, warmup_rounds=1)
    rates.record(f"engine dispatch+finish {durability.lower()}", benchmark)


@pytest.mark.parametrize("batch", [64])
def test_dispatch_finish_batched_deferred(
    benchmark: Any, auth: Any, rates: Rates, batch: int
) -> None:
    """dispatch_next(limit=64) then 64 finish_attempt calls, Deferred."""
    engine = Engine(auth, ManualClock(T0), owner="bench", durability=DurabilityPolicy.DEFERRED)
    _fill(engine, 100_000)
    engine.tick()

    def round() -> None:
        for d in engine.dispatch_next(limit=batch):
            engine.finish_attempt(d.run_id, d.attempt_id, SUCCESS)

    benchmark.pedantic(round, rounds=100_000 // batch - 10, iterations=1, warmup_rounds=1)
    rates.record(f"engine dispatch+finish x{batch} deferred", benchmark, records_per_call=batch)


def _sizes() -> list[int]:
    return [100_000, 1_000_000] if os.environ.get("AQ_BENCH_1M") else [100_000]


@pytest.mark.parametrize("n", _sizes())
def test_promotion_then_selection(benchmark: Any, workdir: Path, rates: Rates, n: int) -> None:
    """Promote n due Scheduled runs (tick), then select+lease 100 of the n Ready ones."""
    auth = _authority(workdir / "data")
    try:
        clock = ManualClock(T0)
        engine = Engine(auth, clock, owner="bench", durability=DurabilityPolicy.DEFERRED)
        _fill(engine, n)
        report = benchmark.pedantic(engine.tick, rounds=1, iterations=1)
        assert report.promoted == n
        rates.record(f"engine promotion {n} ready", benchmark, records_per_call=n)
        for _ in range(10):
            assert len(engine.dispatch_next(limit=100)) == 100
    finally:
        auth.close()


@pytest.mark.parametrize("n", _sizes())
def test_selection_among_many_ready(benchmark: Any, workdir: Path, rates: Rates, n: int) -> None:
    """dispatch_next(limit=100) with n Ready runs: cost independent of n (index order)."""
    auth = _authority(workdir / "data")
    try:
        engine = Engine(auth, ManualClock(T0), owner="bench", durability=DurabilityPolicy.DEFERRED)
        _fill(engine, n)
        engine.tick()
        benchmark.pedantic(lambda: engine.dispatch_next(limit=100), rounds=50, iterations=1)
        rates.record(f"engine select+lease 100 of {n} ready", benchmark, records_per_call=100)
    finally:
        auth.close()
