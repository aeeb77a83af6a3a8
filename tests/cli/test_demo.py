"""The README's main job: `actionqueue demo` in a fresh directory, with no terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import Populated, run_cli


def _demo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CI="true")
    env.pop("ACTIONQUEUE_DATA_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "actionqueue", "demo", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.timeout(180)
def test_demo_runs_and_recovers(tmp_path: Path) -> None:
    pytest.importorskip("actionqueue.runtime")
    r = _demo(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "1. a realistic mix" in out
    assert "concurrency key 'db': 3 migrations ran one at a time" in out
    assert "2 failures, then success" in out
    assert "-> SIGKILL" in out
    assert "nothing acknowledged was lost: 7/7 tasks present" in out
    assert "Lost, Success" in out
    assert "done in" in out
    assert "Traceback" not in r.stderr
    data = tmp_path / "actionqueue-data"
    assert sorted(os.listdir(data)) == ["snapshots", "wal"]
    # The inspection commands work on what it left behind.
    stats = run_cli("--data-dir", str(data), "stats", "--json")
    assert stats.exit_code == 0
    assert '"Failed": 1' in stats.output
    # Running it again wipes the previous demo queue (recognised by its tag).
    again = _demo(tmp_path, "--no-crash")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "wiping the previous demo queue" in again.stdout


def test_demo_refuses_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "important.txt").write_text("keep me")
    r = run_cli("demo", "--data-dir", str(tmp_path))
    assert r.exit_code == 3  # the documented code for "not an actionqueue data directory"
    assert "not an actionqueue data directory" in r.output
    assert (tmp_path / "important.txt").exists()


def test_demo_refuses_a_real_queue_without_fresh(populated: Populated) -> None:
    r = run_cli("--data-dir", str(populated.path), "demo")
    assert r.exit_code == 2
    assert "did not create" in r.output
    assert "--fresh" in r.output
    assert (populated.path / "wal").is_dir()


def test_demo_never_wipes_a_directory_a_queue_has_open(tmp_path: Path) -> None:
    """BUG: the demo wiped a previous demo's directory (and, with --fresh, any queue's) while
    another process had it open: that process's acknowledged submits were lost. Now the check
    and the wipe hold the directory's lock: refused as locked (exit 4), nothing touched."""
    import actionqueue as aq

    data = tmp_path / "q"
    with aq.ActionQueue.open(data) as q:  # a previous demo's queue, still open
        q.register("h", lambda ctx, p: p)
        acked = q.submit("h", 1, tags=("actionqueue-demo",))
        before = sorted(p.relative_to(data) for p in data.rglob("*"))
        for args in ((), ("--fresh",)):
            r = run_cli("demo", "--data-dir", str(data), "--no-crash", *args)
            assert r.exit_code == 4, r.output
            # The demo's own --data-dir, not the global default, and who holds it.
            assert f"data directory {data} is in use by another process (pid " in r.output
            assert "wiping" not in r.output
            assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
        assert q.get_task(acked) is not None
    # Closed: now it is the demo's to wipe.
    r = run_cli("demo", "--data-dir", str(data), "--no-crash")
    assert r.exit_code == 0, r.output
    assert "wiping the previous demo queue" in r.output


def test_demo_does_not_take_a_queue_without_tasks_for_its_own(tmp_path: Path) -> None:
    """BUG: a queue with no tasks passed the "every task carries the demo tag" check (vacuously)
    and was wiped without --fresh."""
    import actionqueue as aq

    data = tmp_path / "q"
    with aq.ActionQueue.open(data) as q:
        q.pause()  # the user's state: durable, and no task
    r = run_cli("demo", "--data-dir", str(data), "--no-crash")
    assert r.exit_code == 2
    assert "did not create" in r.output
    with aq.ActionQueue.open(data) as q:
        assert q.paused
