"""Real snapshots, read by a reader written only from docs/FORMAT.md §9, agree with the public
API: every task and run (hot, and cold looked up through the hash tables), their states,
attempts, outputs, errors and histories, the pause flag and the counts."""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crc32c
import pytest
from independent_snapshot_reader import (
    TERMINAL,
    ColdSection,
    Run,
    Snapshot,
    SnapshotFormatError,
    Task,
    first_slot,
    id_hash,
    read_snapshot,
    table_bits,
    table_seed,
)

import actionqueue as aq
from actionqueue.core.run.run_instance import RunInstance
from actionqueue.storage import snapshot as snapshot_api

T0 = 1_700_000_000_000


@dataclass
class Scene:
    q: aq.ActionQueue
    clock: aq.ManualClock
    tasks: dict[str, aq.TaskId]
    path: Path


def build(data_dir: Path) -> Iterator[Scene]:
    """A queue holding runs in every state, of every policy kind, then paused and
    snapshotted. The queue stays open for the comparison."""
    clock = aq.ManualClock(T0)
    q = aq.ActionQueue.open(data_dir, clock=clock, snapshot_on_close=False)
    q.register("ok", lambda ctx, payload: payload)

    def fail(ctx: Any, payload: Any) -> None:
        raise aq.Fail("boom: " + str(payload))

    def retry(ctx: Any, payload: Any) -> str:
        if ctx.attempt < 2:
            raise aq.Retry(delay=60, reason="not yet")
        return "second time"

    def wait(ctx: Any, payload: Any) -> None:
        raise aq.Retry(delay=3600)

    def suspend(ctx: Any, payload: Any) -> None:
        raise aq.Suspend()

    def crash(ctx: Any, payload: Any) -> None:
        raise RuntimeError("kaput")

    q.register("fail", fail)
    q.register("retry", retry, max_attempts=3)
    q.register("wait", wait, max_attempts=5)
    q.register("suspend", suspend)
    q.register("crash", crash, max_attempts=2, backoff=aq.fixed(30))
    q.register("held", lambda ctx, payload: None)
    t: dict[str, aq.TaskId] = {}
    t["ok"] = q.submit(
        "ok", {"n": 1}, priority=5, tags=["a", "b"], description="first", dedupe_key="k1"
    )
    t["raw"] = q.submit("ok", b"\x00\xffraw", content_type="application/octet-stream")
    t["fail"] = q.submit("fail", "x")
    t["retry"] = q.submit("retry", None, priority=-3)
    t["wait"] = q.submit("wait", None, priority=7)
    t["suspend"] = q.submit("suspend", None, tags=["s"])
    t["crash"] = q.submit("crash", None)
    t["later"] = q.submit("ok", "later", delay=3600, dedupe_key="k2", priority=9)
    t["cancel"] = q.submit("ok", "never", delay=3600)
    t["repeat"] = q.submit("ok", "rep", policy=aq.every(3600, count=3))
    t["cron"] = q.submit(
        "ok",
        "cron",
        policy=aq.RunPolicy.cron("*/5 * * * *", timezone="Europe/Paris", max_occurrences=2),
    )
    t["forever"] = q.submit("ok", "tick", policy=aq.RunPolicy.cron("* * * * *"))
    q.cancel(t["cancel"], reason="not wanted")
    q.run_until_idle()
    clock.advance(61_000)  # the retry's and the crash's second attempts
    q.run_until_idle()
    clock.advance(400_000)  # the cron's occurrences
    q.run_until_idle()
    # Leased and started by hand, not run: Running, with a lease and an open attempt.
    t["held"] = q.submit("held", "leased", concurrency_key="key", timeout=10)
    (d,) = q.engine.dispatch_next(limit=5)
    assert d.task_id == t["held"]
    # Canceling finishes even a task without an end; its runs, the running one too, end.
    t["stopped"] = q.submit("held", "stopped")
    (d,) = q.engine.dispatch_next(limit=5)
    assert d.task_id == t["stopped"]
    q.cancel(t["stopped"])
    q.cancel(t["forever"])
    # Leased without an attempt: the engine leases and starts in one batch, so by hand (the
    # storage API: RunTransition Ready -> Leased, LeaseAcquire).
    t["leased"] = q.submit("held", "leased")
    t["ready"] = q.submit("ok", "behind the held key", concurrency_key="key")
    q.engine.tick()
    (run,) = q.runs(t["leased"])
    now = clock.now()
    q.authority.submit_wire(
        [(2, run.run_id.bytes, 1, 2, None, None, now), (5, run.run_id.bytes, "me", now + 5, now)],
        aq.DurabilityPolicy.IMMEDIATE,
    )
    q.pause()
    info = q.snapshot()
    assert info is not None
    try:
        yield Scene(q, clock, t, Path(info.path))
    finally:
        q.close(drain=False)


