"""Each installed peer runs its workloads with a handful of ops, and its probe reports the
PRAGMAs its source says it sets. Skipped per peer when that peer is not installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from actionqueue.bench.peers import disk_cache, huey_sqlite, lite_queue, persist_queue, sqlite_raw
from actionqueue.bench.runner import make_payload
from actionqueue.bench.workload import RunContext, Workload

OPS = 5


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


def _run_all(workloads: list[Workload], root: Path) -> None:
    for i, w in enumerate(workloads):
        if w.threads > 8:
            continue  # 32 producers add seconds, not coverage
        ops = 2 if w.batch > 1 else OPS
        workdir = root / f"w{i}"
        workdir.mkdir()
        sample = w.run(RunContext(workdir, ops, make_payload(100)))
        assert sample.records == ops * w.batch, w.name
        assert sample.seconds > 0


def test_raw_sqlite(tmp_path: Path) -> None:
    _run_all(sqlite_raw.workloads(), tmp_path)
    assert sqlite_raw.FULL.probe is not None
    assert sqlite_raw.FULL.probe(tmp_path)["synchronous"] == "2 (FULL)"


def test_persist_queue(tmp_path: Path) -> None:
    pytest.importorskip("persistqueue")
    _run_all(persist_queue.workloads(), tmp_path)
    assert persist_queue.SYSTEM.probe is not None
    assert persist_queue.SYSTEM.probe(tmp_path)["journal_mode"] == "wal"


def test_huey(tmp_path: Path) -> None:
    pytest.importorskip("huey.storage")
    _run_all(huey_sqlite.workloads(), tmp_path)
    assert huey_sqlite.NO_FSYNC.probe is not None
    assert huey_sqlite.NO_FSYNC.probe(tmp_path)["synchronous"] == "0 (OFF)"


def test_litequeue(tmp_path: Path) -> None:
    pytest.importorskip("litequeue")
    _run_all(lite_queue.workloads(), tmp_path)
    assert lite_queue.DEFAULT.probe is not None
    assert lite_queue.FULL.probe is not None
    assert lite_queue.DEFAULT.probe(_dir(tmp_path / "d"))["synchronous"] == "1 (NORMAL)"
    assert lite_queue.FULL.probe(_dir(tmp_path / "f"))["synchronous"] == "2 (FULL)"


def test_diskcache(tmp_path: Path) -> None:
    pytest.importorskip("diskcache")
    _run_all(disk_cache.workloads(), tmp_path)
    assert disk_cache.DEFAULT.probe is not None
    assert disk_cache.FULL.probe is not None
    assert disk_cache.DEFAULT.probe(_dir(tmp_path / "d"))["synchronous"] == "1 (NORMAL)"
    assert disk_cache.FULL.probe(_dir(tmp_path / "f"))["synchronous"] == "2 (FULL)"
