"""Kill loops: a child process runs a realistic workload and is SIGKILLed at a random moment
(now and then while it is still opening the directory); the parent reopens the data directory
and audits it against the child's acknowledgement log (written only after each call returned).

The engine kill loop (kill_child.py: Once, Repeat and Cron tasks, dedupe keys, retries,
concurrency keys, cancels, prunes, automatic snapshots every few events with one or two kept;
trials alternate between a directory whose log stays whole and one with small segments that
checkpoints delete) checks after every kill:

* no snapshot is set aside or skipped; snapshot + WAL tail has the state digest of a full
  replay (where the log is whole) and of every older snapshot kept + its tail;
* every acknowledged submit, dedupe submit, dispatch, finish and cancel is in the recovered
  state, unless a prune written after it may have removed it;
* a run acknowledged Completed is never dispatched again (its attempts never change later);
* no run has more counted attempts than its task's ``max_attempts``;
* no task has two runs for one occurrence (``scheduled_at``) or ordinal, ever — a pruned run
  included; a task's ``non_terminal`` count matches its runs; a canceled task has no live run;
  at most one live task holds a dedupe key, and the key's lookup names it;
* once the clock is past every lease, the engine's sweep leaves no run Leased or Running, no
  due run Scheduled or waiting in RetryWait, and every live cron task with a run to come
  (the uncertainty clause: in-flight runs become eligible again by themselves).

The runtime kill loop (queue_kill_child.py: an Immediate ActionQueue with worker threads and
submitter threads sharing dedupe keys and waiting on ``result()``) checks that acknowledged
submits and results survive (a result handed out is durable: that run never runs again).

``AQ_SOAK=1`` runs 10,000 / 1,000 trials (``AQ_KILL_TRIALS=N`` / ``AQ_QUEUE_KILL_TRIALS=N`` to
choose; ``AQ_KILL_MAX_SLEEP`` seconds bounds the engine loop's kill delay, default 0.05); the
defaults are 100 / 30. ``AQ_SEED`` replays a run's choices. The counts are printed.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import kill_child
import pytest
import queue_kill_child

from actionqueue.core import RunInstance, RunState, TaskId
from actionqueue.engine import Engine, ManualClock, SystemClock
from actionqueue.engine.ports import task_is_finished
from actionqueue.storage.mutation import StorageMutationAuthority
from actionqueue.storage.recovery import bootstrap

T0 = 1_700_000_000_000
TRIAL_SPAN = 1_000_000  # ms of manual time per trial: far past every 10 s lease
_TERMINAL = (RunState.COMPLETED, RunState.FAILED, RunState.CANCELED)
_OPS = (
    ("S", "submits"),
    ("K", "dedupe submits"),
    ("D", "dispatches"),
    ("F", "finishes"),
    ("C", "task cancels"),
    ("X", "run cancels"),
    ("P", "prunes"),
)


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


def _snapshots(data: Path) -> list[Path]:
    """The data directory's snapshots, oldest first (names sort by sequence)."""
    return sorted((data / "snapshots").glob("snapshot-*.aqs"))


def _log_is_complete(data: Path) -> bool:
    """Whether the WAL still starts at its first event (no checkpoint deleted a segment)."""
    segments = sorted((data / "wal").glob("*.wal"))
    return not segments or int(segments[0].name.split(".")[0]) <= 1


def digest_of(
    data: Path, scratch: Path, options: dict[str, Any], *, keep: list[Path] | None
) -> tuple[str, Any]:
    """Recovers a copy of ``data`` with only the snapshots in ``keep`` (``None``: all of them);
    returns the state digest and the recovery report."""
    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(data, scratch, ignore=shutil.ignore_patterns("LOCK"))
    if keep is not None:
        names = {p.name for p in keep}
        for p in (scratch / "snapshots").iterdir():
            if p.name not in names:
                p.unlink()
    opts = {k: v for k, v in options.items() if k != "snapshot_every"}
    auth, report = bootstrap(
        scratch, digest=True, snapshot_on_close=False, snapshot_every=0, **opts
    )
    auth.close()
    assert report.digest is not None
    return str(report.digest), report


