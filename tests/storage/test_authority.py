"""The mutation authority: sequence rules, validation before append, atomic batches, lease
causality, cancel cascade, queries, retention, close and failure semantics."""

from __future__ import annotations

from pathlib import Path

import pytest
from authority_helpers import T0, S, complete, create, dispatch, spec, tr, wal_files

from actionqueue.core.ids import AttemptId, RunId, TaskId
from actionqueue.core.mutation import (
    AttemptFinishCommand,
    AttemptStartCommand,
    DurabilityPolicy,
    EnginePauseCommand,
    EngineResumeCommand,
    LeaseAcquireCommand,
    LeaseExpireCommand,
    LeaseHeartbeatCommand,
    MutationCommand,
    TaskCancelCommand,
    TaskCreateCommand,
)
from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.core.run.run_instance import RunInstance
from actionqueue.core.run.state import RunState
from actionqueue.core.task.constraints import TaskConstraints
from actionqueue.core.task.run_policy import RunPolicy
from actionqueue.core.task.task_spec import TaskPayload, TaskSpec
from actionqueue.errors import (
    ClosedError,
    CommandRejectedError,
    InvalidTransitionError,
    LeaseError,
    SequenceError,
    ValidationError,
    WrongTypeError,
)
from actionqueue.storage.mutation import AppliedOutcome, StorageMutationAuthority, TaskRecord
from actionqueue.storage.recovery import bootstrap

IMM = DurabilityPolicy.IMMEDIATE
DEF = DurabilityPolicy.DEFERRED


@pytest.fixture
def auth(data_dir: Path) -> StorageMutationAuthority:
    a, _ = bootstrap(data_dir, snapshot_every=0)
    yield a  # type: ignore[misc]
    a.close()


def ready_run(a: StorageMutationAuthority, **kw: object) -> tuple[TaskId, RunId]:
    s = spec(**kw)  # type: ignore[arg-type]
    cmds, (rid,) = create(s)
    a.submit_batch([*cmds, tr(rid, S.SCHEDULED, S.READY, T0)], DEF)
    return s.task_id, rid


# --- sequences -------------------------------------------------------------------------------


def test_expected_sequence_mismatch_raises_and_writes_nothing(
    auth: StorageMutationAuthority, data_dir: Path
) -> None:
    s = spec()
    assert auth.submit_command(TaskCreateCommand(1, s, T0), IMM) == AppliedOutcome(1, 1)
    before = wal_files(data_dir)
    with pytest.raises(SequenceError) as e:
        auth.submit_command(TaskCreateCommand(7, spec(), T0), IMM)
    assert (e.value.expected, e.value.got) == (2, 7)
    # A replayed (stale) sequence is refused the same way.
    with pytest.raises(SequenceError):
        auth.submit_command(TaskCreateCommand(1, spec(), T0), IMM)
    auth.flush()
    assert wal_files(data_dir) == before
    assert auth.latest_sequence == 1
    # None takes the next sequence.
    assert auth.submit_command(TaskCreateCommand(None, spec(), T0), IMM).sequence == 2


def test_batch_sequences_must_be_consecutive(auth: StorageMutationAuthority) -> None:
    s = spec()
    cmds, _ = create(s)
    batch = [cmds[0].with_sequence(1), cmds[1].with_sequence(2)]
    out = auth.submit_batch(batch, IMM)
    assert (out.first_sequence, out.last_sequence, out.event_count) == (1, 2, 2)
    s2 = spec()
    c2, _ = create(s2)
    with pytest.raises(ValidationError, match="does not follow"):
        auth.submit_batch([c2[0].with_sequence(3), c2[1].with_sequence(5)], IMM)
    with pytest.raises(SequenceError):
        auth.submit_batch([c2[0].with_sequence(4), c2[1]], IMM)
    assert auth.submit_batch([c2[0].with_sequence(3), c2[1]], IMM).last_sequence == 4


# --- validation before append ----------------------------------------------------------------


