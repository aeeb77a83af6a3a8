"""kill -9 of a process running a queue mid-work, then reopen: nothing acknowledged is lost,
nothing completed runs again, in-flight runs are re-run after their lease expires, nothing is
stuck."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rt_helpers import needs_real_storage

import actionqueue as aq
from actionqueue import RunState
from actionqueue.core.run.attempt import AttemptOutcome

CHILD = Path(__file__).with_name("crash_child.py")


def _lines(path: Path) -> list[str]:
    try:
        data = path.read_text()
    except FileNotFoundError:
        return []
    # A line being written at the kill may be torn: keep complete lines only.
    return data.split("\n")[:-1]


@needs_real_storage
@pytest.mark.timeout(120)
def test_kill_9_mid_work_then_reopen(tmp_path: Path) -> None:
    data, acks, starts = tmp_path / "data", tmp_path / "acks", tmp_path / "starts"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(data), str(acks), str(starts), "400"],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        # Orchestration only: wait until the child is mid-work (submits acknowledged, handlers
        # run, some of them stuck in flight), then kill it without warning.
        while time.monotonic() < deadline:
            if child.poll() is not None:
                pytest.fail(f"child exited early: {child.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            if len(_lines(acks)) >= 300 and len(_lines(starts)) >= 150:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the child made no progress")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
        if child.stderr is not None:
            child.stderr.close()

    acked = {aq.TaskId(line) for line in _lines(acks)}
    child_starts = collections.Counter(line.split()[0] for line in _lines(starts))

    # What the log says right after the crash (before any sweep).
    from actionqueue.storage.mutation import StorageMutationAuthority

    with StorageMutationAuthority.open(data) as auth:
        before = {}
        for st in RunState:
            for row in auth.runs_in_state(int(st), 10_000, None):
                r = aq.core.RunInstance.from_wire(row)
                before[r.run_id] = r.state
    completed_before = {rid for rid, st in before.items() if st is RunState.COMPLETED}
    inflight_before = {
        rid for rid, st in before.items() if st in (RunState.LEASED, RunState.RUNNING)
    }
    assert completed_before
    assert inflight_before

    reran: collections.Counter[str] = collections.Counter()
    with aq.ActionQueue.open(data, lease=0.5) as q:

        @q.handler("job", max_attempts=3)
        def job(ctx: Any, n: int) -> int:
            reran[str(ctx.run_id)] += 1
            return n

        # Every acknowledged (Immediate) submit is there.
        for tid in acked:
            assert q.get_task(tid) is not None, f"acknowledged task {tid} lost"
        # Through future work: the leases of the dead process expire in real time.
        q.run_until_idle(advance_clock=True, timeout=60)

        counts = q.stats()["runs"]
        stuck = {
            k: v for k, v in counts.items() if k not in ("Completed", "Failed", "Canceled") and v
        }
        assert not stuck, counts
        for rid in completed_before:
            assert str(rid) not in reran, f"completed run {rid} ran again"
        for rid in inflight_before:
            run = q.get_run(rid)
            assert run is not None
            assert run.state is RunState.COMPLETED
            assert any(a.outcome is AttemptOutcome.LOST for a in run.attempts), run.attempts
            assert str(rid) in reran
        for rid, n in (child_starts + reran).items():
            assert n <= 3, f"run {rid} dispatched {n} times (max_attempts=3)"
        assert counts["Completed"] >= len(acked)