def all_runs(auth: StorageMutationAuthority) -> list[RunInstance]:
    out: list[RunInstance] = []
    for st in RunState:
        cursor = None
        while True:
            page, cursor = auth.runs_page(st, 1_000, cursor)
            out.extend(RunInstance.from_wire(t) for t in page)
            if cursor is None:
                break
    return out


class Audit:
    """What the acknowledgement log promised so far, checked against each recovered state."""

    def __init__(self) -> None:
        self.ops: list[list[str]] = []
        self.last_prune = -1  # index of the newest prune intent
        self.submitted: dict[str, tuple[int, str, int]] = {}  # task -> (max_attempts, kind, op)
        self.deduped: list[tuple[str, str, int]] = []  # (key, task, op)
        self.dispatched: dict[str, tuple[str, int]] = {}  # attempt -> (run, op)
        self.finished: dict[str, tuple[str, int, int]] = {}  # attempt -> (run, state, op)
        self.canceled_tasks: dict[str, int] = {}  # task -> op
        self.canceled_runs: dict[str, int] = {}  # run -> op
        self.completed_attempts: dict[str, int] = {}  # run -> attempts when first Completed
        self.occurrences: dict[tuple[str, int], str] = {}  # (task, scheduled_at) -> run
        self.ordinals: dict[tuple[str, int], str] = {}  # (task, ordinal) -> run

    def read(self, acks: Path) -> None:
        recs = parse_acks(acks)
        for i, rec in enumerate(recs[len(self.ops) :], start=len(self.ops)):
            kind = rec[0]
            if kind == "S":
                self.submitted[rec[1]] = (int(rec[2]), rec[3], i)
            elif kind == "K":
                self.deduped.append((rec[1], rec[2], i))
            elif kind == "D":
                self.dispatched[rec[2]] = (rec[1], i)
            elif kind == "F":
                self.finished[rec[2]] = (rec[1], int(rec[3]), i)
            elif kind == "C":
                self.canceled_tasks[rec[1]] = i
            elif kind == "X":
                self.canceled_runs[rec[1]] = i
            elif kind == "P":
                self.last_prune = i
        self.ops = recs

    def cron_occurrences(self) -> list[tuple[str, int]]:
        return [k for k in self.occurrences if self.submitted.get(k[0], (0, ""))[1] == "c"]

    def may_be_pruned(self, op: int) -> bool:
        """Whether a prune was (possibly) written after the acknowledgement ``op``."""
        return self.last_prune > op

    def check(self, auth: StorageMutationAuthority, engine: Engine, where: str) -> None:
        runs = all_runs(auth)
        by_id = {r.run_id.bytes.hex(): r for r in runs}
        tasks: dict[str, Any] = {}
        for r in runs:
            t = r.task_id.bytes.hex()
            if t not in tasks:
                tasks[t] = auth.get_task(r.task_id)
                assert tasks[t] is not None, f"{where}: run {r.run_id} of a missing task"
        for t, (_, _, op) in self.submitted.items():
            if t not in tasks:
                tasks[t] = auth.get_task(TaskId(bytes.fromhex(t)))
            if tasks[t] is None:
                assert self.may_be_pruned(op), f"{where}: lost task {t}"
        for key, t, op in self.deduped:
            if tasks.get(t) is None and auth.get_task(TaskId(bytes.fromhex(t))) is None:
                assert self.may_be_pruned(op), f"{where}: lost task {t} (dedupe key {key})"

        runs_of: dict[str, list[RunInstance]] = {}
        for r in runs:
            runs_of.setdefault(r.task_id.bytes.hex(), []).append(r)
        live_by_key: dict[str, list[str]] = {}
        for t, rec in tasks.items():
            if rec is None:
                continue
            mine = runs_of.get(t, [])
            non_terminal = [r for r in mine if r.state not in _TERMINAL]
            assert rec.non_terminal == len(non_terminal), f"{where}: {t} {rec} {non_terminal}"
            live = rec.canceled_at is None and not task_is_finished(rec)
            if live and rec.spec.dedupe_key is not None:
                live_by_key.setdefault(rec.spec.dedupe_key, []).append(t)
            if rec.canceled_at is not None:
                assert not non_terminal, f"{where}: canceled task {t} has live runs"
            max_attempts = rec.spec.constraints.max_attempts
            for r in mine:
                key = r.run_id.bytes.hex()
                assert r.attempt_count <= max_attempts, f"{where}: {r}"
                if r.state is RunState.COMPLETED:
                    before = self.completed_attempts.setdefault(key, len(r.attempts))
                    assert len(r.attempts) == before, f"{where}: {key} re-dispatched"
                other = self.occurrences.setdefault((t, r.scheduled_at), key)
                assert other == key, (
                    f"{where}: task {t} has two runs for occurrence {r.scheduled_at}: "
                    f"{other} and {key}"
                )
                other = self.ordinals.setdefault((t, r.ordinal), key)
                assert other == key, f"{where}: task {t} ordinal {r.ordinal}: {other}, {key}"
        for key, holders in live_by_key.items():
            assert len(holders) == 1, f"{where}: dedupe key {key} names live tasks {holders}"
            found = auth.task_by_dedupe_key(key)
            assert found is not None, f"{where}: key {key} held by {holders}, lookup misses it"
            assert found.hex() == holders[0], f"{where}: key {key}"

        for t, op in self.canceled_tasks.items():
            rec = tasks.get(t) or auth.get_task(TaskId(bytes.fromhex(t)))
            if rec is None:
                assert self.may_be_pruned(op), f"{where}: lost canceled task {t}"
            else:
                assert rec.canceled_at is not None, f"{where}: cancel of {t} lost"
        for rid, op in self.canceled_runs.items():
            r = by_id.get(rid)
            if r is None:
                assert self.may_be_pruned(op), f"{where}: lost canceled run {rid}"
            else:
                assert r.state is RunState.CANCELED, f"{where}: cancel of run {rid} lost"
        for attempt_hex, (run_hex, op) in self.dispatched.items():
            r = by_id.get(run_hex)
            if r is None:
                assert self.may_be_pruned(op), f"{where}: lost run {run_hex}"
                continue
            ids = {a.attempt_id.bytes.hex() for a in r.attempts}
            assert attempt_hex in ids, f"{where}: lost attempt {attempt_hex}"
        for attempt_hex, (run_hex, state, op) in self.finished.items():
            r = by_id.get(run_hex)
            if r is None:
                assert self.may_be_pruned(op), f"{where}: lost run {run_hex}"
                continue
            (att,) = [a for a in r.attempts if a.attempt_id.bytes.hex() == attempt_hex]
            assert att.finished_at is not None, f"{where}: finish of {attempt_hex} lost"
            if state == int(RunState.COMPLETED):
                assert r.state is RunState.COMPLETED, f"{where}: {run_hex} {r.state}"

    def check_progress(self, auth: StorageMutationAuthority, now: int, where: str) -> None:
        """After the sweep at ``now`` (past every lease): nothing in flight, nothing due left
        waiting, and every live cron task still has an occurrence to run."""
        for r in all_runs(auth):
            assert r.state not in (RunState.LEASED, RunState.RUNNING), f"{where}: stuck {r}"
            if r.state is RunState.SCHEDULED:
                assert r.scheduled_at > now, f"{where}: due run left Scheduled: {r}"
            if r.state is RunState.RETRY_WAIT:
                assert r.not_before is not None, f"{where}: {r}"
                assert r.not_before > now, f"{where}: due retry left waiting: {r}"
        for t, (_, kind, _) in self.submitted.items():
            rec = auth.get_task(TaskId(bytes.fromhex(t)))
            live = rec is not None and rec.canceled_at is None and not task_is_finished(rec)
            if kind == "c" and live:
                assert rec.non_terminal >= 1, f"{where}: live cron task {t} has no run: {rec}"


