"""A snapshot newer than the log (the log was cut by ``wal repair``): the read view skips it
without touching it, and ``wal repair`` sets it aside as opening a queue does."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import flip_byte, run_cli

from actionqueue.core import RunPolicy, TaskConstraints, TaskId, TaskSpec
from actionqueue.engine import Engine
from actionqueue.engine.time.clock import ManualClock
from actionqueue.storage.recovery import bootstrap
from actionqueue.storage.wal.repair import repair


def aq(path: Path, *args: str) -> str:
    r = run_cli("--data-dir", str(path), *args)
    assert r.exit_code == 0, r.output
    return r.output


def stats(path: Path) -> dict[str, object]:
    return json.loads(aq(path, "stats", "--json"))  # type: ignore[no-any-return]


def snapshotted_then_corrupted(tmp_path: Path) -> tuple[Path, str]:
    """40 tasks, a snapshot at the end of the log, then a flipped byte in record 20 (intact
    records follow: corruption, not a crash tail). Returns the path and the snapshot's name."""
    path = tmp_path / "data"
    auth, _ = bootstrap(path, snapshot_every=0, snapshot_on_close=False)
    eng = Engine(auth, ManualClock(1_000_000))
    for _ in range(40):
        eng.submit(TaskSpec(TaskId.new(), b"x", RunPolicy.once(), TaskConstraints(), handler="h"))
    info = auth.snapshot()
    auth.close()
    assert info is not None
    dump = [json.loads(line) for line in aq(path, "wal", "dump").splitlines()]
    offsets = sorted({e["offset"] for e in dump})
    (seg,) = (path / "wal").glob("*.wal")
    flip_byte(seg, offsets[20] + 30)
    return path, Path(info.path).name


def test_wal_repair_sets_aside_the_snapshots_newer_than_the_cut_log(tmp_path: Path) -> None:
    path, snap = snapshotted_then_corrupted(tmp_path)
    out = aq(path, "wal", "repair", "--yes")
    assert "repaired" in out
    assert f"snapshot {snap}" in out
    assert f"renamed to {snap}.stale" in out
    assert sorted(p.name for p in (path / "snapshots").iterdir()) == [f"{snap}.stale"]
    after = stats(path)
    assert after["tasks"] == 20  # what the cut log holds, not the snapshot's 40
    assert after["snapshot_sequence"] is None
    assert after["snapshots_skipped"] == []
    # A writer open agrees (and has nothing left to set aside).
    auth, report = bootstrap(path, snapshot_on_close=False)
    auth.close()
    assert report.final_sequence == after["latest_sequence"]
    assert not report.snapshots_skipped
    assert stats(path) == after


def test_a_second_set_aside_of_the_same_name_never_overwrites(tmp_path: Path) -> None:
    path, snap = snapshotted_then_corrupted(tmp_path)
    (path / "snapshots" / f"{snap}.stale").write_bytes(b"an earlier one")
    assert f"renamed to {snap}.stale.1" in aq(path, "wal", "repair", "--yes")
    assert (path / "snapshots" / f"{snap}.stale").read_bytes() == b"an earlier one"


def test_the_read_view_skips_a_snapshot_newer_than_the_log_and_leaves_it(tmp_path: Path) -> None:
    """The log cut by the library's repair (which knows nothing of snapshots): the CLI view
    must not show the cut history, and must not rename anything (it never writes)."""
    path, snap = snapshotted_then_corrupted(tmp_path)
    repair(path / "wal", truncate_at_first_corruption=True)
    before = sorted(p.name for p in (path / "snapshots").iterdir())
    view = stats(path)
    assert view["tasks"] == 20
    assert view["snapshot_sequence"] is None
    (skipped,) = view["snapshots_skipped"]  # type: ignore[misc]
    assert skipped["path"].endswith(snap)
    assert "newer than the log (last sequence" in skipped["reason"]
    assert "not used" in aq(path, "stats")
    assert sorted(p.name for p in (path / "snapshots").iterdir()) == before
    tasks = json.loads(aq(path, "tasks", "--json"))
    assert len(tasks) == 20
    # Opening the queue sets it aside; the view then reads the same state, without the note.
    auth, report = bootstrap(path, snapshot_on_close=False)
    auth.close()
    assert len(report.snapshots_skipped) == 1
    again = stats(path)
    assert again["snapshots_skipped"] == []
    assert {k: v for k, v in again.items() if k != "snapshots_skipped"} == {
        k: v for k, v in view.items() if k != "snapshots_skipped"
    }


def test_a_snapshot_at_the_end_of_the_log_is_used(tmp_path: Path) -> None:
    """The common case the staleness check must not mistake: nothing after the snapshot."""
    path = tmp_path / "data"
    auth, _ = bootstrap(path, snapshot_every=0, snapshot_on_close=False)
    eng = Engine(auth, ManualClock(1_000_000))
    eng.submit(TaskSpec(TaskId.new(), b"x", RunPolicy.once(), TaskConstraints(), handler="h"))
    info = auth.snapshot()
    auth.close()
    assert info is not None
    view = stats(path)
    assert view["snapshot_sequence"] == info.sequence == view["latest_sequence"]
    assert view["snapshots_skipped"] == []
