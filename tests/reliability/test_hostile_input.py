"""Hostile input at the data-directory level, and security: owner-only permissions, no
symlinked or world-writable directories, no planted LOCK link followed, nothing from the log
ever unpickled or executed; arbitrary bytes as WAL segments and snapshots (hypothesis) only
ever give a clean ``ActionQueueError`` or a usable queue."""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import actionqueue
from actionqueue import errors
from actionqueue.storage.recovery import ReplayReducer, bootstrap

SOAK = os.environ.get("AQ_SOAK", "0") not in ("", "0")
SEGMENT = "00000000000000000001.wal"


def make_queue(data: Path, events: int = 5) -> None:
    auth, _ = bootstrap(data)
    for i in range(events):
        auth.submit_wire([(10 + i % 2, 1_700_000_000_000 + i)], "immediate")
    auth.snapshot()
    auth.close()


def test_files_and_directories_are_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "q"
    make_queue(data)
    for p in [data, *data.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & 0o077 == 0, f"{p} has mode {mode:o}"


def test_symlinked_data_directory_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    make_queue(real)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(errors.DataDirError, match="symbolic link") as e:
        bootstrap(link)
    assert e.value.path == str(link)
    bootstrap(os.path.realpath(link))[0].close()  # the documented opt-in


@pytest.mark.parametrize("which", ["", "wal", "snapshots"])
def test_world_writable_directories_are_refused(tmp_path: Path, which: str) -> None:
    data = tmp_path / "q"
    make_queue(data)
    (data / which).chmod(0o777)
    with pytest.raises(errors.DataDirError, match="world-writable"):
        bootstrap(data)
    (data / which).chmod(0o700)
    bootstrap(data)[0].close()


def test_a_planted_lock_symlink_is_refused_not_followed(tmp_path: Path) -> None:
    data = tmp_path / "q"
    make_queue(data)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (data / "wal" / "LOCK").unlink()
    (data / "wal" / "LOCK").symlink_to(victim)
    with pytest.raises(errors.DataDirError, match="symbolic link"):
        bootstrap(data)
    assert victim.read_text() == "precious"


#: Modules allowed to use ``pickle``: the transport of handlers and results between this
#: process and executor worker processes (the processes executor, a process pool, Dask), which
#: pickle both anyway — in memory, between processes running the user's own code. Nothing
#: read from the data directory is ever unpickled: those modules never touch storage.
PICKLE_TRANSPORT = {"runtime/executors/base.py", "runtime/executors/processes.py"}


def test_nothing_is_unpickled_or_executed() -> None:
    pkg = Path(actionqueue.__file__).parent
    banned = re.compile(r"\bmarshal\b|\bshelve\b|\beval\(|\bexec\(|yaml\.load\(|__import__\(")
    pickling = re.compile(r"\bpickle\.|\bimport pickle\b|\bcloudpickle\.|\bUnpickler\b")
    hits = []
    for src in pkg.rglob("*.py"):
        rel = src.relative_to(pkg).as_posix()
        text = src.read_text()
        for n, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            if banned.search(line) or (pickling.search(line) and rel not in PICKLE_TRANSPORT):
                hits.append(f"{rel}:{n}: {line.strip()}")
        if rel in PICKLE_TRANSPORT:
            assert "storage" not in text, f"{rel} must not read the data directory"
    assert hits == [], "\n".join(hits)


def test_garbage_in_the_wal_directory_names_the_file(tmp_path: Path) -> None:
    data = tmp_path / "q"
    make_queue(data)
    (data / "wal" / "00000000000000000099.wal").mkdir()
    with pytest.raises(errors.DataDirError, match="not a regular file") as e:
        bootstrap(data)
    assert e.value.path.endswith("00000000000000000099.wal")


def test_a_segment_from_another_queue_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make_queue(a, 3)
    make_queue(b, 3)
    seg = sorted((a / "wal").glob("*.wal"))[-1]
    shutil.copy(sorted((b / "wal").glob("*.wal"))[-1], (a / "wal" / "00000000000000000004.wal"))
    with pytest.raises(errors.WalCorruptionError) as e:
        bootstrap(a)
    assert "another WAL" in str(e.value) or "sequence" in str(e.value)
    assert e.value.segment.endswith(".wal")
    assert seg.exists()


def test_future_format_version_segment_is_refused_by_name(tmp_path: Path) -> None:
    import crc32c

    data = tmp_path / "q"
    make_queue(data, 2)
    seg = sorted((data / "wal").glob("*.wal"))[0]
    b = bytearray(seg.read_bytes())
    b[8:12] = (2).to_bytes(4, "little")
    b[36:40] = crc32c.crc32c(bytes(b[:36])).to_bytes(4, "little")
    seg.write_bytes(bytes(b))
    with pytest.raises(errors.WalCorruptionError, match="unsupported format version 2") as e:
        bootstrap(data)
    assert e.value.segment == str(seg)


def test_bad_snapshots_are_skipped_with_their_reason(tmp_path: Path) -> None:
    import crc32c

    data, other = tmp_path / "q", tmp_path / "other"
    make_queue(data, 4)
    make_queue(other, 30)
    snaps = sorted((data / "snapshots").glob("*.aqs"))
    # A snapshot from another (longer) queue, and a future-version one, and junk files.
    (other_snap,) = sorted((other / "snapshots").glob("*.aqs"))[-1:]
    shutil.copy(other_snap, data / "snapshots" / other_snap.name)
    future = bytearray(snaps[-1].read_bytes())
    future[8:12] = (9).to_bytes(4, "little")
    future[36:40] = crc32c.crc32c(bytes(future[:36])).to_bytes(4, "little")
    (data / "snapshots" / "snapshot-00000000000000000003.aqs").write_bytes(bytes(future))
    (data / "snapshots" / "notes.txt").write_text("junk")
    auth, report = bootstrap(data, digest=True)
    auth.close()
    reasons = " | ".join(s.reason for s in report.snapshots_skipped)
    assert "newer than the log" in reasons
    assert report.final_sequence == 4


def test_a_snapshot_planted_in_a_live_queue_costs_nothing(tmp_path: Path) -> None:
    """BUG: a snapshot put into the directory of an open queue with a sequence past its log
    (here another, longer queue's) counted for the checkpoint as the newest snapshot kept:
    with ``keep_snapshots=1`` the next snapshot deleted itself and every sealed WAL segment
    up to that sequence, and the queue could not be opened again (RecoveryError: the log's
    beginning and the only snapshot of this queue were gone). It is set aside as ``.stale``,
    as opening does, and the queue's own snapshot and log stay."""
    data, other = tmp_path / "q", tmp_path / "other"
    make_queue(other, 500)
    (stray,) = sorted((other / "snapshots").glob("*.aqs"))[-1:]
    opts = {"keep_snapshots": 1, "segment_size": 4096, "snapshot_every": 0}
    q = actionqueue.ActionQueue.open(data, storage_options=opts, snapshot_on_close=False)
    q.register("h", lambda ctx, payload: payload["i"])
    tasks = [q.submit("h", {"i": i, "pad": "x" * 200}) for i in range(40)]
    q.run_until_idle()
    shutil.copy(stray, data / "snapshots" / stray.name)
    info = q.snapshot()
    assert info.sequence < 500
    assert Path(info.path).exists()
    assert (data / "snapshots" / f"{stray.name}.stale").exists()
    q.close()
    q = actionqueue.ActionQueue.open(data, storage_options=opts)
    assert q.recovery.snapshot_path == info.path
    assert [q.result(t) for t in tasks] == list(range(40))
    q.close()


def _other_queue_at(other: Path, sequence: int) -> ReplayReducer:
    """Another queue's log, written up to exactly ``sequence`` (pause / resume records), and
    the state replayed from it: ``write_snapshot`` of it is a snapshot bound to no log."""
    auth, _ = bootstrap(other, snapshot_on_close=False)
    i = 0
    while auth.latest_sequence < sequence:
        auth.submit_wire([(10 + i % 2, 1_700_000_000_000 + i)], "deferred")
        i += 1
    auth.close()
    return ReplayReducer.from_wal(other / "wal")


def test_a_snapshot_of_another_log_is_never_loaded(tmp_path: Path) -> None:
    """A snapshot names the log it was taken from (its ``wal_id``, FORMAT.md §9). Another
    queue's snapshot copied in (a backup mix-up) at a sequence this log has, with a log tail
    after it that replays cleanly onto anything (new tasks), was loaded: the queue opened
    with the other queue's state plus its own tail, silently. It is now set aside as
    ``.stale`` and the queue's own snapshot and log give its exact state."""
    data, other = tmp_path / "q", tmp_path / "other"
    q = actionqueue.ActionQueue.open(data, snapshot_on_close=False)
    q.register("h", lambda ctx, payload: payload)
    done = [q.submit("h", i) for i in range(30)]
    q.run_until_idle()
    own = q.snapshot()
    done += [q.submit("h", i) for i in range(30, 40)]
    q.run_until_idle()
    boundary = q.authority.latest_sequence
    waiting = [q.submit("h", i, delay=3600) for i in range(5)]  # creates only: replay anywhere
    digest = q.authority.state_digest()
    q.close()
    auth, _ = bootstrap(other)
    i = 0
    while auth.latest_sequence < boundary:
        auth.submit_wire([(10 + i % 2, 1_700_000_000_000 + i)], "deferred")
        i += 1
    foreign = Path(auth.snapshot().path)
    auth.close()
    shutil.copy(foreign, data / "snapshots" / foreign.name)

    q = actionqueue.ActionQueue.open(data, snapshot_on_close=False)
    q.register("h", lambda ctx, payload: payload)
    try:
        assert q.recovery.snapshot_path == own.path
        assert q.authority.state_digest() == digest
        assert [q.result(t) for t in done] == list(range(40))
        assert all(q.get_task(t) is not None for t in waiting)
        (skipped,) = q.recovery.snapshots_skipped
        assert "snapshot of another log" in skipped.reason
        assert (data / "snapshots" / f"{foreign.name}.stale").exists()
    finally:
        q.close()


def test_a_snapshot_the_log_cannot_replay_onto_falls_back_to_the_log(tmp_path: Path) -> None:
    """A snapshot bound to no log (written before format 4, or by ``write_snapshot`` of a
    reducer) at a sequence inside this log, holding another queue's state: the reducer
    refuses this log's records after it, and opening failed with ``RecoveryError`` although
    the log alone holds the whole state. Recovery now tries the next older source (here the
    log alone), and once that replays cleanly sets the refused snapshot aside as ``.stale``
    and reports why."""
    data, other = tmp_path / "q", tmp_path / "other"
    q = actionqueue.ActionQueue.open(data, snapshot_on_close=False)
    q.register("h", lambda ctx, payload: payload)
    tasks = [q.submit("h", i) for i in range(30)]
    q.run_until_idle()
    digest = q.authority.state_digest()
    last = q.authority.latest_sequence
    q.close()
    foreign = Path(_other_queue_at(other, last // 2).write_snapshot(tmp_path))
    shutil.copy(foreign, data / "snapshots" / foreign.name)

    q = actionqueue.ActionQueue.open(data, snapshot_on_close=False)
    q.register("h", lambda ctx, payload: payload)
    try:
        assert q.recovery.snapshot_path is None  # the log alone
        assert q.authority.state_digest() == digest
        assert [q.result(t) for t in tasks] == list(range(30))
        (skipped,) = q.recovery.snapshots_skipped
        assert "cannot be replayed onto it" in skipped.reason
        assert (data / "snapshots" / f"{foreign.name}.stale").exists()
        assert not (data / "snapshots" / foreign.name).exists()
    finally:
        q.close()


def test_a_log_no_source_can_replay_keeps_its_snapshots_and_names_the_newest(
    tmp_path: Path,
) -> None:
    """When no older source replays either (here the log's beginning is gone, so only the
    refused snapshot could have bridged it), opening fails with the newest snapshot's error
    and renames nothing: the refusal may be the reducer's, and the files must stay for a
    build that can replay them."""
    data, other = tmp_path / "q", tmp_path / "other"
    opts = {"segment_size": 4096, "snapshot_every": 0, "keep_snapshots": 1}
    q = actionqueue.ActionQueue.open(data, storage_options=opts, snapshot_on_close=False)
    q.register("h", lambda ctx, payload: payload)
    for i in range(40):
        q.submit("h", {"i": i, "pad": "x" * 200})
    info = q.snapshot()  # deletes the sealed segments before it
    own = Path(info.path)
    q.run_until_idle()  # the log after the snapshot runs the tasks written before it
    q.close()
    assert not (data / "wal" / SEGMENT).exists()
    # Our own snapshot replaced by an unbound one of another queue at the same sequence.
    foreign = Path(_other_queue_at(other, info.sequence).write_snapshot(tmp_path))
    assert foreign.name == own.name
    shutil.copy(foreign, own)
    with pytest.raises(errors.RecoveryError, match="cannot be replayed"):
        actionqueue.ActionQueue.open(data, storage_options=opts)
    assert own.exists()
    assert not list((data / "snapshots").glob("*.stale"))


def _write_state(tmp: Path, segment: bytes | None, snapshot: bytes | None) -> Path:
    data = tmp / f"d{len(list(tmp.iterdir()))}"
    (data / "wal").mkdir(parents=True, mode=0o700)
    (data / "snapshots").mkdir(mode=0o700)
    data.chmod(0o700)
    if segment is not None:
        (data / "wal" / SEGMENT).write_bytes(segment)
    if snapshot is not None:
        (data / "snapshots" / "snapshot-00000000000000000001.aqs").write_bytes(snapshot)
    return data


CASES = [0]


@pytest.mark.timeout(600)
@settings(
    max_examples=5_000 if SOAK else 60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    segment=st.one_of(
        st.none(),
        st.binary(max_size=400),
        st.binary(max_size=300).map(lambda b: b"AQWALSEG" + b),
    ),
    snapshot=st.one_of(
        st.none(),
        st.binary(max_size=300),
        st.binary(max_size=300).map(lambda b: b"AQSNAPSH" + b),
    ),
)
def test_arbitrary_bytes_in_the_data_directory_give_clean_errors(
    fast_tmp: Path, segment: bytes | None, snapshot: bytes | None
) -> None:
    CASES[0] += 1
    data = _write_state(fast_tmp, segment, snapshot)
    try:
        auth, _ = bootstrap(data)
    except errors.ActionQueueError:
        return
    auth.submit_wire([(10, 1)], "immediate")  # an opened queue works
    auth.close()


def test_zz_report_hypothesis_cases() -> None:
    print(f"hypothesis: {CASES[0]} data directories of arbitrary bytes opened cleanly")
