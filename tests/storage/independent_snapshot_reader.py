"""An independent reader of snapshot files, written from docs/FORMAT.md §9 alone.

Pure Python plus the ``crc32c`` package; it shares no code with the Rust implementation (only
the postcard helpers of ``independent_reader``, themselves written from FORMAT.md §3). It
checks everything the document says a reader checks, decodes the hot image, and looks cold
records up by id through the section's hash tables (versions 3 and 4) the way the document
describes, so a snapshot it reads identically to the public API proves the document complete
and the writer faithful to it. It also checks every consistency rule of §9 at load, decoding
every cold record to do so (stricter than the reference reader, which decodes a cold record
when it is asked for: fine for test-sized files).

Spec tuples are the ``TaskSpec`` wire tuples of ``independent_reader.decode_spec``; ids are
16-byte ``bytes``; states and outcomes their §3 variant indices.
"""

from __future__ import annotations

import itertools
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import crc32c
from independent_reader import Cursor, decode_spec

MAGIC = b"AQSNAPSH"
HEADER = 40
TRAILER = 40
NAME = re.compile(r"^snapshot-(\d{20})\.aqs$")
MASK64 = (1 << 64) - 1
SEED_SALT = 0x61715F636F6C6473
TERMINAL = (6, 7, 8)  # RunState Completed, Failed, Canceled


