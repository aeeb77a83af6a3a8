"""Snapshot helpers: take, list, inspect, load; loading gives exactly the snapshotted state."""

from __future__ import annotations

from pathlib import Path

import pytest
from authority_helpers import T0, create, spec

from actionqueue.core.mutation import DurabilityPolicy
from actionqueue.errors import SnapshotError
from actionqueue.storage import snapshot
from actionqueue.storage.recovery import ReplayReducer, bootstrap


def test_take_list_inspect_load(data_dir: Path) -> None:
    a, _ = bootstrap(data_dir, snapshot_every=0, snapshot_on_close=False)
    for _ in range(20):
        a.submit_batch(create(spec())[0], DurabilityPolicy.DEFERRED)
    info = snapshot.take(a)
    assert info is not None
    assert info.sequence == 40
    assert info.bytes > 40
    digest = a.state_digest()
    a.close()
    files = snapshot.list_snapshots(data_dir / "snapshots")
    assert [(f.path, f.sequence) for f in files] == [(info.path, 40)]
    ins = snapshot.inspect(info.path)
    assert ins.valid
    assert ins.error is None
    assert (ins.sequence, ins.tasks, ins.runs, ins.version) == (40, 20, 20, 4)
    assert isinstance(ins.log_id, int)  # the wal_id of a's log
    assert ins.log_id > 0
    assert ins.file_size == info.bytes
    r = snapshot.load(info.path)
    assert isinstance(r, ReplayReducer)
    assert r.state_digest() == digest
    assert r.latest_sequence == 40
    assert r.task_count == 20


def test_inspect_and_load_report_corruption(tmp_path: Path) -> None:
    r = ReplayReducer()
    r.apply(None, create(spec())[0])
    path = Path(r.write_snapshot(tmp_path))
    assert path.name == f"snapshot-{2:020d}.aqs"
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0x80]))
    ins = snapshot.inspect(path)
    assert not ins.valid
    assert ins.sequence == 2
    assert ins.error is not None
    assert "crc mismatch" in ins.error
    with pytest.raises(SnapshotError, match="crc mismatch"):
        snapshot.load(path)
    path.write_bytes(b"nope")
    ins = snapshot.inspect(path)
    assert not ins.valid
    assert ins.sequence is None


def test_snapshot_without_a_directory_is_none(tmp_path: Path) -> None:
    from actionqueue.storage.mutation import StorageMutationAuthority
    from actionqueue.storage.wal.fs_writer import WalFsWriter

    with StorageMutationAuthority(WalFsWriter(tmp_path / "wal"), ReplayReducer()) as a:
        assert a.snapshot() is None
        assert a.snapshot_dir is None
    with StorageMutationAuthority(
        WalFsWriter(tmp_path / "wal2"), ReplayReducer(), snapshot_dir=tmp_path / "snaps"
    ) as a:
        a.submit_batch(create(spec(), T0)[0], DurabilityPolicy.IMMEDIATE)
        info = a.snapshot()
        assert info is not None
        assert Path(info.path).parent == tmp_path / "snaps"