@pytest.fixture
def scene(data_dir: Path) -> Iterator[Scene]:
    yield from build(data_dir)


def as_run_instance(r: Run) -> RunInstance:
    """The reader's run in the public API's shape, as FORMAT.md §9 says the API derives it:
    the creation entry of the history is not stored, and effective_priority is reported only
    once the run has been Ready. (The lease's acquired_at is not reported.)"""
    ready = int(aq.RunState.READY)
    return RunInstance.from_wire(
        (
            r.id,
            r.task_id,
            r.state,
            r.ordinal,
            r.scheduled_at,
            r.created_at,
            r.attempt_count,
            r.current_attempt,
            r.effective_priority if any(h.to_state == ready for h in r.history) else None,
            r.last_state_change_at,
            r.not_before,
            None if r.lease is None else (r.lease.owner, r.lease.expires_at),
            [(None, int(aq.RunState.SCHEDULED), r.created_at, None)]
            + [(h.from_state, h.to_state, h.at, h.reason) for h in r.history],
            [(a.id, a.started_at, a.finished_at, a.outcome, a.error, a.output) for a in r.attempts],
            r.created_seq,
        )
    )


def check_task(snap: Snapshot, q: aq.ActionQueue, task: Task) -> None:
    rec = q.get_task(aq.TaskId.from_bytes(task.id))
    assert rec is not None
    assert task.spec == rec.spec.to_wire()
    assert (task.origin, task.created_at, task.canceled_at) == (
        rec.origin,
        rec.created_at,
        rec.canceled_at,
    )
    assert task.runs_created == rec.derived
    ids = snap.run_ids(task.id)
    assert ids == [r.run_id.bytes for r in q.runs(rec.spec.task_id)]
    runs = [snap.run(i) for i in ids]
    assert all(r is not None for r in runs)
    assert sum(r.state not in TERMINAL for r in runs if r is not None) == rec.non_terminal


def agree(snap: Snapshot, q: aq.ActionQueue, task_ids: Iterable[aq.TaskId]) -> None:
    """The reader's view of ``snap`` is what the (unchanged since) queue ``q`` reports about
    the tasks ``task_ids`` (every task ever submitted; pruned ones are in neither)."""
    held = [x for x in task_ids if q.get_task(x) is not None]
    assert snap.sequence == q.stats()["latest_sequence"]
    assert (snap.paused_at is not None) == q.paused
    all_tasks, all_runs = snap.all_tasks(), snap.all_runs()
    assert sorted(x.id for x in all_tasks) == sorted(x.bytes for x in held)
    for task in all_tasks:
        assert snap.task(task.id) == task  # found through the table when cold
        check_task(snap, q, task)
    api_runs = [r for x in held for r in q.runs(x)]
    assert len(all_runs) == len(api_runs) == len({r.id for r in all_runs})
    for run in all_runs:
        got = q.get_run(aq.RunId.from_bytes(run.id))
        assert got is not None
        assert as_run_instance(run) == got
        assert snap.run(run.id) == run  # found through the table when cold
    # hot = not terminal, cold = terminal; a task is cold once finished
    assert all(r.state not in TERMINAL for r in snap.runs)
    assert all(snap.cold.run_at(i).state in TERMINAL for i in range(snap.cold.n_runs))
    for i in range(snap.cold.n_tasks):
        ct = snap.cold.task_at(i)
        assert ct.task.finished_at == ct.finished_at
        assert ct.task.created_seq == ct.created_seq
        assert all(snap.cold.find_run(r) is not None for r in ct.runs)
    assert all(x.finished_at is None for x in snap.tasks)
    # the counts of stats() and the listing by state
    stats = q.stats()
    counts = Counter(aq.RunState.from_wire(r.state).label for r in all_runs)
    assert {k: v for k, v in stats["runs"].items() if v} == dict(counts)
    for state in aq.RunState:
        listed = {r.run_id.bytes for r in q.list_runs(state=state, limit=None)}
        assert listed == {r.id for r in all_runs if r.state == int(state)}


def test_every_task_and_run_agrees_with_the_public_api(scene: Scene) -> None:
    snap = read_snapshot(scene.path)
    assert snap.version == 4
    assert snap.log_id is not None  # a queue's snapshot names its log
    assert snap.log_id == snapshot_api.inspect(scene.path).log_id
    assert snap.paused_at == scene.clock.now()
    agree(snap, scene.q, scene.tasks.values())