class SnapshotFormatError(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class Lease:
    owner: str
    expires_at: int
    acquired_at: int


@dataclass(frozen=True)
class StateChange:
    from_state: int
    to_state: int
    at: int
    reason: str | None


@dataclass(frozen=True)
class Attempt:
    id: bytes
    started_at: int
    finished_at: int | None
    outcome: int | None
    error: str | None
    output: bytes | None


@dataclass(frozen=True)
class Task:
    spec: tuple[Any, ...]
    origin: int
    created_at: int
    created_seq: int
    canceled_at: int | None
    cancel_reason: str | None
    runs_created: int
    finished_at: int | None

    @property
    def id(self) -> bytes:
        return bytes(self.spec[0])


@dataclass(frozen=True)
class Run:
    id: bytes
    task_id: bytes
    state: int
    ordinal: int
    scheduled_at: int
    created_at: int
    created_seq: int
    attempt_count: int
    current_attempt: bytes | None
    effective_priority: int
    last_state_change_at: int
    not_before: int | None
    lease: Lease | None
    history: tuple[StateChange, ...]
    attempts: tuple[Attempt, ...]


# --- postcard decoding of the image types (FORMAT.md §9 "Hot image") ------------------------


def _id(c: Cursor) -> bytes:
    return bytes(c.id())


def decode_task(c: Cursor) -> Task:
    return Task(
        spec=decode_spec(c),
        origin=c.i64(),
        created_at=c.i64(),
        created_seq=c.varint(64),
        canceled_at=c.option(c.i64),
        cancel_reason=c.option(c.string),
        runs_created=c.u32(),
        finished_at=c.option(c.i64),
    )


def _lease(c: Cursor) -> Lease:
    return Lease(c.string(), c.i64(), c.i64())


def _state_change(c: Cursor) -> StateChange:
    return StateChange(c.enum(9), c.enum(9), c.i64(), c.option(c.string))


def _attempt(c: Cursor) -> Attempt:
    return Attempt(
        _id(c),
        c.i64(),
        c.option(c.i64),
        c.option(lambda: c.enum(7)),
        c.option(c.string),
        c.option(c.bytes_),
    )


def _vec(c: Cursor, read: Any) -> list[Any]:
    return [read(c) for _ in range(c.varint(64))]


def decode_run(c: Cursor) -> Run:
    return Run(
        id=_id(c),
        task_id=_id(c),
        state=c.enum(9),
        ordinal=c.u32(),
        scheduled_at=c.i64(),
        created_at=c.i64(),
        created_seq=c.varint(64),
        attempt_count=c.u32(),
        current_attempt=c.option(lambda: _id(c)),
        effective_priority=c.i32(),
        last_state_change_at=c.i64(),
        not_before=c.option(c.i64),
        lease=c.option(lambda: _lease(c)),
        history=tuple(_vec(c, _state_change)),
        attempts=tuple(_vec(c, _attempt)),
    )


def _exactly(data: bytes, decode: Any) -> Any:
    c = Cursor(data)
    value = decode(c)
    if c.pos != len(data):
        raise ValueError("trailing bytes after record body")
    return value


# --- the table hash (FORMAT.md §9 "Tables") ---------------------------------------------------


def mix(z: int) -> int:
    z &= MASK64
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & MASK64
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def id_hash(id_: bytes, seed: int) -> int:
    lo, hi = struct.unpack("<QQ", id_)
    return mix(lo ^ mix(hi ^ seed))


def table_seed(sequence: int) -> int:
    return mix(sequence ^ SEED_SALT)


def table_bits(n: int) -> int:
    """k such that 2^k is the smallest power of two >= max(1, 2n)."""
    need, k = max(1, 2 * n), 0
    while (1 << k) < need:
        k += 1
    return k


def first_slot(h: int, k: int) -> int:
    return 0 if k == 0 else h >> (64 - k)


# --- the cold section ------------------------------------------------------------------------


@dataclass(frozen=True)
class ColdTask:
    """A task record's head and body: ``runs`` is its run list (ids, by ordinal)."""

    created_seq: int
    finished_at: int
    task: Task
    runs: tuple[bytes, ...]


class ColdSection:
    """The cold records, used in place: a record is decoded only when asked for."""

    def __init__(self, path: str, data: bytes, version: int) -> None:
        self.path, self.data, self.version = path, data, version
        self.task_table: list[int] = []
        self.run_table: list[int] = []
        self.kt = self.kr = 0
        self.seed = 0  # the trailer's: lookups hash with it
        records_end = self._parse_records()
        if version == 2:
            if records_end != len(data):
                self._bad("version 2 cold section does not end after its records")
            # No tables: id maps are built at load, as the document says.
            self._task_map = {self.task_id_at(i): i for i in range(self.n_tasks)}
            self._run_map = {self.run_id_at(i): i for i in range(self.n_runs)}
            return
        self._parse_tables(records_end)

    def _bad(self, reason: str) -> NoReturn:
        raise SnapshotFormatError(self.path, reason)

    def _parse_records(self) -> int:
        c = Cursor(self.data)
        try:
            self.task_offsets: list[int] = []
            self.task_heads: list[tuple[int, int, int, int, int]] = []
            for _ in range(c.varint(64)):
                self.task_offsets.append(c.pos)
                length = c.varint(64)
                seq, finished, n = struct.unpack("<QqI", c.take(20))
                body = c.pos
                c.take(length)
                c.take(16 * n)
                # (created_seq, finished_at, n, body offset, body length)
                self.task_heads.append((seq, finished, n, body, length))
            self.run_offsets: list[int] = []
            self.run_bodies: list[tuple[int, int]] = []
            for _ in range(c.varint(64)):
                self.run_offsets.append(c.pos)
                length = c.varint(64)
                self.run_bodies.append((c.pos, length))
                c.take(length)
        except ValueError as e:
            self._bad(f"cold records: {e}")
        return c.pos

    def _parse_tables(self, records_end: int) -> None:
        data = self.data
        if len(data) < TRAILER:
            self._bad("cold section shorter than its trailer")
        records_len, n_tasks, n_runs, seed, kt, kr = struct.unpack("<QQQQII", data[-TRAILER:])
        if records_len != records_end:
            self._bad(f"records_len {records_len} != records parsed {records_end}")
        if (n_tasks, n_runs) != (len(self.task_offsets), len(self.run_offsets)):
            self._bad("trailer counts disagree with the records")
        if kt > 32 or kr > 32 or kt != table_bits(n_tasks) or kr != table_bits(n_runs):
            self._bad(f"table sizes 2^{kt}, 2^{kr} wrong for {n_tasks} tasks, {n_runs} runs")
        expect = records_len + 8 * (n_tasks + n_runs) + 4 * ((1 << kt) + (1 << kr)) + TRAILER
        if expect != len(data):
            self._bad(f"cold section is {len(data)} bytes, its parts {expect}")
        self.kt, self.kr, self.seed = kt, kr, seed
        pos = records_len
        stored_t = list(struct.unpack_from(f"<{n_tasks}Q", data, pos))
        pos += 8 * n_tasks
        stored_r = list(struct.unpack_from(f"<{n_runs}Q", data, pos))
        pos += 8 * n_runs
        if stored_t != self.task_offsets or stored_r != self.run_offsets:
            self._bad("record offsets disagree with where the records start")
        self.task_table = list(struct.unpack_from(f"<{1 << kt}I", data, pos))
        pos += 4 << kt
        self.run_table = list(struct.unpack_from(f"<{1 << kr}I", data, pos))

    # --- records ---

    def task_at(self, i: int) -> ColdTask:
        seq, finished, n, body, length = self.task_heads[i]
        try:
            task = _exactly(self.data[body : body + length], decode_task)
        except (ValueError, UnicodeDecodeError) as e:
            raise SnapshotFormatError(self.path, f"cold task {i}: {e}") from e
        start = body + length
        runs = tuple(self.data[start + 16 * j : start + 16 * (j + 1)] for j in range(n))
        return ColdTask(seq, finished, task, runs)

    def run_at(self, i: int) -> Run:
        body, length = self.run_bodies[i]
        try:
            run: Run = _exactly(self.data[body : body + length], decode_run)
        except (ValueError, UnicodeDecodeError) as e:
            raise SnapshotFormatError(self.path, f"cold run {i}: {e}") from e
        return run

    def task_id_at(self, i: int) -> bytes:
        body = self.task_heads[i][3]
        return self.data[body : body + 16]  # TaskSpec's first field

    def run_id_at(self, i: int) -> bytes:
        body = self.run_bodies[i][0]
        return self.data[body : body + 16]  # Run's first field

    @property
    def n_tasks(self) -> int:
        return len(self.task_heads)

    @property
    def n_runs(self) -> int:
        return len(self.run_bodies)

    # --- lookups through the tables (version 3), or a scan (version 2) ---

    def _probe(self, table: list[int], k: int, n: int, id_: bytes) -> Iterator[int]:
        """Slots' record numbers from the first probed slot on, until an empty slot (a
        number above ``n`` names no record: passed over)."""
        slot, size = first_slot(id_hash(id_, self.seed), k), 1 << k
        for _ in range(size):
            v = table[slot]
            if v == 0:
                return
            if v <= n:
                yield v - 1
            slot = (slot + 1) & (size - 1)

    def find_task(self, id_: bytes) -> int | None:
        if self.version == 2:
            return self._task_map.get(id_)
        for i in self._probe(self.task_table, self.kt, self.n_tasks, id_):
            if self.task_id_at(i) == id_:
                return i
        return None

    def find_run(self, id_: bytes) -> int | None:
        if self.version == 2:
            return self._run_map.get(id_)
        for i in self._probe(self.run_table, self.kr, self.n_runs, id_):
            if self.run_id_at(i) == id_:
                return i
        return None

    def task(self, id_: bytes) -> ColdTask | None:
        i = self.find_task(id_)
        return None if i is None else self.task_at(i)

    def run(self, id_: bytes) -> Run | None:
        i = self.find_run(id_)
        return None if i is None else self.run_at(i)


# --- the file --------------------------------------------------------------------------------


@dataclass
class Snapshot:
    path: str
    version: int
    #: the ``wal_id`` of the log the snapshot names (version 4; None: bound to no log)
    log_id: int | None
    sequence: int
    paused_at: int | None
    tasks: list[Task]
    runs: list[Run]
    task_runs: list[list[bytes]]
    cold: ColdSection

    def task(self, id_: bytes) -> Task | None:
        for t in self.tasks:
            if t.id == id_:
                return t
        ct = self.cold.task(id_)
        return None if ct is None else ct.task

    def run(self, id_: bytes) -> Run | None:
        for r in self.runs:
            if r.id == id_:
                return r
        return self.cold.run(id_)

    def run_ids(self, task_id: bytes) -> list[bytes]:
        """The task's run list (by ordinal), hot or cold."""
        for t, ids in zip(self.tasks, self.task_runs, strict=True):
            if t.id == task_id:
                return ids
        ct = self.cold.task(task_id)
        return [] if ct is None else list(ct.runs)

    def all_tasks(self) -> list[Task]:
        return self.tasks + [self.cold.task_at(i).task for i in range(self.cold.n_tasks)]

    def all_runs(self) -> list[Run]:
        return self.runs + [self.cold.run_at(i) for i in range(self.cold.n_runs)]


def decode_hot(c: Cursor) -> tuple[int, int | None, list[Task], list[Run], list[list[bytes]]]:
    sequence = c.varint(64)
    paused_at = c.option(c.i64)
    tasks = _vec(c, decode_task)
    runs = _vec(c, decode_run)
    task_runs = _vec(c, lambda c: _vec(c, _id))
    return sequence, paused_at, tasks, runs, task_runs


def read_snapshot(path: str | Path) -> Snapshot:
    """Reads and checks one snapshot file; raises SnapshotFormatError on anything wrong."""
    p = str(path)
    data = Path(path).read_bytes()

    def bad(reason: str) -> SnapshotFormatError:
        return SnapshotFormatError(p, reason)

    if len(data) < HEADER:
        raise bad("shorter than the header")
    magic, version, flags, sequence, body_len, body_crc, header_crc = struct.unpack(
        "<8sIIQQII", data[:HEADER]
    )
    if magic != MAGIC:
        raise bad("bad magic")
    if crc32c.crc32c(data[:36]) != header_crc:
        raise bad("header crc mismatch")
    if version not in (2, 3, 4):
        raise bad(f"unsupported version {version}")
    if flags != 0:
        raise bad(f"flags {flags:#x}")
    if len(data) != HEADER + body_len:
        raise bad(f"file is {len(data)} bytes, header says {HEADER + body_len}")
    body = data[HEADER:]
    if crc32c.crc32c(body) != body_crc:
        raise bad("body crc mismatch")
    m = NAME.match(Path(path).name)
    if m and int(m.group(1)) != sequence:
        raise bad(f"name says sequence {int(m.group(1))}, header {sequence}")

    log_id = None
    if version >= 4:
        if len(body) < 8:
            raise bad("body shorter than the log id")
        log_id = int.from_bytes(body[:8], "little") or None
        body = body[8:]
    c = Cursor(body)
    try:
        image_seq, paused_at, tasks, runs, task_runs = decode_hot(c)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(f"hot image: {e}") from e
    if image_seq != sequence:
        raise bad(f"image sequence {image_seq} != header {sequence}")
    if len(task_runs) != len(tasks):
        raise bad("task_runs does not match tasks")
    for seqs in ([t.created_seq for t in tasks], [r.created_seq for r in runs]):
        if any(a >= b for a, b in itertools.pairwise(seqs)):
            raise bad("hot records not in creation order")
    cold = ColdSection(p, body[c.pos :], version)
    snap = Snapshot(p, version, log_id, sequence, paused_at, tasks, runs, task_runs, cold)
    _check_parts(snap, bad)
    return snap


def total_runs(task: Task) -> int | None:
    """Runs the task's policy implies (None: unbounded)."""
    kind = task.spec[4][0]
    return 1 if kind[0] == 0 else kind[1] if kind[0] == 1 else kind[3]


def is_finished(task: Task, runs: list[Run]) -> bool:
    return task.canceled_at is not None or (
        total_runs(task) == task.runs_created and all(r.state in TERMINAL for r in runs)
    )


def holds_key(run: Run, task: Task) -> bool:
    hold = task.spec[5][3]  # HoldPolicy: 0 HoldDuringRetry
    return task.spec[5][2] is not None and (
        run.state in (2, 3) or (run.state in (4, 5) and hold == 0)
    )


def _check_parts(snap: Snapshot, bad: Any) -> None:
    """The consistency rules of FORMAT.md §9. Every cold record is decoded here (a test
    reader: files are small); lookups still go through the tables."""
    cold, seq = snap.cold, snap.sequence
    if any(cold.find_task(t.id) is not None for t in snap.tasks):
        raise bad("a task is both hot and cold")
    if any(cold.find_run(r.id) is not None for r in snap.runs):
        raise bad("a run is both hot and cold")
    if any(r.state in TERMINAL for r in snap.runs):
        raise bad("a terminal run in the hot image")
    cold_tasks = [cold.task_at(i) for i in range(cold.n_tasks)]
    cold_runs = [cold.run_at(i) for i in range(cold.n_runs)]
    for i, ct in enumerate(cold_tasks):
        if ct.task.id != cold.task_id_at(i) or ct.task.finished_at is None:
            raise bad("a cold task record is inconsistent")
        if (ct.created_seq, ct.finished_at) != (ct.task.created_seq, ct.task.finished_at):
            raise bad("a cold task's head differs from its body")
    tasks = {t.id: t for t in snap.tasks} | {ct.task.id: ct.task for ct in cold_tasks}
    runs = {r.id: r for r in snap.runs} | {r.id: r for r in cold_runs}
    if len(tasks) != len(snap.tasks) + len(cold_tasks):
        raise bad("a task appears twice")
    if len(runs) != len(snap.runs) + len(cold_runs):
        raise bad("a run appears twice")
    hot_ids = {t.id for t in snap.tasks}
    lists = dict(zip((t.id for t in snap.tasks), snap.task_runs, strict=True))
    lists |= {ct.task.id: list(ct.runs) for ct in cold_tasks}
    listed = 0
    for tid, ids in lists.items():
        task = tasks[tid]
        ordinals = []
        for id_ in ids:
            run = runs.get(id_)
            if run is None or run.task_id != tid:
                raise bad("a run list names a run that is not held or not the task's")
            if tid in hot_ids and snap.run(id_) != run:
                raise bad("a hot task's run list names a run that is not held")
            ordinals.append(run.ordinal)
        if any(a >= b for a, b in itertools.pairwise(ordinals)) or any(
            o >= task.runs_created for o in ordinals
        ):
            raise bad("a run list out of ordinal order or beyond runs_created")
        listed += len(ids)
        mine = [runs[i] for i in ids]
        if is_finished(task, mine) != (task.finished_at is not None):
            raise bad("finished_at does not say whether the task is finished")
        if (tid in hot_ids) == (task.finished_at is not None):
            raise bad("a finished task in the hot image or an unfinished one cold")
        if task.canceled_at is not None and any(r.state not in TERMINAL for r in mine):
            raise bad("a canceled task with a non-terminal run")
    if listed != len(runs):
        raise bad("a run missing from its task's run list")
    holders: dict[str, bytes] = {}
    for run in runs.values():
        task = tasks[run.task_id]
        if not task.created_seq <= run.created_seq <= seq or task.created_seq > seq:
            raise bad("an impossible creation sequence")
        if run.lease is not None and run.state not in (2, 3):
            raise bad("a lease on a run that is neither Leased nor Running")
        if (run.not_before is not None) != (run.state == 4):
            raise bad("not_before set outside RetryWait")
        if run.current_attempt is not None and (
            run.state != 3
            or not run.attempts
            or run.attempts[-1].id != run.current_attempt
            or run.attempts[-1].outcome is not None
        ):
            raise bad("an inconsistent open attempt")
        if holds_key(run, task):
            key = task.spec[5][2]
            if key in holders:
                raise bad(f"two runs hold the concurrency key {key!r}")
            holders[key] = run.id
    dedupe = [t.spec[7] for t in snap.tasks if t.spec[7] is not None]
    if len(dedupe) != len(set(dedupe)):
        raise bad("a dedupe key held by two unfinished tasks")