def test_rejected_commands_leave_log_and_digest_unchanged(
    auth: StorageMutationAuthority, data_dir: Path
) -> None:
    tid, rid = ready_run(auth)
    auth.flush()
    log, digest = wal_files(data_dir), auth.state_digest()
    spec_again = auth.get_task(tid).spec  # type: ignore[union-attr]
    refused: list[tuple[list[MutationCommand] | list[tuple[object, ...]], type[Exception]]] = [
        # An illegal pair (the command class refuses it too, so send the raw wire tuple).
        ([(2, rid.bytes, int(S.READY), int(S.RUNNING), None, None, T0)], InvalidTransitionError),
        ([tr(rid, S.SCHEDULED, S.READY, T0)], CommandRejectedError),  # stale from-state
        ([TaskCreateCommand(None, spec_again, T0)], CommandRejectedError),  # duplicate id
        ([AttemptStartCommand(None, rid, AttemptId.new(), T0)], CommandRejectedError),
        # Atomic: a valid first event does not survive a refused second one.
        ([TaskCancelCommand(None, tid, T0), tr(rid, S.READY, S.LEASED, T0)], CommandRejectedError),
        ([EngineResumeCommand(None, T0)], CommandRejectedError),
    ]
    for batch, exc in refused:
        wire = [c.to_wire() if isinstance(c, MutationCommand) else c for c in batch]
        with pytest.raises(exc):
            auth.submit_wire(wire, IMM)
    auth.flush()
    assert wal_files(data_dir) == log
    assert auth.state_digest() == digest
    assert auth.stats().rejected == len(refused)
    assert auth.failed is None


def test_malformed_wire_is_refused_before_anything(auth: StorageMutationAuthority) -> None:
    with pytest.raises(WrongTypeError):
        auth.submit_wire([(10, "soon")], IMM)
    with pytest.raises(ValidationError):
        auth.submit_wire([(99, 1)], IMM)
    with pytest.raises(CommandRejectedError, match="at least one event"):
        auth.submit_wire([], IMM)
    with pytest.raises(WrongTypeError):
        auth.submit_command("TaskCreate", IMM)  # type: ignore[arg-type]
    assert auth.latest_sequence == 0


def test_oversized_record_is_refused_and_authority_stays_usable(data_dir: Path) -> None:
    from actionqueue.core.task.task_spec import TaskPayload, TaskSpec
    from actionqueue.errors import RecordTooLargeError

    a, _ = bootstrap(data_dir, max_record_size=4096)
    with a:
        big = TaskSpec(TaskId.new(), TaskPayload(b"x" * 10_000), spec().run_policy)
        with pytest.raises(RecordTooLargeError):
            a.submit_command(TaskCreateCommand(None, big, T0), IMM)
        assert a.failed is None
        assert a.submit_command(TaskCreateCommand(None, spec(), T0), IMM).sequence == 1


# --- lifecycle, leases, cancel ---------------------------------------------------------------


def test_full_lifecycle_and_typed_queries(auth: StorageMutationAuthority) -> None:
    tid, rid = ready_run(auth, priority=5)
    batch, attempt = dispatch(rid, T0 + 10)
    auth.submit_batch(batch, IMM)
    run = auth.get_run(rid)
    assert isinstance(run, RunInstance)
    assert run.state is RunState.RUNNING
    assert run.current_attempt == attempt
    assert run.lease is not None
    assert run.lease.owner == "w1"
    assert run.effective_priority == 5
    assert run.created_seq == 2
    auth.submit_batch(complete(rid, attempt, T0 + 20), IMM)
    run = auth.get_run(rid)
    assert run is not None
    assert run.state is RunState.COMPLETED
    assert run.lease is None
    assert [h.to_state for h in run.history] == [
        S.SCHEDULED,
        S.READY,
        S.LEASED,
        S.RUNNING,
        S.COMPLETED,
    ]
    assert run.attempts[0].outcome is AttemptOutcome.SUCCESS
    rec = auth.get_task(tid)
    assert isinstance(rec, TaskRecord)
    assert (rec.derived, rec.non_terminal, rec.last_scheduled_at) == (1, 0, T0)
    assert auth.runs_for_task(tid) == [run]
    assert auth.counts()[RunState.COMPLETED] == 1
    assert sum(auth.counts().values()) == 1
    assert auth.get_run(RunId.new()) is None
    assert auth.get_task(TaskId.new()) is None
    assert auth.runs_for_task(TaskId.new()) == []


