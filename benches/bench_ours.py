"""Micro-benchmarks of actionqueue's own hot paths; skipped until the API they need lands.

They use the same guarded entry points as the harness (:mod:`actionqueue.bench.ours`), so a
missing or reshaped API is a skip naming what is missing, never an error.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actionqueue.bench import ours
from actionqueue.bench.workload import Unavailable
from conftest import Rates


@pytest.fixture
def wal(workdir: Path) -> Iterator[tuple[Any, object, object]]:
    try:
        writer_cls, immediate, deferred = ours.wal_api()
        writer = writer_cls(str(workdir / "wal"))
    except (Unavailable, TypeError) as exc:
        pytest.skip(str(exc))
    yield writer, immediate, deferred
    close = getattr(writer, "close", None)
    if callable(close):
        close()


@pytest.mark.parametrize(
    ("which", "group", "base"),
    [
        ("IMMEDIATE", "fsync-per-op", "baseline fdatasync per op"),
        ("DEFERRED", "os-buffered", "baseline write, no sync"),
    ],
    ids=["immediate", "deferred"],
)
def test_wal_append_one(
    benchmark: Any,
    wal: tuple[Any, object, object],
    payload: bytes,
    rates: Rates,
    which: str,
    group: str,
    base: str,
) -> None:
    writer, immediate, deferred = wal
    durability = immediate if which == "IMMEDIATE" else deferred
    event = [ours.task_create_event(payload, int(time.time() * 1000))]
    benchmark.group = group
    benchmark(writer.append, event, durability)
    rates.record(f"ours WAL append {which}", benchmark, baseline=base)


@pytest.mark.benchmark(group="fsync-per-batch")
def test_wal_append_batch_1000_immediate(
    benchmark: Any, wal: tuple[Any, object, object], payload: bytes, rates: Rates
) -> None:
    writer, immediate, _ = wal
    now = int(time.time() * 1000)
    batch = [ours.task_create_event(payload, now) for _ in range(1000)]
    benchmark(writer.append, batch, immediate)
    rates.record(
        "ours WAL append 1000 IMMEDIATE", benchmark, 1000, "baseline 1000 records, one fdatasync"
    )