@pytest.mark.timeout(3_600)
def test_sigkill_at_random_points_loses_nothing_acknowledged(fast_tmp: Path) -> None:
    # SIGKILL ends the process, not the machine: the page cache survives it, so tmpfs (where
    # fsync is free) tests exactly the same thing, many times faster. Power loss is covered by
    # the Rust fault-injection suites (rust/wal/crash_tests.rs, rust/authority_fault_tests.rs).
    tmp_path = fast_tmp
    seed = int(os.environ.get("AQ_SEED", random.randrange(1 << 30)))
    print(f"kill loop seed {seed} (AQ_SEED={seed} replays the kill timings)")
    rng = random.Random(seed)
    max_sleep = float(os.environ.get("AQ_KILL_MAX_SLEEP", "0.05"))
    # Two data directories, trials alternating: in one the log stays whole, in the other
    # small segments let checkpoints delete the log's start.
    dirs = [(tmp_path / "whole", Audit()), (tmp_path / "checkpointed", Audit())]
    kills = early = from_snapshot = full_replays = fallbacks = 0
    n = trials()
    for trial in range(n):
        start = T0 + trial * TRIAL_SPAN
        small = trial % 2 == 1
        base, audit = dirs[trial % 2]
        data, acks = base / "data", base / "acks.log"
        base.mkdir(exist_ok=True)
        options = kill_child.storage_options(seed + trial, small_segments=small)
        # Now and then the kill comes without waiting for "ready": during recovery.
        during_open = rng.random() < 0.15
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: run the workload until killed
            code = 1
            try:
                os.close(r)
                kill_child.run(str(data), str(acks), seed + trial, start, w, options)
            finally:
                os._exit(code)
        os.close(w)
        with os.fdopen(r) as ready:
            if during_open:
                time.sleep(rng.uniform(0.0, 0.01))
                early += 1
            else:
                line = ready.readline()
                if line.strip() != "ready":
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    pytest.fail(f"trial {trial} (seed {seed}): child did not start: {line!r}")
                time.sleep(rng.uniform(0.0, max_sleep))
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        where = f"trial {trial} (seed {seed}, options {options})"
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            kills += 1
        else:
            pytest.fail(f"{where}: child exited with status {status}")

        # Before anything else touches the directory: a kill never damages a snapshot, and
        # snapshot + tail equals a full replay of the log (when checkpoints left it whole) and
        # the state recovered from every older snapshot kept as a fallback.
        stale = list((data / "snapshots").glob("*.stale")) if data.exists() else []
        assert not stale, f"{where}: snapshots set aside: {stale}"
        if data.exists():
            newest, report = digest_of(data, base / "a", options, keep=None)
            assert not report.snapshots_skipped, f"{where}: {report.snapshots_skipped}"
            from_snapshot += report.snapshot_path is not None
            if _log_is_complete(data):
                full, _ = digest_of(data, base / "b", options, keep=[])
                assert newest == full, f"{where}: snapshot+tail != full replay"
                full_replays += 1
            snaps = _snapshots(data)
            for older in snaps[:-1]:
                d, rep = digest_of(data, base / "b", options, keep=[older])
                assert rep.snapshot_path is not None, f"{where}: {older.name} unused: {rep}"
                assert d == newest, f"{where}: {older.name}+tail != newest snapshot+tail"
                fallbacks += 1

        audit.read(acks)
        auth = StorageMutationAuthority.open(data, **options)
        try:
            assert not auth.recovery_report.snapshots_skipped, where  # type: ignore[union-attr]
            now = start + TRIAL_SPAN // 2
            engine = Engine(
                auth,
                ManualClock(now),
                owner="auditor",
                rng=random.Random(1),
                default_lease_ms=kill_child.LEASE_MS,
            )
            audit.check(auth, engine, where)
            # The uncertainty clause: past every lease, the sweep frees whatever was in flight.
            for _ in range(50):
                if not engine.tick().changed:
                    break
            audit.check_progress(auth, now, where)
        finally:
            auth.close()
    ops = [o for _, a in dirs for o in a.ops]
    print(
        f"kill loop: {n} trials, {kills} SIGKILLs ({early} during open), "
        f"{len(ops)} acknowledged operations ("
        + ", ".join(f"{sum(1 for o in ops if o[0] == k)} {name}" for k, name in _OPS)
        + f"), {sum(len(a.cron_occurrences()) for _, a in dirs)} cron occurrences seen"
        + f", {from_snapshot} recoveries from a snapshot, {full_replays} compared with a "
        f"full replay, {fallbacks} with an older snapshot"
    )
    assert kills == n
    assert ops