def test_lease_causality(auth: StorageMutationAuthority) -> None:
    _, rid = ready_run(auth)
    # No lease on a run that is not Leased; no Running without a live lease.
    with pytest.raises(CommandRejectedError):
        auth.submit_command(LeaseAcquireCommand(None, rid, "w1", T0 + 100, T0), IMM)
    with pytest.raises(CommandRejectedError):
        auth.submit_batch([tr(rid, S.READY, S.LEASED, T0), tr(rid, S.LEASED, S.RUNNING, T0)], IMM)
    batch, attempt = dispatch(rid, T0, ttl=100)
    auth.submit_batch(batch, IMM)
    # Only the owner heartbeats; never after expiry; expiry only once it is due.
    with pytest.raises(LeaseError):
        auth.submit_command(LeaseHeartbeatCommand(None, rid, "w2", T0 + 200, T0 + 10), IMM)
    auth.submit_command(LeaseHeartbeatCommand(None, rid, "w1", T0 + 200, T0 + 10), IMM)
    with pytest.raises(LeaseError):
        auth.submit_command(LeaseExpireCommand(None, rid, "w1", T0 + 150), IMM)
    with pytest.raises(LeaseError):
        auth.submit_command(LeaseHeartbeatCommand(None, rid, "w1", T0 + 400, T0 + 200), IMM)
    assert [r[0] for r in auth.expired_leases(T0 + 199, 10)] == []
    assert [r[0] for r in auth.expired_leases(T0 + 200, 10)] == [rid.bytes]
    auth.submit_command(LeaseExpireCommand(None, rid, "w1", T0 + 200), IMM)
    # The lease is gone: the open attempt can only be finished as Lost, then the retry rule.
    with pytest.raises(CommandRejectedError):
        auth.submit_command(AttemptStartCommand(None, rid, AttemptId.new(), T0 + 201), IMM)
    auth.submit_batch(
        [
            AttemptFinishCommand(None, rid, attempt, AttemptOutcome.LOST, T0 + 201),
            tr(rid, S.RUNNING, S.FAILED, T0 + 201, reason="lease lost"),
        ],
        IMM,
    )
    run = auth.get_run(rid)
    assert run is not None
    assert run.state is RunState.FAILED
    assert run.attempt_count == 1


def test_cancel_cascades_to_every_non_terminal_run(auth: StorageMutationAuthority) -> None:
    s = spec(runs=3)
    cmds, (r0, r1, r2) = create(s, runs=3)
    auth.submit_batch(cmds, IMM)
    auth.submit_command(tr(r0, S.SCHEDULED, S.READY, T0), IMM)
    batch, _ = dispatch(r0, T0)
    auth.submit_batch(batch, IMM)
    auth.submit_command(tr(r1, S.SCHEDULED, S.READY, T0), IMM)
    auth.submit_command(TaskCancelCommand(None, s.task_id, T0 + 5, reason="user"), IMM)
    states = {r.run_id: r for r in auth.runs_for_task(s.task_id)}
    assert {r.state for r in states.values()} == {RunState.CANCELED}
    assert states[r0].attempts[0].outcome is AttemptOutcome.CANCELED
    assert states[r0].lease is None
    rec = auth.get_task(s.task_id)
    assert rec is not None
    assert rec.is_canceled
    assert rec.non_terminal == 0
    assert auth.ready_candidates(10) == []
    assert r2 in states
    with pytest.raises(CommandRejectedError):
        auth.submit_command(TaskCancelCommand(None, s.task_id, T0 + 6), IMM)