def test_later_snapshots_after_more_work_and_a_prune(scene: Scene) -> None:
    """Records frozen by an earlier snapshot stay cold in later ones, next to those that
    finished since (they need not be in creation order across the two); pruned records are
    gone and a pruned run leaves its task's run list."""
    q, clock, t = scene.q, scene.clock, dict(scene.tasks)
    q.resume()
    q.retry_now(q.runs(t["suspend"])[0].run_id)  # the Suspended run ends now
    clock.advance(3_600_000)  # "later", the repeat's second run and "wait"'s retry
    q.run_until_idle()
    info = q.snapshot()
    assert info is not None
    second = read_snapshot(info.path)
    agree(second, q, t.values())
    # (here the runs frozen by the first snapshot come first: not in creation order)
    seqs = [second.cold.run_at(i).created_seq for i in range(second.cold.n_runs)]
    assert sorted(seqs) == sorted(set(seqs))
    clock.advance(60_000)
    q.prune(30)  # everything that ended before this hour
    t["new"] = q.submit("ok", "after the prune")
    q.run_until_idle()
    info = q.snapshot()
    assert info is not None
    third = read_snapshot(info.path)
    agree(third, q, t.values())
    assert third.cold.n_runs < second.cold.n_runs
    rep = third.task(t["repeat"].bytes)
    assert rep is not None
    assert rep.runs_created == 3
    (left,) = third.run_ids(rep.id)  # runs 0 and 1 were pruned
    run = third.run(left)
    assert run is not None
    assert run == second.run(left)
    assert run.ordinal == 2


def test_the_scene_covers_every_shape(scene: Scene) -> None:
    """What the comparison above relies on: all kinds of runs really are in the image."""
    snap = read_snapshot(scene.path)
    states = {r.state for r in snap.all_runs()}
    assert states == set(range(9))
    assert snap.cold.n_runs >= 5
    assert snap.cold.n_tasks >= 3
    assert snap.runs
    assert snap.tasks
    assert any(r.lease is not None and r.current_attempt is not None for r in snap.runs)
    assert any(a.output is not None for r in snap.all_runs() for a in r.attempts)
    assert any(a.error is not None for r in snap.all_runs() for a in r.attempts)
    assert any(len(r.attempts) > 1 for r in snap.all_runs())
    kinds = {task.spec[4][0][0] for task in snap.all_tasks()}
    assert kinds == {0, 1, 2}
    canceled = snap.task(scene.tasks["cancel"].bytes)
    assert canceled is not None
    assert canceled.cancel_reason == "not wanted"
    # the cold finished tasks are the finished ones (Once, done) and looked up by id
    ok = snap.cold.task(scene.tasks["ok"].bytes)
    assert ok is not None
    assert ok.task.spec[6] == (5, ["a", "b"], "first")
    assert ok.task.spec[7] == "k1"


def test_empty_and_larger_snapshots(data_dir: Path) -> None:
    """No cold record (one-slot tables, k = 0), then 600 of each kind (k = 11): probing
    through collisions and wrap-arounds finds every record."""
    q = aq.ActionQueue.open(data_dir, clock=aq.ManualClock(T0), snapshot_on_close=False)
    try:
        q.register("ok", lambda ctx, payload: payload)
        info = q.snapshot()
        assert info is not None
        empty = read_snapshot(info.path)
        assert (empty.tasks, empty.runs, empty.paused_at) == ([], [], None)
        assert (empty.cold.n_tasks, empty.cold.n_runs, empty.cold.kt, empty.cold.kr) == (0,) * 4
        assert empty.cold.task_table == empty.cold.run_table == [0]
        ids = q.submit_many("ok", range(600))
        hot = q.submit("ok", "not yet", delay=60)
        q.run_until_idle()
        info = q.snapshot()
        assert info is not None
        snap = read_snapshot(info.path)
        assert (snap.cold.n_tasks, snap.cold.n_runs, snap.cold.kt, snap.cold.kr) == (
            600,
            600,
            11,
            11,
        )
        agree(snap, q, [*ids, hot])
        cold = snap.cold
        slot_of = {v - 1: slot for slot, v in enumerate(cold.run_table) if v}
        moved = [
            (slot_of[i] - first_slot(id_hash(cold.run_id_at(i), cold.seed), 11)) % 2048
            for i in range(600)
        ]
        assert max(moved) > 0  # some records sit past their first slot (collisions)
    finally:
        q.close()


