"""Runtime benchmarks: no-op handler lifecycle throughput and submit -> start latency.

    python -m pytest benches/bench_runtime.py -q          # through pytest-benchmark
    python benches/bench_runtime.py [--n 20000]            # a plain table, same measurements

Lifecycle = submit (``submit_many``, 1,000 tasks per record) -> dispatch (one record per batch
of leases) -> no-op handler -> finish (one record per attempt, from the executor's threads, so
Immediate finishes share fsyncs through group commit), until every run is Completed. Measured
for Deferred and Immediate durability, thread and asyncio executors. The raw
``write+fdatasync`` loop of the same disk is measured in the same run as the baseline (SPEC §10
targets: >= 50k runs/s Deferred, >= 10k runs/s Immediate).

Latency = an idle queue with its background loop started; one task submitted at a time; the
time from ``submit()`` being called to the handler starting, p50 / p99 over the samples.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import actionqueue as aq
from actionqueue import DurabilityPolicy

BATCH = 1_000


def raw_fdatasync_rate(directory: Path, n: int = 300) -> float:
    """Appends of 100 bytes, each followed by fdatasync: the disk's durable-op rate."""
    path = directory / "raw.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        rec = b"x" * 100
        t0 = time.perf_counter()
        for _ in range(n):
            os.write(fd, rec)
            os.fdatasync(fd)
        return n / (time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()


def lifecycle_rate(directory: Path, n: int, durability: DurabilityPolicy, executor: str) -> float:
    """Runs/s from the first submit to the last run Completed."""
    path = Path(tempfile.mkdtemp(prefix="rt-", dir=directory))
    try:
        with aq.ActionQueue.open(
            path, durability=durability, executor=executor, snapshot_on_close=False
        ) as q:
            if executor == "asyncio":

                async def noop_async(ctx: Any, payload: Any) -> None:
                    return None

                q.register("noop", noop_async)
            else:
                q.register("noop", lambda ctx, payload: None)
            payloads = [b""] * BATCH
            t0 = time.perf_counter()
            q.start()
            for _ in range(n // BATCH):
                q.submit_many("noop", payloads)
            q.run_until_idle(timeout=600)
            elapsed = time.perf_counter() - t0
            done = q.stats()["runs"]["Completed"]
            assert done == n // BATCH * BATCH, q.stats()
            q.stop()
        return done / elapsed
    finally:
        shutil.rmtree(path, ignore_errors=True)


def start_latency(
    directory: Path, samples: int, durability: DurabilityPolicy
) -> tuple[float, float]:
    """(p50, p99) seconds from ``submit()`` to the handler starting, on an idle queue."""
    path = Path(tempfile.mkdtemp(prefix="lat-", dir=directory))
    try:
        with aq.ActionQueue.open(path, durability=durability, snapshot_on_close=False) as q:
            started = threading.Event()
            box: list[float] = []

            def h(ctx: Any, payload: Any) -> None:
                box.append(time.perf_counter())
                started.set()

            q.register("lat", h)
            q.start()
            lats = []
            for _ in range(samples):
                started.clear()
                box.clear()
                t0 = time.perf_counter()
                tid = q.submit("lat", b"")
                assert started.wait(10)
                lats.append(box[0] - t0)
                q.wait(tid, timeout=10)  # idle again before the next sample
            q.stop()
        lats.sort()
        return statistics.median(lats), lats[min(len(lats) - 1, int(len(lats) * 0.99))]
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- pytest-benchmark ------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - the script form works without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    CASES = [
        ("deferred", "threads", 20_000),
        ("deferred", "asyncio", 20_000),
        ("immediate", "threads", 10_000),
        ("immediate", "asyncio", 10_000),
    ]

    @pytest.mark.parametrize(("durability", "executor", "n"), CASES)
    def test_lifecycle(
        benchmark: Any, rates: Any, workdir: Path, durability: str, executor: str, n: int
    ) -> None:
        name = f"runtime lifecycle {durability} {executor}"
        raw = raw_fdatasync_rate(workdir)
        rates.rates.setdefault("raw write+fdatasync (runtime)", raw)
        dur = DurabilityPolicy.parse(durability)
        benchmark.pedantic(lifecycle_rate, args=(workdir, n, dur, executor), rounds=3, iterations=1)
        rates.record(name, benchmark, n, "raw write+fdatasync (runtime)")

    @pytest.mark.parametrize("durability", ["deferred", "immediate"])
    def test_start_latency(benchmark: Any, workdir: Path, durability: str) -> None:
        p50, p99 = benchmark.pedantic(
            start_latency,
            args=(workdir, 300, DurabilityPolicy.parse(durability)),
            rounds=1,
            iterations=1,
        )
        benchmark.extra_info.update(p50_ms=p50 * 1e3, p99_ms=p99 * 1e3)
        print(
            f"\nsubmit->start latency {durability}: p50 {p50 * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms"
        )


# --- script ------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000, help="runs per Deferred measurement")
    ap.add_argument("--dir", default=os.environ.get("AQ_BENCH_DIR", "."))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="aq-bench-runtime-", dir=args.dir))
    try:
        raw = statistics.median(raw_fdatasync_rate(root) for _ in range(3))
        print(f"raw write+fdatasync (100 B): {raw:,.0f} ops/s")
        for dur, n in (("deferred", args.n), ("immediate", max(BATCH, args.n // 2))):
            for ex in ("threads", "asyncio"):
                r = [
                    lifecycle_rate(root, n, DurabilityPolicy.parse(dur), ex)
                    for _ in range(args.repeats)
                ]
                med = statistics.median(r)
                print(
                    f"lifecycle {dur:9} {ex:7} n={n:6}: {med:10,.0f} runs/s "
                    f"(min {min(r):,.0f}, max {max(r):,.0f}; {med / raw:5.2f}x raw fsync rate)"
                )
        for dur in ("deferred", "immediate"):
            p50, p99 = start_latency(root, 300, DurabilityPolicy.parse(dur))
            print(
                f"submit->start latency {dur:9}: p50 {p50 * 1e3:7.3f} ms  p99 {p99 * 1e3:7.3f} ms"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