def test_ready_candidates_order_and_key_gate(auth: StorageMutationAuthority) -> None:
    _, low = ready_run(auth, priority=1)
    _, high = ready_run(auth, priority=9)
    _, k1 = ready_run(auth, priority=5, key="k")
    _, k2 = ready_run(auth, priority=4, key="k")
    got = auth.ready_candidates(10)
    assert [c[0] for c in got] == [high.bytes, k1.bytes, low.bytes]  # k2 skipped: same key
    assert got[1][2:] == (5, T0, got[1][4], "k")
    assert len(auth.ready_candidates(1)) == 1
    batch, _ = dispatch(k1, T0)
    auth.submit_batch(batch, IMM)
    assert auth.key_holder("k") == k1.bytes
    assert [c[0] for c in auth.ready_candidates(10)] == [high.bytes, low.bytes]
    assert auth.key_holder("nope") is None
    # Paging through a state index.
    page1 = auth.runs_in_state(RunState.READY, 1)
    page2 = auth.runs_in_state(RunState.READY, 5, after=RunId.from_bytes(page1[0][0]))
    assert [r[0] for r in page1 + page2] == [high.bytes, k2.bytes, low.bytes]


def test_due_queries_and_next_due(auth: StorageMutationAuthority) -> None:
    s = spec(runs=3)
    cmds, rids = create(s, runs=3)
    auth.submit_batch(cmds, DEF)
    assert auth.next_due() == T0
    assert [r[0] for r in auth.due_scheduled(T0 + 1000, 10)] == [rids[0].bytes, rids[1].bytes]
    assert [r[0] for r in auth.due_scheduled(T0 + 5000, 1)] == [rids[0].bytes]
    assert auth.due_retries(T0 + 10_000, 10) == []
    assert auth.next_lease_expiry() is None
    assert RunInstance.from_wire(auth.due_scheduled(T0, 1)[0]).state is RunState.SCHEDULED


def test_dedupe_key_lookup(auth: StorageMutationAuthority) -> None:
    s = spec(dedupe="nightly")
    cmds, _ = create(s)
    auth.submit_batch(cmds, IMM)
    assert auth.task_by_dedupe_key("nightly") == s.task_id.bytes
    with pytest.raises(CommandRejectedError):
        auth.submit_batch(create(spec(dedupe="nightly"))[0], IMM)
    auth.submit_command(TaskCancelCommand(None, s.task_id, T0), IMM)
    assert auth.task_by_dedupe_key("nightly") is None


def test_pause_is_durable_and_visible(data_dir: Path) -> None:
    a, _ = bootstrap(data_dir)
    a.submit_command(EnginePauseCommand(None, T0), IMM)
    assert a.is_paused
    a.close()
    b, _ = bootstrap(data_dir)
    with b:
        assert b.is_paused


# --- retention -------------------------------------------------------------------------------


def test_prune_by_age_and_by_count(auth: StorageMutationAuthority) -> None:
    for k in range(10):
        s = spec()
        cmds, _ = create(s)
        auth.submit_batch(cmds, DEF)
        auth.submit_command(TaskCancelCommand(None, s.task_id, T0 + k), DEF)
    assert auth.counts()[RunState.CANCELED] == 10
    out = auth.prune(T0 + 3, IMM, timestamp=T0 + 100)
    assert (out.runs_removed, out.tasks_removed, out.before) == (3, 3, T0 + 3)
    kept = auth.prune_keep_newest(2, IMM, timestamp=T0 + 100)
    assert kept is not None
    assert kept.runs_removed == 5
    assert kept.before == T0 + 8
    assert auth.counts()[RunState.CANCELED] == 2
    assert auth.task_count == 2
    assert auth.prune_keep_newest(2) is None
    with pytest.raises(ValidationError):
        auth.prune_keep_newest(-1)
    # BUG: a count beyond the core's integer was a bare OverflowError ("int too big to
    # convert"); it is refused like prune_cutoff's, naming keep, and nothing is written.
    before = auth.latest_sequence
    for huge in (2**63, 2**64, 10**30):
        with pytest.raises(ValidationError, match="keep must be <="):
            auth.prune_keep_newest(huge)
        with pytest.raises(ValidationError, match="keep must be <="):
            auth.prune_cutoff(huge)
    assert auth.latest_sequence == before
    assert auth.prune_keep_newest(2**63 - 1) is None


