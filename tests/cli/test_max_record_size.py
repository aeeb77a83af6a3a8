"""``--max-record-size``: a queue opened with a larger ``max_record_size`` than the default
reader's is inspected, verified and repaired with it; without it the CLI says the log is too
large for it (exit 2, with the size to pass), never that it is damaged, and cuts nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import flip_byte, run_cli

from actionqueue.cli import store
from actionqueue.cli import wal as wal_cmd
from actionqueue.core import RunPolicy, TaskConstraints, TaskId, TaskSpec
from actionqueue.core.ids import RunId
from actionqueue.core.mutation import DurabilityPolicy, RunCreateCommand, TaskCreateCommand
from actionqueue.core.task.metadata import TaskMetadata
from actionqueue.storage.recovery import bootstrap
from actionqueue.storage.recovery.reducer import ReplayReducer
from actionqueue.storage.wal.fs_reader import WalFsReader
from actionqueue.storage.wal.fs_writer import DEFAULT_MAX_RECORD_SIZE, WalFsWriter
from actionqueue.storage.wal.repair import repair

WRITER_MAX = 4096
READER_MAX = 1024
T0 = 1_700_000_000_000


@pytest.fixture
def big_log(tmp_path: Path) -> Path:
    """Three tasks, the middle one with a 3000-byte payload, written with a 4096-byte limit."""
    d = tmp_path / "data"
    a, _ = bootstrap(
        d, max_record_size=WRITER_MAX, preallocate=0, snapshot_every=0, snapshot_on_close=False
    )
    for payload in (b"a", b"x" * 3000, b"c"):
        s = TaskSpec(TaskId.new(), payload, RunPolicy.once(), TaskConstraints(), TaskMetadata())
        cmds = [
            TaskCreateCommand(None, s, T0),
            RunCreateCommand(None, RunId.new(), s.task_id, 0, T0, T0),
        ]
        a.submit_batch(cmds, DurabilityPolicy.IMMEDIATE)
    a.close()
    return d


def wal_bytes(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((d / "wal").glob("*.wal"))}


@pytest.mark.parametrize(
    "cmd",
    [("stats",), ("tasks",), ("wal", "verify"), ("wal", "dump"), ("wal", "repair", "--yes")],
    ids=" ".join,
)
def test_a_limit_below_a_record_is_a_usage_error_not_corruption(
    big_log: Path, cmd: tuple[str, ...]
) -> None:
    before = wal_bytes(big_log)
    r = run_cli("--data-dir", str(big_log), "--max-record-size", str(READER_MAX), *cmd)
    assert r.exit_code == 2, r.output
    assert "above max_record_size 1024" in r.output
    assert "(the log is not damaged)" in r.output
    assert "hint: pass --max-record-size 30" in r.output  # the record's size: 30xx bytes
    assert "CORRUPT" not in r.output
    assert "damaged:" not in r.output
    assert wal_bytes(big_log) == before


def test_verify_json_reports_the_record_too_large(big_log: Path) -> None:
    r = run_cli(
        "--data-dir", str(big_log), "--max-record-size", str(READER_MAX), "wal", "verify", "--json"
    )
    assert r.exit_code == 2, r.output
    data = json.loads(r.output)
    assert data["ok"] is False
    assert data["too_large"] is True
    assert (data["sequence"], data["max_record_size"]) == (3, READER_MAX)
    assert READER_MAX < data["size"] <= WRITER_MAX
    assert data["segment"].endswith(".wal")


def test_with_a_large_enough_limit_every_command_works(big_log: Path) -> None:
    big = ("--data-dir", str(big_log), "--max-record-size", str(WRITER_MAX))
    v = run_cli(*big, "wal", "verify", "--json")
    assert v.exit_code == 0, v.output
    assert json.loads(v.output)["events"] == 6
    assert run_cli(*big, "stats").exit_code == 0
    assert len(run_cli(*big, "wal", "dump").output.splitlines()) == 6
    r = run_cli(*big, "wal", "repair", "--dry-run")
    assert r.exit_code == 0
    assert "sound" in r.output
    assert run_cli(*big, "pause").exit_code == 0


def test_the_option_is_validated(big_log: Path) -> None:
    for bad in ("0", str(2**32), "lots"):
        r = run_cli("--data-dir", str(big_log), "--max-record-size", bad, "stats")
        assert r.exit_code == 2
        assert "--max-record-size" in r.output


def snapshotted_then_damaged(d: Path) -> None:
    """Six tasks (the second with a 3000-byte payload) written with a 4096-byte limit, a
    snapshot at the end of the log, then a flipped byte in the fifth task's record (intact
    records follow: corruption). A cut there keeps the big record and leaves the snapshot
    newer than the log."""
    a, _ = bootstrap(
        d, max_record_size=WRITER_MAX, preallocate=0, snapshot_every=0, snapshot_on_close=False
    )
    for payload in (b"a", b"x" * 3000, b"c", b"d", b"e", b"f"):
        s = TaskSpec(TaskId.new(), payload, RunPolicy.once(), TaskConstraints(), TaskMetadata())
        cmds = [
            TaskCreateCommand(None, s, T0),
            RunCreateCommand(None, RunId.new(), s.task_id, 0, T0, T0),
        ]
        a.submit_batch(cmds, DurabilityPolicy.IMMEDIATE)
    assert a.snapshot() is not None
    a.close()
    offsets = sorted({e.offset for e in WalFsReader(d / "wal", max_record_size=WRITER_MAX)})
    (seg,) = (d / "wal").glob("*.wal")
    flip_byte(seg, offsets[4] + 50)


def test_every_log_access_gets_the_limit_including_stale_snapshot_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The option reaches every reader, verify, repair and writer the CLI creates: the view's
    stale-snapshot checks (``_log_reaches``, ``log_last_sequence``), the task scan, ``wal
    verify``'s progress pass and its retries, ``wal dump``, ``wal repair`` and the writer that
    sets snapshots aside after a cut, and the locked writer's recovery."""
    seen: list[tuple[str, object]] = []

    class SpyReader(WalFsReader):
        __slots__ = ()

        def __init__(self, path: str, **options: int) -> None:
            seen.append(("reader", options.get("max_record_size", DEFAULT_MAX_RECORD_SIZE)))
            super().__init__(path, **options)

    def spy(name: str, real: Any) -> Any:
        def call(*args: object, **kwargs: object) -> object:
            seen.append((name, kwargs.get("max_record_size", DEFAULT_MAX_RECORD_SIZE)))
            return real(*args, **kwargs)

        return call

    real_replay = ReplayReducer.replay_wal

    def replay(self: ReplayReducer, path: str, **kwargs: int) -> tuple[int, int]:
        seen.append(("replay_wal", kwargs.get("max_record_size", DEFAULT_MAX_RECORD_SIZE)))
        return real_replay(self, path, **kwargs)

    monkeypatch.setattr(store, "WalFsReader", SpyReader)
    monkeypatch.setattr(wal_cmd, "WalFsReader", SpyReader)
    monkeypatch.setattr(store, "WalFsWriter", spy("writer", WalFsWriter))
    monkeypatch.setattr(store, "bootstrap", spy("bootstrap", store.bootstrap))
    monkeypatch.setattr(wal_cmd, "wal_verify", spy("verify", wal_cmd.wal_verify))
    monkeypatch.setattr(wal_cmd, "wal_repair", spy("repair", wal_cmd.wal_repair))
    monkeypatch.setattr(ReplayReducer, "replay_wal", replay)
    limit = 1_000_003  # not the default, above every record here

    # The log cut by the library's repair: the view passes over the snapshot newer than it.
    cut = tmp_path / "cut"
    snapshotted_then_damaged(cut)
    repair(cut / "wal", truncate_at_first_corruption=True, max_record_size=WRITER_MAX)
    big = ("--data-dir", str(cut), "--max-record-size", str(limit))
    r = run_cli(*big, "stats", "--json")
    assert r.exit_code == 0, r.output
    (skipped,) = json.loads(r.output)["snapshots_skipped"]
    assert "newer than the log (last sequence 8)" in skipped["reason"]
    for cmd in (("tasks",), ("wal", "verify", "--progress"), ("wal", "dump"), ("pause",)):
        r = run_cli(*big, *cmd)
        assert r.exit_code == 0, r.output

    # wal repair cuts, then the writer it opens sets the snapshot aside.
    damaged = tmp_path / "damaged"
    snapshotted_then_damaged(damaged)
    r = run_cli("--data-dir", str(damaged), "--max-record-size", str(limit), "wal", "repair", "-y")
    assert r.exit_code == 0, r.output
    assert "renamed to" in r.output
    assert [p.suffix for p in (damaged / "snapshots").iterdir()] == [".stale"]

    kinds = {k for k, _ in seen}
    assert kinds == {"reader", "replay_wal", "verify", "repair", "writer", "bootstrap"}
    assert [(k, m) for k, m in seen if m != limit] == []
