"""``--max-record-size``: a queue opened with a larger ``max_record_size`` than the default
reader's is inspected, verified and repaired with it; without it the CLI says the log is too
large for it (exit 2, with the size to pass), never that it is damaged, and cuts nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_cli

from actionqueue.core import RunPolicy, TaskConstraints, TaskId, TaskSpec
from actionqueue.core.ids import RunId
from actionqueue.core.mutation import DurabilityPolicy, RunCreateCommand, TaskCreateCommand
from actionqueue.core.task.metadata import TaskMetadata
from actionqueue.storage.recovery import bootstrap

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
