"""Micro-benchmarks of one operation each: the physical baselines and the peers.

Run with ``python -m pytest benches`` (add ``--benchmark-only``, ``-k huey``, ...). Each
benchmark's durability is in its group name; the session summary divides every records/s by
its baseline's. For the full side-by-side comparison (threads, repetitions, JSON, chart) use
``python -m actionqueue.bench``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actionqueue.bench.peers import disk_cache, huey_sqlite, lite_queue, persist_queue, sqlite_raw
from conftest import Rates

FSYNC = "baseline fdatasync per op"
NOSYNC = "baseline write, no sync"
BATCH = "baseline 1000 records, one fdatasync"

_sync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


@pytest.fixture
def log_fd(workdir: Path) -> Iterator[int]:
    fd = os.open(workdir / "raw.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    yield fd
    os.close(fd)


# --- baselines -------------------------------------------------------------------------------


@pytest.mark.benchmark(group="fsync-per-op")
def test_baseline_fdatasync_per_op(
    benchmark: Any, log_fd: int, payload: bytes, rates: Rates
) -> None:
    def op() -> None:
        os.write(log_fd, payload)
        _sync(log_fd)

    benchmark(op)
    rates.record(FSYNC, benchmark)


@pytest.mark.benchmark(group="os-buffered")
def test_baseline_write_no_sync(benchmark: Any, log_fd: int, payload: bytes, rates: Rates) -> None:
    benchmark(os.write, log_fd, payload)
    rates.record(NOSYNC, benchmark)


@pytest.mark.benchmark(group="fsync-per-batch")
def test_baseline_batch_one_fdatasync(
    benchmark: Any, log_fd: int, payload: bytes, rates: Rates
) -> None:
    buffer = payload * 1000

    def op() -> None:
        os.write(log_fd, buffer)
        _sync(log_fd)

    benchmark(op)
    rates.record(BATCH, benchmark, records_per_call=1000, baseline=FSYNC)


# --- raw sqlite3 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("synchronous", "group", "base"),
    [
        ("FULL", "fsync-per-op", FSYNC),
        ("NORMAL", "os-buffered", NOSYNC),
    ],
)
def test_sqlite_insert(
    benchmark: Any,
    workdir: Path,
    payload: bytes,
    rates: Rates,
    synchronous: str,
    group: str,
    base: str,
) -> None:
    benchmark.group = group
    conn = sqlite_raw.connect(workdir, synchronous)
    try:
        benchmark(conn.execute, "INSERT INTO queue(payload) VALUES (?)", (payload,))
    finally:
        conn.close()
    rates.record(f"sqlite3 WAL {synchronous} insert", benchmark, baseline=base)


@pytest.mark.benchmark(group="fsync-per-batch")
def test_sqlite_full_batch_1000(
    benchmark: Any, workdir: Path, payload: bytes, rates: Rates
) -> None:
    conn = sqlite_raw.connect(workdir, "FULL")
    rows = [(payload,)] * 1000

    def op() -> None:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO queue(payload) VALUES (?)", rows)
        conn.execute("COMMIT")

    try:
        benchmark(op)
    finally:
        conn.close()
    rates.record("sqlite3 WAL FULL 1000-row txn", benchmark, 1000, baseline=BATCH)


# --- queue libraries -------------------------------------------------------------------------


def _submit_cases() -> list[Any]:
    """(id, module to import, opener, submit method, durability group, baseline)."""
    return [
        pytest.param("persistqueue", lambda d: persist_queue.open_queue(d, False), "put",
                     "fsync-per-op", FSYNC, id="persist-queue.put"),
        pytest.param("huey.storage", lambda d: huey_sqlite.open_queue(d, None), "enqueue",
                     "fsync-per-op", FSYNC, id="huey-default.enqueue"),
        pytest.param("huey.storage", lambda d: huey_sqlite.open_queue(d, False), "enqueue",
                     "os-buffered", NOSYNC, id="huey-nofsync.enqueue"),
        pytest.param("litequeue", lambda d: lite_queue.open_queue(d, False), "put",
                     "os-buffered", NOSYNC, id="litequeue-default.put"),
        pytest.param("litequeue", lambda d: lite_queue.open_queue(d, True), "put",
                     "fsync-per-op", FSYNC, id="litequeue-full.put"),
        pytest.param("diskcache", lambda d: disk_cache.open_queue(d, False), "append",
                     "os-buffered", NOSYNC, id="diskcache-default.append"),
        pytest.param("diskcache", lambda d: disk_cache.open_queue(d, True), "append",
                     "fsync-per-op", FSYNC, id="diskcache-full.append"),
    ]  # fmt: skip


@pytest.mark.parametrize(("module", "opener", "method", "group", "base"), _submit_cases())
def test_peer_submit(
    benchmark: Any,
    workdir: Path,
    payload: bytes,
    rates: Rates,
    request: pytest.FixtureRequest,
    module: str,
    opener: Callable[[Path], Any],
    method: str,
    group: str,
    base: str,
) -> None:
    pytest.importorskip(module)
    benchmark.group = group
    queue = opener(workdir)
    item: Any = payload.decode("ascii") if module == "litequeue" else payload
    benchmark(getattr(queue, method), item)
    rates.record(request.node.callspec.id, benchmark, baseline=base)
    _close(queue)


def _close(queue: Any) -> None:
    closer = getattr(queue, "close", None) or getattr(getattr(queue, "cache", None), "close", None)
    if closer is not None:
        closer()


@pytest.mark.benchmark(group="fsync-per-op")
def test_persist_queue_get_ack(benchmark: Any, workdir: Path, payload: bytes, rates: Rates) -> None:
    pytest.importorskip("persistqueue")
    q = persist_queue.open_queue(workdir, False)

    def op() -> None:
        q.ack(id=q.get(block=False, raw=True)["pqid"])

    # pedantic: each round's item is put by the untimed setup, so the queue never runs dry.
    def put_one() -> None:
        q.put(payload)

    benchmark.pedantic(op, setup=put_one, rounds=200)
    rates.record("persist-queue.get+ack", benchmark, baseline=FSYNC)
    q.close()


@pytest.mark.benchmark(group="fsync-per-op")
def test_huey_dequeue(benchmark: Any, workdir: Path, payload: bytes, rates: Rates) -> None:
    pytest.importorskip("huey.storage")
    s = huey_sqlite.open_queue(workdir, None)

    def enqueue_one() -> None:
        s.enqueue(payload)

    benchmark.pedantic(s.dequeue, setup=enqueue_one, rounds=200)
    rates.record("huey-default.dequeue", benchmark, baseline=FSYNC)
    s.close()
