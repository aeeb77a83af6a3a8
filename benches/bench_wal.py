"""WAL throughput next to the raw disk, measured in one run (run on a release build):

    pip install -e . && python -m pytest benches/bench_wal.py -q -p no:randomly

Rates land in ``benches/conftest.py``'s summary with their ratios against the baselines of
the same run (SPEC §10 targets). Not collected by the default ``pytest`` run.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from actionqueue import _core
from actionqueue.storage.wal import WalFsReader, WalFsWriter
from conftest import RATES

# ~100-byte records (40-byte header + ~60-byte payload), like SPEC §10's raw measurement.
REASON = "x" * 40
IMMEDIATE_N = 300


def event(i: int) -> tuple[Any, ...]:
    return (9, uuid.UUID(int=i + 1).bytes, REASON, 1_700_000_000_000 + i)


def record_size() -> int:
    return 40 + len(_core.encode_events([event(1)]))


def timed(benchmark: Any, fn: Any) -> float:
    """Runs ``fn`` once under pytest-benchmark; returns the seconds it took."""
    out: list[float] = []

    def run() -> None:
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    return out[-1]


def interleaved(benchmark: Any, raw: Any, wal: Any, rounds: int = 6) -> tuple[float, float]:
    """Alternates the raw baseline and the WAL in short rounds, so both see the same disk
    (a shared machine's disk speed drifts by several times within seconds). Returns the
    seconds each took in total."""
    totals = [0.0, 0.0]

    def run() -> None:
        for _ in range(rounds):
            for k, fn in enumerate((raw, wal)):
                t = time.perf_counter()
                fn()
                totals[k] += time.perf_counter() - t

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    return totals[0], totals[1]


def test_immediate_one_thread_vs_raw_write_fdatasync(benchmark: Any, tmp_path: Path) -> None:
    data = b"r" * record_size()
    n = IMMEDIATE_N // 6
    fd = os.open(tmp_path / "raw", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def raw() -> None:
        for _ in range(n):
            os.write(fd, data)
            os.fdatasync(fd)

    with WalFsWriter(tmp_path / "wal") as w:
        w.append(event(0), "immediate")  # the first sync pays for the preallocated space

        def wal() -> None:
            for i in range(n):
                w.append(event(i), "immediate")

        try:
            raw_s, wal_s = interleaved(benchmark, raw, wal)
        finally:
            os.close(fd)
    RATES["raw_sync"] = 6 * n / raw_s
    RATES["immediate_1"] = 6 * n / wal_s


def test_immediate_batch_of_1000_vs_raw(benchmark: Any, tmp_path: Path) -> None:
    batch = [event(i) for i in range(1000)]
    data = b"r" * (40 + len(_core.encode_events(batch)))
    n = 10
    fd = os.open(tmp_path / "raw", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def raw() -> None:
        for _ in range(n):
            os.write(fd, data)
            os.fdatasync(fd)

    with WalFsWriter(tmp_path / "wal") as w:
        w.append(batch, "immediate")

        def wal() -> None:
            for _ in range(n):
                w.append(batch, "immediate")

        try:
            raw_s, wal_s = interleaved(benchmark, raw, wal)
        finally:
            os.close(fd)
    RATES["raw_batch"] = 6 * n / raw_s
    RATES["batch_1000"] = 6 * n / wal_s


@pytest.mark.parametrize("threads", [8, 32])
def test_immediate_many_threads(benchmark: Any, tmp_path: Path, threads: int) -> None:
    """N threads appending Immediate, interleaved with a one-thread Immediate loop on the same
    writer, so the group-commit ratio compares like with like on a drifting disk."""
    per_thread = 40 if threads == 8 else 16
    single_n = 30
    with WalFsWriter(tmp_path) as w:
        w.append(event(0), "immediate")

        def single() -> None:
            for i in range(single_n):
                w.append(event(i), "immediate")

        def many() -> None:
            barrier = threading.Barrier(threads)

            def run() -> None:
                barrier.wait()
                for i in range(per_thread):
                    w.append(event(i), "immediate")

            pool = [threading.Thread(target=run) for _ in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()

        single_s, many_s = interleaved(benchmark, single, many)
        RATES[f"immediate_1_near_{threads}"] = 6 * single_n / single_s
        RATES[f"immediate_{threads}"] = 6 * threads * per_thread / many_s
        stats = w.stats()
        benchmark.extra_info["appends_per_sync"] = stats.appends / stats.syncs


def test_deferred_single_appends(benchmark: Any, tmp_path: Path) -> None:
    n = 200_000
    events = [event(i) for i in range(n)]
    with WalFsWriter(tmp_path) as w:

        def loop() -> None:
            append = w.append
            for e in events:
                append(e, "deferred")

        RATES["deferred_single"] = n / timed(benchmark, loop)


def test_deferred_single_appends_core(benchmark: Any, tmp_path: Path) -> None:
    """The same through ``_core`` directly: the cost of the Python wrapper shows by
    difference."""
    n = 200_000
    events = [[event(i)] for i in range(n)]
    w = _core.WalWriter(str(tmp_path))
    try:

        def loop() -> None:
            append = w.append
            for e in events:
                append(e, False)

        RATES["deferred_single_core"] = n / timed(benchmark, loop)
    finally:
        w.close()


def test_deferred_batches(benchmark: Any, tmp_path: Path) -> None:
    batch = [event(i) for i in range(1000)]
    n = 500
    with WalFsWriter(tmp_path) as w:

        def loop() -> None:
            for _ in range(n):
                w.append(batch, "deferred")

        RATES["deferred_batch_events"] = n * len(batch) / timed(benchmark, loop)


def test_replay(benchmark: Any, tmp_path: Path) -> None:
    batch = [event(i) for i in range(1000)]
    with WalFsWriter(tmp_path) as w:
        for _ in range(1000):
            w.append(batch, "deferred")
    size = sum(p.stat().st_size for p in tmp_path.glob("*.wal"))
    count = 0

    def replay() -> None:
        nonlocal count
        r = WalFsReader(tmp_path)
        count = 0
        while chunk := r.read_batch(8192):
            count += len(chunk)

    seconds = timed(benchmark, replay)
    assert count == 1_000_000
    RATES["replay_events_to_python"] = count / seconds
    RATES["replay_bytes_to_python"] = size / seconds
    t = time.perf_counter()
    report = _core.wal_verify(str(tmp_path))
    verify_seconds = time.perf_counter() - t
    assert report["events"] == 1_000_000
    RATES["verify_events_rust"] = count / verify_seconds
    RATES["verify_bytes_rust"] = size / verify_seconds