# --- ownership, close, failure ---------------------------------------------------------------


def test_seed_construction_takes_ownership(tmp_path: Path) -> None:
    from actionqueue.storage.recovery.reducer import ReplayReducer
    from actionqueue.storage.wal.fs_writer import WalFsWriter

    w = WalFsWriter(tmp_path / "wal")
    r = ReplayReducer()
    a = StorageMutationAuthority(w, r)
    with pytest.raises(ClosedError, match="handed over"):
        w.append([(10, T0)])
    with pytest.raises(ClosedError, match="handed over"):
        _ = r.latest_sequence
    with pytest.raises(ClosedError):
        StorageMutationAuthority(w, ReplayReducer())
    w.close()  # a no-op: the authority owns the writer now
    a.submit_command(TaskCreateCommand(1, spec(), T0), IMM)
    a.close()


def test_seed_construction_refuses_a_reducer_of_another_history(tmp_path: Path) -> None:
    from actionqueue.storage.recovery.reducer import ReplayReducer
    from actionqueue.storage.wal.fs_writer import WalFsWriter

    with WalFsWriter(tmp_path / "wal") as w:
        w.append([(10, T0)])
    w = WalFsWriter(tmp_path / "wal")
    r = ReplayReducer()
    with pytest.raises(ValidationError, match=r"bootstrap\(\)"):
        StorageMutationAuthority(w, r)
    # Nothing was taken: replaying the log into the reducer makes the pair consistent.
    assert r.replay_wal(tmp_path / "wal") == (1, 1)
    a = StorageMutationAuthority(w, r)
    assert a.is_paused
    assert a.latest_sequence == 1
    a.close()


def test_use_after_close_raises_closed_error(data_dir: Path) -> None:
    with StorageMutationAuthority.open(data_dir) as a:
        a.submit_command(TaskCreateCommand(None, spec(), T0), IMM)
    assert a.closed
    for call in (
        lambda: a.submit_command(TaskCreateCommand(None, spec(), T0), IMM),
        lambda: a.counts(),
        lambda: a.latest_sequence,
        lambda: a.flush(),
        lambda: a.snapshot(),
    ):
        with pytest.raises(ClosedError):
            call()
    a.close()  # idempotent
    assert a.failed is None


def test_second_open_of_a_data_dir_is_refused(data_dir: Path) -> None:
    from actionqueue.errors import DataDirLockedError

    with StorageMutationAuthority.open(data_dir), pytest.raises(DataDirLockedError):
        bootstrap(data_dir)


def test_seed_spelling_of_durability(auth: StorageMutationAuthority) -> None:
    out = auth.submit_command(
        MutationCommand.TaskCreate(TaskCreateCommand(1, spec(), 0)), DurabilityPolicy.Immediate
    )
    assert out.sequence == 1
    assert auth.submit_command(TaskCreateCommand(None, spec(), 0), "deferred").sequence == 2
    with pytest.raises(ValidationError):
        auth.submit_command(TaskCreateCommand(None, spec(), 0), "sometimes")


# --- the lifecycle hot path (dispatch_ready, submit_deferred) ---------------------------------


