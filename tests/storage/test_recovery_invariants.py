"""Recovery invariants over random histories (SPEC §7): snapshot + tail gives exactly the
state of a full replay; replaying the same log twice gives the same digest; the work done at
startup is the tail after the snapshot, not the history."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import hypothesis.strategies as st
import pytest
from authority_helpers import T0, S, dispatch, spec, tr
from hypothesis import HealthCheck, given, settings

from actionqueue.core.ids import RunId, TaskId
from actionqueue.core.mutation import (
    AttemptFinishCommand,
    DurabilityPolicy,
    EnginePauseCommand,
    EngineResumeCommand,
    MutationCommand,
    PruneCommand,
    RunCreateCommand,
    TaskCancelCommand,
    TaskCreateCommand,
)
from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.errors import CommandRejectedError
from actionqueue.storage import snapshot
from actionqueue.storage.mutation import StorageMutationAuthority
from actionqueue.storage.recovery import ReplayReducer, bootstrap
from actionqueue.storage.wal.fs_writer import WalFsWriter

OP = st.tuples(st.integers(0, 7), st.integers(0, 1000), st.booleans())


@pytest.fixture
def tmp() -> Iterator[Path]:
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    d = Path(tempfile.mkdtemp(prefix="aq-inv-", dir=base))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def batch_for(op: tuple[int, int, bool], r: ReplayReducer, now: int) -> list[MutationCommand]:
    """Mostly sensible commands chosen against the current state (some are refused)."""
    kind, pick, flag = op
    tasks = [TaskId.from_bytes(b) for b in sorted(_task_ids(r))]
    runs = [RunId.from_bytes(t[0]) for st_ in S for t in r.runs_in_state(st_, 1000)]
    run = runs[pick % len(runs)] if runs else None
    got = r.get_run(run) if run else None
    if kind <= 1 or got is None:
        s = spec(key="k" if flag else None, runs=1 + pick % 2, max_attempts=2)
        cmds: list[MutationCommand] = [TaskCreateCommand(None, s, now)]
        n = s.run_policy.total_runs() or 1
        return cmds + [
            RunCreateCommand(None, RunId.new(), s.task_id, k, now, now) for k in range(n)
        ]
    assert run is not None
    if kind == 2 and got.state in (S.SCHEDULED, S.RETRY_WAIT):
        return [tr(run, got.state, S.READY, now)]
    if kind == 3 and got.state is S.READY:
        return dispatch(run, now, ttl=50)[0]
    if kind == 4 and got.state is S.RUNNING and got.current_attempt is not None:
        out = AttemptOutcome.SUCCESS if flag else AttemptOutcome.RETRYABLE_FAILURE
        to = S.COMPLETED if flag else (S.RETRY_WAIT if got.attempt_count < 2 else S.FAILED)
        kw = {"not_before": now + 3} if to is S.RETRY_WAIT else {}
        return [
            AttemptFinishCommand(None, run, got.current_attempt, out, now, error="e"),
            tr(run, S.RUNNING, to, now, **kw),  # type: ignore[arg-type]
        ]
    if kind == 5 and tasks:
        return [TaskCancelCommand(None, tasks[pick % len(tasks)], now)]
    if kind == 6:
        return [PruneCommand(None, now - 20, now)]
    return [EngineResumeCommand(None, now) if r.is_paused else EnginePauseCommand(None, now)]


def _task_ids(r: ReplayReducer) -> set[bytes]:
    out = set()
    for st_ in S:
        for t in r.runs_in_state(st_, 1000):
            out.add(t[1])
    return out


# Each example makes its own directory under `tmp`, so sharing the fixture is safe.
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(OP, min_size=1, max_size=80), cuts=st.sets(st.integers(0, 79), max_size=4))
def test_snapshot_plus_tail_equals_full_replay(
    tmp: Path, ops: list[tuple[int, int, bool]], cuts: set[int]
) -> None:
    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    data = run_dir / "data"
    (data / "snapshots").mkdir(parents=True)
    auth = StorageMutationAuthority(WalFsWriter(data / "wal", segment_size=4096), ReplayReducer())
    shadow = ReplayReducer()  # the same records, applied alone: snapshots are cut from it
    now = T0
    for i, op in enumerate(ops):
        now += 11
        batch = batch_for(op, shadow, now)
        wire = [c.to_wire() for c in batch]
        try:
            first, _ = auth.submit_wire(wire, DurabilityPolicy.DEFERRED)
        except CommandRejectedError:
            continue
        shadow.apply(first, wire)
        if i in cuts:
            shadow.write_snapshot(data / "snapshots")
    live, last = auth.state_digest(), auth.latest_sequence
    assert shadow.state_digest() == live
    auth.close()

    # Full replay, twice: the same digest.
    for _ in range(2):
        full = ReplayReducer.from_wal(data / "wal")
        assert full.state_digest() == live
    # Every snapshot + its tail: the same digest, and only the tail is replayed.
    for f in snapshot.list_snapshots(data / "snapshots"):
        r = snapshot.load(f.path)
        records, events = r.replay_wal(data / "wal")
        assert events == last - f.sequence
        assert records <= events
        assert r.state_digest() == live
    # And bootstrap picks the newest one.
    b, report = bootstrap(data, digest=True, snapshot_on_close=False)
    with b:
        assert report.digest == live
        newest = snapshot.list_snapshots(data / "snapshots")
        assert report.snapshot_sequence == (newest[0].sequence if newest else None)
        assert report.events_replayed == last - (report.snapshot_sequence or 0)
    shutil.rmtree(run_dir)


def test_startup_work_grows_with_the_tail_not_the_history(tmp: Path) -> None:
    """Same tail, ten times the history: the replayed event count is the same."""
    replayed = []
    for history in (200, 2000):
        a, _ = bootstrap(tmp / f"d{history}", snapshot_every=0, snapshot_on_close=False)
        for _ in range(history):
            a.submit_wire([(10, T0), (11, T0)], DurabilityPolicy.DEFERRED)
        a.snapshot()
        for _ in range(50):
            a.submit_wire([(10, T0)], DurabilityPolicy.DEFERRED)
            a.submit_wire([(11, T0)], DurabilityPolicy.DEFERRED)
        a.close()
        b, report = bootstrap(tmp / f"d{history}")
        b.close()
        assert report.final_sequence == 2 * history + 100
        replayed.append((report.records_replayed, report.events_replayed))
    assert replayed == [(100, 100), (100, 100)]
