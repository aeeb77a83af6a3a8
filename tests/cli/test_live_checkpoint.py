"""Read commands while a live queue's checkpoint deletes WAL segments and snapshots.

A checkpoint (after a snapshot) deletes the segments wholly before the oldest kept snapshot and
the snapshots past ``keep_snapshots``. A lock-free reader that listed those files before finds
them gone (``StorageIOError`` with errno ENOENT from the Rust reader); the read commands then
read again. The race is made deterministic here: the checkpoint runs at the exact point between
a reader listing the files and reading them.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import run_cli

from actionqueue.cli import store
from actionqueue.cli import wal as wal_cmd
from actionqueue.core import RunPolicy, TaskConstraints, TaskId, TaskSpec
from actionqueue.engine import Engine
from actionqueue.engine.time.clock import ManualClock
from actionqueue.errors import StorageIOError
from actionqueue.storage import snapshot as snapshots
from actionqueue.storage.recovery import bootstrap
from actionqueue.storage.wal.fs_reader import WalFsReader

#: Small segments so that a checkpoint has whole segments to delete.
OPTS: dict[str, object] = {"segment_size": 4096, "preallocate": 0, "keep_snapshots": 1}


def submit(path: Path, n: int, *, snapshot: bool) -> list[TaskId]:
    """Opens the queue, submits ``n`` tasks, optionally snapshots (and so checkpoints), closes."""
    auth, _ = bootstrap(path, snapshot_every=0, snapshot_on_close=False, **OPTS)  # type: ignore[arg-type]
    eng = Engine(auth, ManualClock(1_000_000))
    ids = [
        eng.submit(
            TaskSpec(TaskId.new(), b"x" * 64, RunPolicy.once(), TaskConstraints(), handler="h")
        )
        for _ in range(n)
    ]
    if snapshot:
        auth.snapshot()
    auth.close()
    return ids


def segments(path: Path) -> list[str]:
    return sorted(p.name for p in (path / "wal").glob("*.wal"))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    submit(path, 60, snapshot=False)
    assert len(segments(path)) >= 3
    return path


def checkpoint_once(path: Path) -> Callable[[], None]:
    """A callable that, the first time only, does what a live writer's checkpoint does."""
    done: list[bool] = []

    def run() -> None:
        if not done:
            done.append(True)
            before = segments(path)
            submit(path, 40, snapshot=True)  # fills whole segments, then deletes them
            assert segments(path)[0] != before[0], "the checkpoint deleted no segment"

    return run


def aq(path: Path, *args: str) -> list[dict[str, object]] | dict[str, object]:
    r = run_cli("--data-dir", str(path), *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.output)  # type: ignore[no-any-return]


def test_the_reader_reports_a_deleted_segment_as_enoent(data: Path) -> None:
    """The deterministic core of the race: a reader opened, a segment deleted, then read."""
    reader = WalFsReader(data / "wal")
    os.unlink(data / "wal" / segments(data)[1])
    with pytest.raises(StorageIOError) as info:
        list(reader)
    assert info.value.errno == errno.ENOENT
    assert store.vanished(info.value)
    assert store.vanished(FileNotFoundError(errno.ENOENT, "gone"))
    assert not store.vanished(StorageIOError(errno.EIO, "bad disk"))
    assert not store.vanished(ValueError("x"))


def test_tasks_scan_again_when_a_checkpoint_deletes_the_segment_being_read(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = checkpoint_once(data)

    class RacingReader(WalFsReader):
        __slots__ = ()

        def __init__(self, path: str, *, start: int = 0, **options: int) -> None:
            super().__init__(path, start=start, **options)
            if start == 0:  # the task scan (the view is built by then)
                checkpoint()  # between listing the segments and reading them

    monkeypatch.setattr(store, "WalFsReader", RacingReader)
    rows = aq(data, "tasks", "--limit", "1000", "--json")
    assert isinstance(rows, list)
    # The view was built before the checkpoint's 40 new tasks; none of the 60 is lost.
    assert len(rows) == 60


def test_the_view_is_built_again_when_a_checkpoint_deletes_its_snapshot(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    submit(data, 5, snapshot=True)  # a snapshot for the view to list
    checkpoint = checkpoint_once(data)
    real_load = snapshots.load
    loaded: list[str] = []

    def racing_load(path: str, **kwargs: int) -> object:
        loaded.append(os.path.basename(path))
        checkpoint()  # a newer snapshot is written and this one deleted (keep_snapshots=1)
        return real_load(path, **kwargs)

    monkeypatch.setattr(snapshots, "load", racing_load)
    view = store.read_view(str(data))
    # Read again from the new snapshot, with the checkpoint's tasks; the deleted snapshot is
    # not reported as damaged.
    assert view.state.task_count == 105
    assert view.snapshots_skipped == []
    assert len(loaded) == 2
    assert loaded[0] != loaded[1]


def test_read_commands_give_up_with_a_clear_error_when_files_keep_vanishing(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def always_moved(data_dir: str, max_record_size: int) -> store.ReadView:
        calls.append(1)
        raise StorageIOError(errno.ENOENT, "open failed on x.wal: No such file or directory")

    monkeypatch.setattr(store, "_build_view", always_moved)
    r = run_cli("--data-dir", str(data), "runs")
    assert r.exit_code == 1
    assert "checkpoints deleted the files being read" in r.output
    assert len(calls) == store.READ_ATTEMPTS


def test_wal_dump_goes_on_after_a_checkpoint_deletes_the_segment_being_read(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = segments(data)[0]
    checkpoint = checkpoint_once(data)
    made: list[int] = []

    class RacingReader(WalFsReader):
        __slots__ = ()

        def read_batch(
            self, max_events: int = 4096
        ) -> list[tuple[int, str, int, tuple[object, ...]]]:
            made.append(1)
            if len(made) == 2:
                checkpoint()  # after the first batch was printed
            return super().read_batch(min(max_events, 10))

    monkeypatch.setattr(wal_cmd, "WalFsReader", RacingReader)
    r = run_cli("--data-dir", str(data), "wal", "dump")
    assert r.exit_code == 0, r.output
    seqs = [json.loads(line)["sequence"] for line in r.output.splitlines()]
    assert seqs[:10] == list(range(1, 11))
    assert seqs == sorted(set(seqs))  # nothing printed twice, in order
    assert first not in segments(data)
    assert seqs[-1] > seqs[10]  # it went on, to the end of the log that is left


def test_wal_verify_checks_again_when_a_checkpoint_deletes_a_segment(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = checkpoint_once(data)
    real_verify = wal_cmd.wal_verify
    calls: list[str] = []

    def racing_verify(path: str, **options: int) -> object:
        calls.append(path)
        if len(calls) == 1:
            checkpoint()
            # What the Rust verifier reports when a segment it listed is gone.
            raise StorageIOError(errno.ENOENT, "open failed on x.wal: No such file or directory")
        return real_verify(path, **options)

    monkeypatch.setattr(wal_cmd, "wal_verify", racing_verify)
    report = aq(data, "wal", "verify", "--json")
    assert isinstance(report, dict)
    assert report["ok"] is True
    assert report["first_sequence"] > 1  # the log that is left after the checkpoint