def test_dispatch_ready_leases_and_starts_in_selection_order(
    auth: StorageMutationAuthority,
) -> None:
    _, low = ready_run(auth, priority=1)
    _, high = ready_run(auth, priority=9)
    _, k1 = ready_run(auth, priority=5, key="k")
    _, k2 = ready_run(auth, priority=4, key="k")
    seq = auth.latest_sequence
    got = auth.dispatch_ready(T0 + 5, "w1", 10, 30_000, bytes(range(16)) * 10)
    assert got is not None
    assert [g[0] for g in got] == [high.bytes, k1.bytes, low.bytes]  # k2: key taken by k1
    assert auth.latest_sequence == seq + 12  # one record: 4 events per run
    for rid, tid, sched, attempt, aid, exp in got:
        run = auth.get_run(RunId.from_bytes(rid))
        assert run is not None
        assert run.state is RunState.RUNNING
        assert run.task_id.bytes == tid
        assert sched == run.scheduled_at == T0
        assert attempt == run.attempt_count == 1
        assert run.current_attempt == AttemptId.from_bytes(aid)
        assert AttemptId.from_bytes(aid).uuid.version == 4
        assert run.lease is not None
        assert (run.lease.owner, run.lease.expires_at) == ("w1", exp)
        assert exp == T0 + 5 + 30_000
        # The history keeps every step: Ready -> Leased -> Running.
        assert [h.to_state for h in run.history][-2:] == [RunState.LEASED, RunState.RUNNING]
    assert auth.key_holder("k") == k1.bytes
    # Nothing else Ready (k2 waits for its key).
    assert auth.dispatch_ready(T0 + 5, "w1", 10, 30_000, bytes(160)) == []
    # The finish goes through the Deferred hot path (the core's own bound methods).
    submit_deferred, ready = auth.hot_path()
    assert ready(T0 + 5, "w1", 1, 30_000, bytes(16)) == []
    rid, _, _, _, aid, _ = got[1]
    success = int(AttemptOutcome.SUCCESS)
    first, last = submit_deferred(
        [(4, rid, aid, success, None, None, T0 + 6), (2, rid, 3, 6, None, None, T0 + 6)]
    )
    assert last == first + 1
    assert [g[0] for g in auth.dispatch_ready(T0 + 7, "w1", 10, 30_000, bytes(160)) or []] == [
        k2.bytes
    ]


def test_dispatch_ready_reports_due_work_and_respects_pause_and_timeouts(
    auth: StorageMutationAuthority,
) -> None:
    s = spec()
    cmds, (rid,) = create(s)
    auth.submit_batch(cmds, DEF)  # Scheduled, due at T0
    seq = auth.latest_sequence
    assert auth.dispatch_ready(T0, "w1", 1, 30_000, bytes(16)) is None  # promote first
    assert auth.dispatch_ready(T0 - 1, "w1", 1, 30_000, bytes(16)) == []  # not due yet
    assert auth.dispatch_ready(T0, "w1", 1, 30_000, bytes(16), False) == []  # not Ready
    assert auth.latest_sequence == seq
    auth.submit_command(tr(rid, S.SCHEDULED, S.READY, T0), DEF)
    auth.submit_command(EnginePauseCommand(None, T0), DEF)
    assert auth.dispatch_ready(T0, "w1", 1, 30_000, bytes(16)) == []  # paused
    auth.submit_command(EngineResumeCommand(None, T0), DEF)
    # A task whose timeout needs it gets a longer lease (timeout + 5 s), as the engine's.
    ts = TaskSpec(TaskId.new(), TaskPayload(b""), RunPolicy.once(), TaskConstraints(timeout=60.0))
    tc, (trid,) = create(ts)
    auth.submit_batch([*tc, tr(trid, S.SCHEDULED, S.READY, T0)], DEF)
    got = auth.dispatch_ready(T0, "w1", 2, 30_000, bytes(32))
    assert got is not None
    assert {g[0]: g[5] for g in got} == {rid.bytes: T0 + 30_000, trid.bytes: T0 + 65_000}
    with pytest.raises(ValidationError):
        auth.dispatch_ready(T0, "w1", 2, 30_000, bytes(31))  # 16 random bytes per run
    with pytest.raises(ValidationError):
        auth.dispatch_ready(T0, "", 1, 30_000, bytes(16))


def test_due_scheduled_ids_are_due_scheduled_without_the_run_tuples(
    auth: StorageMutationAuthority,
) -> None:
    s = spec(runs=3)
    cmds, rids = create(s, runs=3)
    auth.submit_batch(cmds, DEF)
    assert auth.due_scheduled_ids(T0 - 1, 10) == []
    assert auth.due_scheduled_ids(T0 + 1000, 10) == [
        (rids[0].bytes, s.task_id.bytes, T0),
        (rids[1].bytes, s.task_id.bytes, T0 + 1000),
    ]
    assert [r[0] for r in auth.due_scheduled_ids(T0 + 5000, 2)] == [
        w[0] for w in auth.due_scheduled(T0 + 5000, 2)
    ]


