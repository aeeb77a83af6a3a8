"""Recovery: reopen equals live state, torn tails, snapshot fallbacks, checkpoints, gaps,
startup cost proportional to the tail, directory layout and permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from authority_helpers import T0, create, segments, snapshots, spec

from actionqueue.core.mutation import DurabilityPolicy, TaskCancelCommand
from actionqueue.errors import DataDirError, RecoveryError, WalCorruptionError
from actionqueue.storage.mutation import StorageMutationAuthority
from actionqueue.storage.recovery import bootstrap

DEF = DurabilityPolicy.DEFERRED
SMALL = {"segment_size": 4096, "preallocate": 0, "snapshot_on_close": False}


def fill(a: StorageMutationAuthority, n: int, cancel_every: int = 3) -> None:
    for k in range(n):
        s = spec()
        a.submit_batch(create(s, T0 + k)[0], DEF)
        if k % cancel_every == 0:
            a.submit_command(TaskCancelCommand(None, s.task_id, T0 + k), DEF)


def test_new_data_dir_layout_is_owner_only(data_dir: Path) -> None:
    a, report = bootstrap(data_dir)
    a.close()
    for d in (data_dir, data_dir / "wal", data_dir / "snapshots"):
        assert d.is_dir()
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert report.snapshot_path is None
    assert report.final_sequence == 0
    assert report.snapshots_skipped == ()
    assert report.duration_ms >= 0


def test_reopen_gives_the_live_state(data_dir: Path) -> None:
    a, _ = bootstrap(data_dir, snapshot_every=0, snapshot_on_close=False)
    fill(a, 30)
    live = a.state_digest()
    a.close()
    for _ in range(2):  # replaying the same log twice gives the same digest
        b, r = bootstrap(data_dir, digest=True)
        assert r.digest == live == b.state_digest()
        assert r.events_replayed == r.final_sequence == b.latest_sequence
        b.close()


def test_torn_tail_is_cut_and_reported(data_dir: Path) -> None:
    a, _ = bootstrap(data_dir, **SMALL)  # type: ignore[arg-type]
    fill(a, 5)
    live, last = a.state_digest(), a.latest_sequence
    a.close()
    seg = segments(data_dir)[-1]
    with seg.open("ab") as f:  # a record header that never got its payload
        f.write(b"AQRC\x01\x00\x00\x00" + bytes(20))
    b, r = bootstrap(data_dir, **SMALL)  # type: ignore[arg-type]
    with b:
        assert r.wal.truncated
        assert r.tail_truncated_bytes == 28
        assert r.wal.segment is not None
        assert r.wal.segment.endswith(seg.name)
        assert b.state_digest() == live
        assert b.latest_sequence == last


def test_snapshot_checkpoint_and_tail_only_startup(data_dir: Path) -> None:
    a, _ = bootstrap(data_dir, snapshot_every=60, keep_snapshots=2, **SMALL)  # type: ignore[arg-type]
    fill(a, 100)
    live, last = a.state_digest(), a.latest_sequence
    st = a.stats()
    assert st.snapshots >= 3
    assert st.last_snapshot is not None
    a.close()
    snaps = snapshots(data_dir)
    assert len(snaps) == 2
    # Checkpoint: segments wholly before the older kept snapshot are gone.
    first_seg = int(segments(data_dir)[0].name.split(".")[0])
    older = int(snaps[1].name[len("snapshot-") : -len(".aqs")])
    assert 1 < first_seg <= older + 1
    b, r = bootstrap(data_dir, **SMALL)  # type: ignore[arg-type]
    with b:
        assert b.state_digest() == live
        assert r.snapshot_sequence == st.last_snapshot.sequence
        # Startup replays the tail only, never the whole history.
        assert r.events_replayed == last - r.snapshot_sequence < 60


@pytest.mark.parametrize("damage", ["truncated", "flipped", "missing", "empty", "garbage"])
def test_bad_newest_snapshot_falls_back_to_the_older_one(data_dir: Path, damage: str) -> None:
    a, _ = bootstrap(data_dir, snapshot_every=0, **SMALL)  # type: ignore[arg-type]
    fill(a, 10)
    a.snapshot()
    fill(a, 10)
    a.snapshot()
    fill(a, 5)
    live, last = a.state_digest(), a.latest_sequence
    a.close()
    newest, older = snapshots(data_dir)
    data = newest.read_bytes()
    if damage == "truncated":
        newest.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":
        i = len(data) // 3
        newest.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :])
    elif damage == "missing":
        newest.unlink()
    elif damage == "empty":
        newest.write_bytes(b"")
    else:
        newest.write_bytes(os.urandom(len(data)))
    b, r = bootstrap(data_dir, **SMALL)  # type: ignore[arg-type]
    with b:
        assert b.state_digest() == live
        assert b.latest_sequence == last
        assert r.snapshot_path == str(older)
        if damage == "missing":
            assert r.snapshots_skipped == ()
        else:
            assert [s.path for s in r.snapshots_skipped] == [str(newest)]
            assert r.snapshots_skipped[0].reason


def test_snapshot_newer_than_the_log_is_skipped(data_dir: Path) -> None:
    a, _ = bootstrap(data_dir, snapshot_every=0, **SMALL)  # type: ignore[arg-type]
    fill(a, 4)
    info = a.snapshot()
    assert info is not None
    live = a.state_digest()
    a.close()
    # Pretend the snapshot was taken later than the log reaches (e.g. the log was cut).
    ahead = Path(info.path).with_name(f"snapshot-{info.sequence + 100:020d}.aqs")
    ahead.write_bytes(Path(info.path).read_bytes())
    b, r = bootstrap(data_dir, **SMALL)  # type: ignore[arg-type]
    with b:
        assert b.state_digest() == live
        assert r.snapshot_sequence == info.sequence
        assert "newer than the log" in r.snapshots_skipped[0].reason
    # Set aside, so that it is never loaded once the log grows past its sequence.
    assert not ahead.exists()
    assert ahead.with_name(ahead.name + ".stale").exists()
    assert "renamed to" in r.snapshots_skipped[0].reason


def test_a_snapshot_of_history_cut_by_repair_is_never_loaded_again(data_dir: Path) -> None:
    """After `repair` cuts the log below a snapshot, the log grows again under new records:
    the old snapshot (of the cut history) must not be loaded on top of them."""
    from actionqueue.storage.wal import repair

    opts = {**SMALL, "segment_size": 1 << 20, "snapshot_every": 0}
    a, _ = bootstrap(data_dir, **opts)  # type: ignore[arg-type]
    fill(a, 40, cancel_every=1000)
    assert a.snapshot() is not None
    a.close()
    (seg,) = segments(data_dir)
    raw = bytearray(seg.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # bit rot in the middle: a hard error at open
    seg.write_bytes(bytes(raw))
    with pytest.raises(WalCorruptionError):
        bootstrap(data_dir, **opts)  # type: ignore[arg-type]
    cut = repair(data_dir / "wal", truncate_at_first_corruption=True)
    assert cut.truncated
    b, r = bootstrap(data_dir, **opts)  # type: ignore[arg-type]
    assert r.snapshot_path is None
    assert "newer than the log" in r.snapshots_skipped[0].reason
    fill(b, 40, cancel_every=1000)  # the log now reaches past the old snapshot's sequence
    live, last = b.state_digest(), b.latest_sequence
    b.close()
    c, r = bootstrap(data_dir, **opts)  # type: ignore[arg-type]
    with c:
        assert r.snapshot_path is None
        assert c.latest_sequence == last
        assert c.state_digest() == live


def test_an_empty_log_under_snapshots_is_refused(data_dir: Path) -> None:
    a, _ = bootstrap(data_dir)
    fill(a, 3)
    a.snapshot()
    a.close()
    for seg in segments(data_dir):
        seg.unlink()
    with pytest.raises(DataDirError, match="WAL holds no records"):
        bootstrap(data_dir)
    assert snapshots(data_dir)  # nothing was set aside or deleted


def test_every_snapshot_unusable_after_checkpoint_names_the_gap(data_dir: Path) -> None:
    a, _ = bootstrap(data_dir, snapshot_every=40, keep_snapshots=1, **SMALL)  # type: ignore[arg-type]
    fill(a, 60)
    a.close()
    assert int(segments(data_dir)[0].name.split(".")[0]) > 1
    for s in snapshots(data_dir):
        s.write_bytes(b"AQSNAPSH" + bytes(10))
    with pytest.raises(RecoveryError, match=r"events 1\.\.\d+ are missing"):
        bootstrap(data_dir)


def test_missing_wal_with_snapshots_is_refused(data_dir: Path) -> None:
    a, _ = bootstrap(data_dir)
    fill(a, 3)
    a.snapshot()
    a.close()
    import shutil

    shutil.rmtree(data_dir / "wal")
    with pytest.raises(DataDirError, match="WAL directory is missing"):
        bootstrap(data_dir)


def test_snapshot_on_close(data_dir: Path) -> None:
    a, _ = bootstrap(data_dir, snapshot_every=0)
    fill(a, 5)
    a.close()
    b, r = bootstrap(data_dir)
    with b:
        assert r.snapshot_sequence == b.latest_sequence
        assert r.events_replayed == 0
    # Nothing changed since: no new snapshot at the second close.
    assert len(snapshots(data_dir)) == 1


def test_a_snapshot_too_large_to_read_back_is_not_kept_and_the_log_stays(data_dir: Path) -> None:
    """A snapshot above ``max_snapshot_size`` would be skipped by the next open: it is not
    kept, and no checkpoint deletes the log behind it (the directory used to open only with a
    larger limit)."""
    from actionqueue.errors import SnapshotError

    opts = {**SMALL, "snapshot_every": 0, "max_snapshot_size": 2_000}
    a, _ = bootstrap(data_dir, **opts)  # type: ignore[arg-type]
    fill(a, 30)
    live = a.state_digest()
    with pytest.raises(SnapshotError, match="exceeds max_snapshot_size"):
        a.snapshot()
    assert snapshots(data_dir) == []
    assert "exceeds max_snapshot_size" in (a.stats().last_snapshot_error or "")
    a.close()
    b, r = bootstrap(data_dir, **opts)  # type: ignore[arg-type]
    with b:
        assert r.snapshot_path is None
        assert b.state_digest() == live


def test_a_gap_names_the_snapshots_that_were_skipped(data_dir: Path) -> None:
    a, _ = bootstrap(data_dir, snapshot_every=0, keep_snapshots=1, **SMALL)  # type: ignore[arg-type]
    fill(a, 60)
    info = a.snapshot()
    assert info is not None
    assert info.segments_removed > 0
    a.close()
    with pytest.raises(RecoveryError, match=r"snapshots skipped: .*exceeds the snapshot size") as e:
        bootstrap(data_dir, max_snapshot_size=100)
    # The snapshot is intact: the message says how to read it before it talks of restoring.
    size = Path(info.path).stat().st_size
    assert f"open with max_snapshot_size >= {size} before restoring anything" in str(e.value)
    b, r = bootstrap(data_dir, max_snapshot_size=size)
    with b:
        assert r.snapshot_path == info.path