def test_unknown_ids_are_not_found(scene: Scene) -> None:
    snap = read_snapshot(scene.path)
    for i in range(200):
        ghost = i.to_bytes(16, "little")
        assert snap.cold.find_task(ghost) is None
        assert snap.cold.find_run(ghost) is None
        assert snap.run(ghost) is None


def test_the_tables_are_as_documented(scene: Scene) -> None:
    """Each cold record sits in its table where linear probing from the top k bits of its
    hash reaches it first, without passing an empty slot; the rest of the table is empty."""
    snap = read_snapshot(scene.path)
    cold = snap.cold
    assert cold.seed == table_seed(snap.sequence)
    for table, k, n, id_at in (
        (cold.task_table, cold.kt, cold.n_tasks, cold.task_id_at),
        (cold.run_table, cold.kr, cold.n_runs, cold.run_id_at),
    ):
        assert k == table_bits(n)
        assert sorted(v for v in table if v) == list(range(1, n + 1))
        for i in range(n):
            slot = first_slot(id_hash(id_at(i), cold.seed), k)
            while table[slot] != i + 1:
                assert table[slot] != 0
                slot = (slot + 1) % len(table)


def test_a_reopened_queue_loads_what_the_reader_read(scene: Scene) -> None:
    """Reopening loads the snapshot (and replays nothing after it but the close's events):
    the runs the reader decoded from the file are the reopened queue's."""
    before = {r.id: as_run_instance(r) for r in read_snapshot(scene.path).all_runs()}
    scene.q.close(drain=False)
    q = aq.ActionQueue.open(scene.q.path, clock=scene.clock, snapshot_on_close=False)
    try:
        assert q.recovery.snapshot_path == str(scene.path)
        assert q.paused
        for rid, run in before.items():
            if run.state is aq.RunState.RUNNING:  # handed back at close or swept at open
                continue
            assert q.get_run(aq.RunId.from_bytes(rid)) == run
    finally:
        q.close(drain=False)


def rewrite(path: Path, version: int, sequence: int, body: bytes) -> None:
    """Writes ``body`` to ``path`` under a fresh, valid header."""
    head = struct.pack(
        "<8sIIQQI", b"AQSNAPSH", version, 0, sequence, len(body), crc32c.crc32c(body)
    )
    path.write_bytes(head + struct.pack("<I", crc32c.crc32c(head)) + body)


def test_versions_3_and_2_are_the_same_without_log_id_and_tables(
    scene: Scene, tmp_path: Path
) -> None:
    """A version-3 file as §9 describes it (no log id) and a version-2 one (the cold section
    ends after the records): the reader finds the same records, and so does the core's
    loader."""
    v4 = read_snapshot(scene.path)
    data = scene.path.read_bytes()
    body = data[48:]  # without the log id
    old = tmp_path / "v3" / scene.path.name
    old.parent.mkdir()
    rewrite(old, 3, v4.sequence, body)
    v3 = read_snapshot(old)
    assert (v3.version, v3.log_id) == (3, None)
    assert v3.all_runs() == v4.all_runs()
    assert v3.all_tasks() == v4.all_tasks()
    assert snapshot_api.inspect(old).log_id is None
    assert snapshot_api.load(old).state_digest() == snapshot_api.load(scene.path).state_digest()
    records_len = struct.unpack("<Q", data[-40:-32])[0]
    cold_len = len(v3.cold.data)
    v2_body = body[: len(body) - cold_len + records_len]
    v2 = tmp_path / scene.path.name
    rewrite(v2, 2, v3.sequence, v2_body)
    snap = read_snapshot(v2)
    assert snap.version == 2
    assert snap.all_runs() == v3.all_runs()
    assert [snap.run(r.id) for r in v3.all_runs()] == v3.all_runs()
    assert snap.all_tasks() == v3.all_tasks()
    assert snapshot_api.inspect(v2).valid
    assert snapshot_api.load(v2).state_digest() == snapshot_api.load(scene.path).state_digest()