def test_due_retry_ids_are_due_retries_without_the_run_tuples(
    auth: StorageMutationAuthority,
) -> None:
    waits: list[tuple[RunId, int]] = []
    for delay in (300, 100, 200):
        _, rid = ready_run(auth, max_attempts=2)
        cmds, att = dispatch(rid, T0)
        auth.submit_batch(
            [
                *cmds,
                AttemptFinishCommand(None, rid, att, AttemptOutcome.RETRYABLE_FAILURE, T0),
                tr(rid, S.RUNNING, S.RETRY_WAIT, T0, not_before=T0 + delay),
            ],
            DEF,
        )
        waits.append((rid, T0 + delay))
    by_time = sorted(waits, key=lambda w: w[1])
    assert auth.due_retry_ids(T0 + 99, 10) == []
    assert auth.due_retry_ids(T0 + 200, 10) == [(r.bytes, nb) for r, nb in by_time[:2]]
    assert [r for r, _ in auth.due_retry_ids(T0 + 300, 2)] == [
        w[0] for w in auth.due_retries(T0 + 300, 2)
    ]


def test_submit_uniform_wire_builds_one_record_and_refuses_bad_input_whole(
    auth: StorageMutationAuthority,
) -> None:
    template = spec().to_wire()
    before = (auth.latest_sequence, auth.state_digest())
    bad: list[tuple[list[tuple[object, object]], bytes, type[Exception], str]] = [
        ([(b"a", None), b"b"], bytes(range(1, 65)), WrongTypeError, r"payloads\[1\]"),
        ([(b"a", None), ("text", None)], bytes(range(1, 65)), WrongTypeError, r"payloads\[1\]"),
        ([(b"a", None)], bytes(range(1, 17)), ValidationError, "16 bytes per task and per run"),
        ([(b"a", None)], bytes(32), ValidationError, "nil UUID"),
    ]
    for payloads, ids, error, match in bad:
        with pytest.raises(error, match=match):
            auth.submit_uniform_wire(
                template, payloads, [(0, T0)], T0, T0, ids, DurabilityPolicy.DEFERRED
            )
        assert (auth.latest_sequence, auth.state_digest()) == before
    ids = bytes(range(1, 65))  # task, run, task, run
    first, last = auth.submit_uniform_wire(
        template, [(b"a", None), (b"b", "text/plain")], [(0, T0)], T0, T0 + 1, ids, "immediate"
    )
    assert (first, last) == (before[0] + 1, before[0] + 4)
    a, b = TaskId.from_bytes(ids[:16]), TaskId.from_bytes(ids[32:48])
    ra = auth.get_task(a)
    rb = auth.get_task(b)
    assert ra is not None
    assert rb is not None
    assert (ra.spec.payload.data, rb.spec.payload.content_type) == (b"a", "text/plain")
    assert ra.spec.run_policy == spec().run_policy
    assert [r.run_id.bytes for r in auth.runs_for_task(a)] == [ids[16:32]]
    # A duplicate task id is refused by the reducer like any submit: nothing written.
    with pytest.raises(CommandRejectedError):
        auth.submit_uniform_wire(
            template, [(b"c", None)], [], T0, T0, ids[:16], DurabilityPolicy.DEFERRED
        )
    assert auth.latest_sequence == last


