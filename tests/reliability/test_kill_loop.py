"""Kill loop: a child process runs a realistic workload through the Engine and the mutation
authority (Immediate durability, retries, concurrency keys, automatic snapshots) and is
SIGKILLed at a random moment; the parent reopens the data directory and audits it against the
child's acknowledgement log (written only after each call returned):

* every acknowledged submit, dispatch and finish is in the recovered state;
* a run acknowledged Completed is never dispatched again (its attempts never change later);
* no run has more counted attempts than its task's ``max_attempts``;
* once the clock is past every lease, the engine's sweep leaves no run Leased or Running
  (the uncertainty clause: in-flight runs become eligible again by themselves);
* the state digest of snapshot + WAL tail equals that of a full replay of the WAL.

``AQ_SOAK=1`` runs 10,000 trials (``AQ_KILL_TRIALS=N`` to choose); the default is 100.
The counts (trials, kills, acknowledged operations, snapshot-based recoveries) are printed.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from pathlib import Path

import kill_child
import pytest

from actionqueue.core import RunState, TaskId
from actionqueue.engine import Engine, ManualClock
from actionqueue.storage.mutation import StorageMutationAuthority
from actionqueue.storage.recovery import bootstrap

T0 = 1_700_000_000_000
TRIAL_SPAN = 1_000_000  # ms of manual time per trial: far past every 10 s lease


def trials() -> int:
    if os.environ.get("AQ_KILL_TRIALS"):
        return int(os.environ["AQ_KILL_TRIALS"])
    return 10_000 if os.environ.get("AQ_SOAK", "0") not in ("", "0") else 100


def parse_acks(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")[:-1]  # a line cut by the kill has no newline: not acknowledged
    return [line.split() for line in lines]


def digest_of(data: Path, scratch: Path, *, snapshots: bool) -> tuple[str, bool]:
    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(data, scratch, ignore=shutil.ignore_patterns("LOCK"))
    if not snapshots:
        shutil.rmtree(scratch / "snapshots")
    auth, report = bootstrap(scratch, digest=True, snapshot_on_close=False, snapshot_every=0)
    auth.close()
    assert report.digest is not None
    return str(report.digest), report.snapshot_path is not None


@pytest.mark.timeout(3_600)
def test_sigkill_at_random_points_loses_nothing_acknowledged(fast_tmp: Path) -> None:
    # SIGKILL ends the process, not the machine: the page cache survives it, so tmpfs (where
    # fsync is free) tests exactly the same thing, many times faster. Power loss is covered by
    # the Rust fault-injection suites (rust/wal/crash_tests.rs, rust/authority_fault_tests.rs).
    tmp_path = fast_tmp
    seed = int(os.environ.get("AQ_SEED", random.randrange(1 << 30)))
    print(f"kill loop seed {seed} (AQ_SEED={seed} replays the kill timings)")
    rng = random.Random(seed)
    data = tmp_path / "data"
    acks = tmp_path / "acks.log"
    submitted: dict[str, int] = {}  # task hex -> max_attempts
    finished: dict[str, tuple[str, int]] = {}  # attempt hex -> (run hex, state)
    dispatched: dict[str, str] = {}  # attempt hex -> run hex
    completed_attempts: dict[str, int] = {}  # run hex -> attempts when first seen Completed
    kills = ops = from_snapshot = 0
    n = trials()
    for trial in range(n):
        start = T0 + trial * TRIAL_SPAN
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: run the workload until killed
            code = 1
            try:
                os.close(r)
                kill_child.run(str(data), str(acks), seed + trial, start, w)
            finally:
                os._exit(code)
        os.close(w)
        with os.fdopen(r) as ready:
            line = ready.readline()
            if line.strip() != "ready":
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"trial {trial} (seed {seed}): child did not start: {line!r}")
            time.sleep(rng.uniform(0.0, 0.05))
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            kills += 1
        else:
            pytest.fail(f"trial {trial} (seed {seed}): child exited with status {status}")

        # Snapshot + tail must equal a full replay (before anything else touches the dir).
        with_snap, used = digest_of(data, tmp_path / "a", snapshots=True)
        full, _ = digest_of(data, tmp_path / "b", snapshots=False)
        assert with_snap == full, f"trial {trial} (seed {seed}): snapshot+tail != full replay"
        from_snapshot += used

        for rec in parse_acks(acks)[ops:]:
            if rec[0] == "S":
                submitted[rec[1]] = int(rec[2])
            elif rec[0] == "D":
                dispatched[rec[2]] = rec[1]
            elif rec[0] == "F":
                finished[rec[2]] = (rec[1], int(rec[3]))
        ops = len(parse_acks(acks))

        auth = StorageMutationAuthority.open(data)
        try:
            engine = Engine(
                auth,
                ManualClock(start + TRIAL_SPAN // 2),
                owner="auditor",
                rng=random.Random(1),
                default_lease_ms=10_000,
            )
            where = f"trial {trial} (seed {seed})"
            for task_hex, max_attempts in submitted.items():
                tid = TaskId(bytes.fromhex(task_hex))
                assert engine.get_task(tid) is not None, f"{where}: lost task {task_hex}"
                for run in engine.runs_for_task(tid):
                    assert run.attempt_count <= max_attempts, f"{where}: {run}"
                    key = run.run_id.bytes.hex()
                    if run.state is RunState.COMPLETED:
                        before = completed_attempts.setdefault(key, len(run.attempts))
                        assert len(run.attempts) == before, f"{where}: {key} re-dispatched"
            for attempt_hex, run_hex in dispatched.items():
                run = auth.get_run(bytes.fromhex(run_hex))
                assert run is not None, f"{where}: lost run {run_hex}"
                ids = {a.attempt_id.bytes.hex() for a in run.attempts}
                assert attempt_hex in ids, f"{where}: lost attempt {attempt_hex}"
            for attempt_hex, (run_hex, state) in finished.items():
                run = auth.get_run(bytes.fromhex(run_hex))
                assert run is not None
                (att,) = [a for a in run.attempts if a.attempt_id.bytes.hex() == attempt_hex]
                assert att.finished_at is not None, f"{where}: finish of {attempt_hex} lost"
                if state == int(RunState.COMPLETED):
                    assert run.state is RunState.COMPLETED, f"{where}: {run_hex} {run.state}"
            # The uncertainty clause: past every lease, the sweep frees whatever was in flight.
            engine.tick()
            stuck = auth.runs_in_state(RunState.LEASED, 10) + auth.runs_in_state(
                RunState.RUNNING, 10
            )
            assert not stuck, f"{where}: runs still in flight after the sweep: {stuck}"
        finally:
            auth.close()
    print(
        f"kill loop: {n} trials, {kills} SIGKILLs, {ops} acknowledged operations "
        f"({len(submitted)} tasks, {len(finished)} finished attempts), "
        f"{from_snapshot} recoveries from a snapshot"
    )
    assert kills == n
    assert ops > 0
