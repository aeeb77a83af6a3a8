"""Many threads submitting at once: nothing lost, nothing corrupted, fsyncs shared."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from authority_helpers import T0, create, spec

from actionqueue.core.mutation import DurabilityPolicy
from actionqueue.storage.recovery import bootstrap


@pytest.mark.timeout(120)
def test_sixteen_threads_immediate_share_fsyncs(tmp_path: Path) -> None:
    # A real disk (not tmpfs): group commit only matters where fsync costs something.
    a, _ = bootstrap(tmp_path / "data", snapshot_every=0, snapshot_on_close=False)
    per_thread, threads = 40, 16
    task_ids: list[list[bytes]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def worker(k: int) -> None:
        try:
            start.wait()
            for _ in range(per_thread):
                s = spec()
                cmds, _ = create(s, T0)
                a.submit_batch(cmds, DurabilityPolicy.IMMEDIATE)
                task_ids[k].append(s.task_id.bytes)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    stats = a.stats()
    submits = threads * per_thread
    assert stats.submits == submits
    assert a.task_count == submits
    assert a.run_count == submits
    assert stats.synced_sequence == 2 * submits
    assert stats.wal_syncs < submits / 2, stats
    digest = a.state_digest()
    a.close()
    b, report = bootstrap(tmp_path / "data")
    with b:
        assert b.state_digest() == digest
        assert report.records_replayed == submits
        for ids in task_ids:
            for tid in ids:
                assert b.get_task(tid) is not None


@pytest.mark.timeout(120)
def test_readers_and_writers_concurrently(data_dir: Path) -> None:
    a, _ = bootstrap(data_dir, snapshot_every=50)
    stop = threading.Event()
    seen: list[int] = []

    def reader() -> None:
        last = 0
        while not stop.is_set():
            n = a.latest_sequence
            assert n >= last
            last = n
            sum(a.counts().values())
            a.ready_candidates(5)
        seen.append(last)

    def writer() -> None:
        for _ in range(100):
            a.submit_batch(create(spec(), T0)[0], DurabilityPolicy.DEFERRED)

    rs = [threading.Thread(target=reader) for _ in range(4)]
    ws = [threading.Thread(target=writer) for _ in range(4)]
    for t in rs + ws:
        t.start()
    for t in ws:
        t.join()
    stop.set()
    for t in rs:
        t.join()
    assert a.latest_sequence == 800
    # Snapshots were captured while readers and writers ran: every 50 events, spaced by the
    # live records the last capture encoded (here all of them stay live: 50, 100, 200, ...).
    assert a.stats().snapshots >= 5
    assert len(seen) == 4
    a.close()
