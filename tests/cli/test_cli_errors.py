"""Error paths: one line + hint, a documented exit code, no traceback unless --debug."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_helpers import Populated, run_cli
from click.testing import CliRunner

from actionqueue.cli.app import cli
from actionqueue.errors import StorageError
from actionqueue.storage.recovery import bootstrap

INSPECT = (("stats",), ("tasks",), ("runs",), ("wal", "verify"), ("wal", "dump"))
WRITE = (("pause",), ("resume",), ("snapshot",), ("compact",), ("wal", "repair", "--yes"))


@pytest.mark.parametrize("cmd", INSPECT + WRITE, ids=" ".join)
def test_missing_directory(tmp_path: Path, cmd: tuple[str, ...]) -> None:
    missing = tmp_path / "nope"
    r = run_cli("--data-dir", str(missing), *cmd)
    assert r.exit_code == 3, r.output
    assert r.output.startswith(f"error: no data directory at {missing}")
    assert "hint:" in r.output
    assert "Traceback" not in r.output
    assert not missing.exists()  # never created by the CLI


def test_not_a_data_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    r = run_cli("--data-dir", str(tmp_path), "pause")
    assert r.exit_code == 3
    assert "not an actionqueue data directory" in r.output
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_locked_directory_in_process(populated: Populated) -> None:
    auth, _ = bootstrap(populated.path)  # a live queue holds the lock
    try:
        for cmd in (*WRITE, ("cancel", str(populated.holder_run)), ("retry", "abcd")):
            r = run_cli("--data-dir", str(populated.path), *cmd)
            assert r.exit_code == 4, (cmd, r.output)
            assert "is in use by another process" in r.output
            assert "LOCK" in r.output
            assert "hint:" in r.output
            assert "Traceback" not in r.output
        # Inspection works while it runs, and sees what the live authority wrote.
        auth.submit_wire([(10, 1_800_000_000_000)], "immediate")  # EnginePause
        more = (("show", str(populated.holder_run)), ("why", str(populated.blocked_run)))
        for cmd in (*INSPECT, *more):
            r = run_cli("--data-dir", str(populated.path), *cmd)
            assert r.exit_code == 0, (cmd, r.output)
        assert (
            '"paused": true' in run_cli("--data-dir", str(populated.path), "stats", "--json").output
        )
    finally:
        auth.close()
    assert run_cli("--data-dir", str(populated.path), "resume").exit_code == 0


def test_locked_by_a_child_process(populated: Populated) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from actionqueue.storage.recovery import bootstrap
        auth, _ = bootstrap({str(populated.path)!r})
        print("ready", flush=True)
        sys.stdin.read()
        auth.close()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        r = run_cli("--data-dir", str(populated.path), "pause")
        assert r.exit_code == 4
        assert f"in use by another process (pid {child.pid})" in r.output
        assert run_cli("--data-dir", str(populated.path), "stats").exit_code == 0
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    assert run_cli("--data-dir", str(populated.path), "pause").exit_code == 0


@pytest.mark.parametrize("cmd", ["show", "why", "cancel", "retry"])
def test_unknown_id(populated: Populated, cmd: str) -> None:
    unknown = "0" * 8 + "-0000-4000-8000-" + "0" * 11 + "1"
    r = run_cli("--data-dir", str(populated.path), cmd, unknown)
    assert r.exit_code == 6
    assert f"no task or run with id {unknown}" in r.output
    prefix = run_cli("--data-dir", str(populated.path), cmd, "ffffffffff")
    assert prefix.exit_code == 6 or "ambiguous" in prefix.output
    bad = run_cli("--data-dir", str(populated.path), cmd, "not-an-id")
    assert bad.exit_code == 2
    assert "is not an id" in bad.output


def test_debug_shows_the_traceback_and_keeps_the_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actionqueue.cli import inspect

    def boom(data_dir: str, **options: object) -> None:
        raise StorageError("disk on fire")

    monkeypatch.setattr(inspect, "read_view", boom)
    quiet = run_cli("--data-dir", str(tmp_path), "stats")
    assert quiet.exit_code == 1
    assert quiet.output == "error: storage error: disk on fire\n"
    loud = CliRunner().invoke(cli, ["--debug", "--data-dir", str(tmp_path), "stats"])
    assert loud.exit_code == 1
    assert "Traceback (most recent call last)" in loud.output
    assert "StorageError: disk on fire" in loud.output
    assert loud.output.endswith("error: storage error: disk on fire\n")


def test_debug_keeps_documented_exit_codes(tmp_path: Path) -> None:
    """BUG: with --debug every error exited 1 (the traceback escaped click)."""
    missing = str(tmp_path / "missing")
    plain = run_cli("--data-dir", missing, "stats")
    debug = CliRunner().invoke(cli, ["--debug", "--data-dir", missing, "stats"])
    assert (plain.exit_code, debug.exit_code) == (3, 3)


def test_python_dash_m_entry_point(populated: Populated) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "actionqueue", "--data-dir", str(populated.path), "stats", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0
    assert '"tasks": 7' in r.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "actionqueue", "--data-dir", str(populated.path / "x"), "stats"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 3
    assert missing.stderr.startswith("error: no data directory")
    assert "Traceback" not in missing.stderr