@pytest.mark.parametrize("snapshot_on_close", [False, True], ids=["replay", "snapshot"])
def test_tasks_sharing_or_alternating_shapes_keep_their_own_specs(
    data_dir: Path, snapshot_on_close: bool
) -> None:
    """Equal shapes (policy, constraints, metadata, handler) are kept once in memory, in a
    record of event tuples, across records and after a restart (replay or snapshot load):
    every task still reads back exactly the spec it was created with, whatever its
    neighbours' shapes."""
    specs = [
        spec(priority=p, key=k, max_attempts=m)
        for p, k, m in [(0, None, 1), (0, None, 1), (5, None, 1), (0, None, 1), (0, "k", 3)]
    ]
    specs += [spec(priority=5), spec(), spec(priority=5)]
    a, _ = bootstrap(data_dir, snapshot_every=0, snapshot_on_close=snapshot_on_close)
    a.submit_batch([TaskCreateCommand(None, s, T0) for s in specs[:5]], DEF)
    for s in specs[5:]:
        a.submit_command(TaskCreateCommand(None, s, T0), DEF)
    uniform = spec(priority=7)
    ids = bytes(range(1, 49))
    a.submit_uniform_wire(uniform.to_wire(), [(b"u", None)] * 3, [], T0, T0, ids, DEF)

    def check(auth: StorageMutationAuthority) -> None:
        for s in specs:
            got = auth.get_task(s.task_id)
            assert got is not None
            assert got.spec == s
        for k in range(3):
            got = auth.get_task(TaskId.from_bytes(ids[16 * k : 16 * k + 16]))
            assert got is not None
            assert got.spec.metadata == uniform.metadata
            assert got.spec.payload.data == b"u"

    check(a)
    a.close()
    reopened, _ = bootstrap(data_dir, snapshot_every=0)
    try:
        check(reopened)
    finally:
        reopened.close()


def test_submit_uniform_wire_creates_the_first_runs_ready_in_the_same_record(
    auth: StorageMutationAuthority,
) -> None:
    template = spec(runs=2).to_wire()
    runs = [(0, T0), (1, T0 + 1000)]
    ids = bytes(range(1, 49))  # task, run, run
    before = (auth.latest_sequence, auth.state_digest())
    for ready, match in [(3, "each task has 2 runs"), (2, "scheduled at .* after the submit")]:
        with pytest.raises(ValidationError, match=match):
            auth.submit_uniform_wire(
                template, [(b"a", None)], runs, T0, T0, ids, DurabilityPolicy.DEFERRED, ready=ready
            )
        assert (auth.latest_sequence, auth.state_digest()) == before
    first, last = auth.submit_uniform_wire(
        template, [(b"a", None)], runs, T0, T0, ids, DurabilityPolicy.DEFERRED, ready=1
    )
    assert (first, last) == (before[0] + 1, before[0] + 4)  # TaskCreate, 2 RunCreate, 1 promote
    got = {r.run_id.bytes: r for r in auth.runs_for_task(TaskId.from_bytes(ids[:16]))}
    assert got[ids[16:32]].state is RunState.READY
    assert got[ids[16:32]].history[-1].from_state is RunState.SCHEDULED
    assert got[ids[32:48]].state is RunState.SCHEDULED


def test_try_submit_uniform_wire_gives_up_instead_of_waiting(tmp_path: Path) -> None:
    """The nonblocking task batch: written at once when nothing would make it wait; ``None``
    and nothing written when an automatic snapshot is due (it would run under the lock)."""
    a, _ = bootstrap(tmp_path / "data", snapshot_every=3, snapshot_on_close=False)
    template = spec().to_wire()
    try:
        assert a.try_submit_uniform_wire(
            template, [(b"a", None)], [(0, T0)], T0, T0, bytes(range(1, 33))
        ) == (1, 2)
        before = (a.latest_sequence, a.state_digest())
        # Two more events reach snapshot_every: the submit would take the snapshot.
        got = a.try_submit_uniform_wire(
            template, [(b"b", None)], [(0, T0)], T0, T0, bytes(range(33, 65))
        )
        assert got is None
        assert (a.latest_sequence, a.state_digest()) == before
        # The blocking path takes it (and the snapshot).
        a.submit_uniform_wire(
            template, [(b"b", None)], [(0, T0)], T0, T0, bytes(range(33, 65)), "deferred"
        )
        assert a.stats().snapshots == 1
        with pytest.raises(ValidationError, match="nonblocking submits are Deferred"):
            a._core.submit_uniform(template, [], [], T0, T0, b"", True, 0, True)
    finally:
        a.close()