def queue_trials() -> int:
    if os.environ.get("AQ_QUEUE_KILL_TRIALS"):
        return int(os.environ["AQ_QUEUE_KILL_TRIALS"])
    return 1_000 if os.environ.get("AQ_SOAK", "0") not in ("", "0") else 30


@pytest.mark.timeout(3_600)
def test_sigkill_of_a_threaded_queue_loses_no_acknowledged_submit_or_result(
    fast_tmp: Path,
) -> None:
    """The runtime under SIGKILL: submitter threads (dedupe keys shared between them, so some
    submits are answered by another thread's task) and ``result()`` waits on an Immediate queue
    with worker threads. After every kill: each acknowledged submit's task is there, each
    acknowledged result is Completed (Failed for a RunFailedError) before any sweep — a result
    handed out is durable, so that run never runs again — at most one live task holds a dedupe
    key, and snapshot + tail equals a full replay. ``AQ_QUEUE_KILL_TRIALS=N`` (default 30)."""
    seed = int(os.environ.get("AQ_SEED", random.randrange(1 << 30)))
    print(f"queue kill loop seed {seed}")
    rng = random.Random(seed)
    data, acks = fast_tmp / "data", fast_tmp / "acks.log"
    completed: dict[str, int] = {}  # run -> attempts when first acknowledged Completed
    n = queue_trials()
    kills = ops = 0
    for trial in range(n):
        options = kill_child.storage_options(seed + trial, small_segments=False)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                queue_kill_child.run(str(data), str(acks), seed + trial, w, options)
            finally:
                os._exit(1)
        os.close(w)
        with os.fdopen(r) as ready:
            line = ready.readline()
            if line.strip() == "ready":
                time.sleep(rng.uniform(0.0, 0.15))
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        where = f"trial {trial} (seed {seed}, options {options})"
        if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
            err = Path(f"{acks}.err")
            pytest.fail(
                f"{where}: child exited with status {status}: "
                + (err.read_text() if err.exists() else "")
            )
        kills += 1
        newest, _ = digest_of(data, fast_tmp / "a", options, keep=None)
        full, _ = digest_of(data, fast_tmp / "b", options, keep=[])
        assert newest == full, f"{where}: snapshot+tail != full replay"

        recs = parse_acks(acks)
        ops = len(recs)
        with StorageMutationAuthority.open(data, **options) as auth:
            live_by_key: dict[str, set[str]] = {}
            for rec in recs:
                tid = TaskId(rec[-1])
                task = auth.get_task(tid)
                assert task is not None, f"{where}: acknowledged task {tid} lost ({rec})"
                if rec[0] in ("R", "RF"):
                    (run,) = auth.runs_for_task(tid)
                    want = RunState.COMPLETED if rec[0] == "R" else RunState.FAILED
                    assert run.state is want, f"{where}: result of {tid} acknowledged, {run}"
                    if want is RunState.COMPLETED:
                        key = run.run_id.bytes.hex()
                        before = completed.setdefault(key, len(run.attempts))
                        assert len(run.attempts) == before, f"{where}: {key} ran again"
                if task.spec.dedupe_key is not None and not task_is_finished(task):
                    live_by_key.setdefault(task.spec.dedupe_key, set()).add(str(tid))
            for key, holders in live_by_key.items():
                assert len(holders) == 1, f"{where}: dedupe key {key} held by {holders}"

    # Nothing is stuck: once the dead processes' leases are over, the sweep frees every run.
    time.sleep(queue_kill_child.LEASE + 0.05)
    with StorageMutationAuthority.open(data) as auth:
        engine = Engine(auth, SystemClock(), owner="auditor", default_lease_ms=1_000)
        engine.tick()
        stuck = auth.runs_in_state(RunState.LEASED, 10) + auth.runs_in_state(RunState.RUNNING, 10)
        assert not stuck, f"runs still in flight after the sweep: {stuck}"
    print(
        f"queue kill loop: {n} trials, {kills} SIGKILLs, {ops} acknowledged operations "
        f"({sum(1 for r in recs if r[0] == 'R')} results, {len(completed)} completed runs seen)"
    )
    assert any(r[0] == "R" for r in recs)