@pytest.mark.parametrize("where", ["magic", "version", "flags", "header", "body", "tail"])
def test_a_flipped_bit_is_rejected(scene: Scene, tmp_path: Path, where: str) -> None:
    data = bytearray(scene.path.read_bytes())
    pos = {"magic": 3, "version": 9, "flags": 13, "header": 20, "body": 60, "tail": -3}[where]
    data[pos] ^= 0x10
    bad = tmp_path / scene.path.name
    bad.write_bytes(bytes(data))
    with pytest.raises(SnapshotFormatError):
        read_snapshot(bad)
    assert not snapshot_api.inspect(bad).valid


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("version 1", "unsupported version 1"),
        ("version 5", "unsupported version 5"),
        ("flags 1", "flags 0x1"),
        ("sequence 5", "image sequence"),
    ],
)
def test_a_checksummed_header_is_still_checked(
    scene: Scene, tmp_path: Path, field: str, reason: str
) -> None:
    name, value = field.split()
    data = scene.path.read_bytes()
    snap = read_snapshot(scene.path)
    version = int(value) if name == "version" else 4
    sequence = int(value) if name == "sequence" else snap.sequence
    bad = tmp_path / "snapshot.aqs"  # no sequence in the name: only the header's counts
    rewrite(bad, version, sequence, data[40:])
    if name == "flags":
        head = bytearray(bad.read_bytes()[:40])
        head[12] = 1
        head[36:40] = struct.pack("<I", crc32c.crc32c(bytes(head[:36])))
        bad.write_bytes(bytes(head) + data[40:])
    with pytest.raises(SnapshotFormatError, match=reason):
        read_snapshot(bad)
    assert not snapshot_api.inspect(bad).valid


@pytest.mark.parametrize("cut", [1, 40, 200])
def test_a_truncated_file_is_rejected(scene: Scene, tmp_path: Path, cut: int) -> None:
    data = scene.path.read_bytes()
    bad = tmp_path / scene.path.name
    bad.write_bytes(data[:-cut])
    with pytest.raises(SnapshotFormatError, match="header says"):
        read_snapshot(bad)


def test_a_valid_crc_does_not_hide_a_bad_layout(scene: Scene, tmp_path: Path) -> None:
    """Checks past the checksums: a table with a wrong size, an offset that misses its record
    (each re-checksummed so that only the layout is wrong)."""
    data = scene.path.read_bytes()
    body = data[40:]
    snap = read_snapshot(scene.path)
    trailer = bytearray(body[-40:])
    cases = {}
    kt = bytearray(trailer)
    kt[32] += 1
    cases["table sizes"] = body[:-40] + bytes(kt)
    cold_start = len(body) - len(snap.cold.data)
    records_len = struct.unpack("<Q", trailer[:8])[0]
    moved = bytearray(body)
    moved[cold_start + records_len] ^= 1  # the first task record's offset
    cases["offsets"] = bytes(moved)
    for reason, b in cases.items():
        bad = tmp_path / scene.path.name
        rewrite(bad, 4, snap.sequence, b)
        with pytest.raises(SnapshotFormatError, match=reason):
            read_snapshot(bad)
        assert not snapshot_api.inspect(bad).valid


def test_another_seed_only_hides_records(scene: Scene, tmp_path: Path) -> None:
    """Lookups hash with the trailer's seed. With another one (re-checksummed) records are
    missed, never confused; a hot task's run list naming a cold run the tables now hide
    makes the file refused. (Ids are random: the seed is chosen so that it hides that run.)"""
    data = scene.path.read_bytes()
    snap = read_snapshot(scene.path)
    cold = snap.cold
    (target,) = [i for i in snap.run_ids(scene.tasks["repeat"].bytes) if cold.find_run(i)]
    for flip in range(1, 1000):
        trailer = bytearray(data[-40:])
        trailer[24:32] = struct.pack("<Q", cold.seed ^ flip)
        other = ColdSection("x", cold.data[:-40] + bytes(trailer), 3)
        if other.find_run(target) is None:
            break
    assert other.find_run(target) is None
    found = [other.find_run(cold.run_id_at(i)) for i in range(cold.n_runs)]
    assert all(f in (None, i) for i, f in enumerate(found))
    bad = tmp_path / scene.path.name
    rewrite(bad, 4, snap.sequence, data[40:-40] + bytes(trailer))
    with pytest.raises(SnapshotFormatError, match="run list names a run that is not held"):
        read_snapshot(bad)


def test_a_slot_naming_no_record_is_passed_over(scene: Scene) -> None:
    """A slot above the record count hides the record it replaced; the records after it in
    its probe chain are still found."""
    cold = read_snapshot(scene.path).cold
    data = bytearray(cold.data)
    run_slots = len(data) - 40 - 4 * len(cold.run_table)
    slot = next(i for i, v in enumerate(cold.run_table) if v)
    hidden = cold.run_table[slot] - 1
    data[run_slots + 4 * slot : run_slots + 4 * slot + 4] = struct.pack("<I", cold.n_runs + 7)
    other = ColdSection("x", bytes(data), 3)
    assert other.run_table[slot] == cold.n_runs + 7
    found = [other.find_run(cold.run_id_at(i)) for i in range(cold.n_runs)]
    assert found == [None if i == hidden else i for i in range(cold.n_runs)]
