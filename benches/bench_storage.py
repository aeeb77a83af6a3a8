"""The mutation authority and recovery, next to baselines measured in the same run (release
build):

    pip install -e . && python -m pytest benches/bench_storage.py -q -p no:randomly
    AQ_BENCH_1M=1 python -m pytest benches/bench_storage.py -q -k snapshot   # + 1M runs

Figures land in ``conftest.py``'s "storage" summary with their ratios: the authority's
Immediate submit against raw ``write+fdatasync`` and against the WAL alone, group commit
against one thread, Deferred against the WAL alone, replay against verification, snapshot
write/load and restart times and sizes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actionqueue.core.ids import AttemptId, RunId, TaskId
from actionqueue.core.mutation import DurabilityPolicy, TaskCreateCommand
from actionqueue.core.task.run_policy import RunPolicy
from actionqueue.core.task.task_spec import TaskPayload, TaskSpec
from actionqueue.storage import snapshot
from actionqueue.storage.recovery import bootstrap
from actionqueue.storage.wal import WalFsWriter, verify
from conftest import STORAGE

IMM = DurabilityPolicy.IMMEDIATE
DEF = DurabilityPolicy.DEFERRED
T0 = 1_700_000_000_000
ONCE = RunPolicy.once().to_wire()
SPEC_TAIL = TaskSpec(TaskId.new(), TaskPayload(b"p" * 40), RunPolicy.once()).to_wire()[1:]


def task_create(i: int) -> tuple[Any, ...]:
    """A TaskCreate wire tuple with a fresh id (~110-byte record, like SPEC §10's raw one)."""
    return (0, (TaskId.new().bytes, *SPEC_TAIL), T0 + i, T0 + i)


def lifecycle(i: int) -> list[list[tuple[Any, ...]]]:
    """The three records of a finished run: create+promote, dispatch, complete."""
    t, r, a = TaskId.new().bytes, RunId.new().bytes, AttemptId.new().bytes
    at = T0 + i
    return [
        [
            (0, (t, *SPEC_TAIL), at, at),
            (1, r, t, 0, at, at),
            (2, r, 0, 1, None, None, at),
        ],
        [
            (2, r, 1, 2, None, None, at),
            (5, r, "worker", at + 30_000, at),
            (2, r, 2, 3, None, None, at),
            (3, r, a, at),
        ],
        [(4, r, a, 0, None, None, at + 1), (2, r, 3, 6, None, None, at + 1)],
    ]


def once(benchmark: Any, fn: Callable[[], object]) -> float:
    out: list[float] = []

    def run() -> None:
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    return out[-1]


def interleaved(benchmark: Any, *fns: Callable[[], object], rounds: int = 6) -> list[float]:
    """Alternates ``fns`` in short rounds so all see the same (drifting) disk; total seconds
    of each."""
    totals = [0.0] * len(fns)

    def run() -> None:
        for _ in range(rounds):
            for k, fn in enumerate(fns):
                t = time.perf_counter()
                fn()
                totals[k] += time.perf_counter() - t

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    return totals


def test_immediate_one_thread(benchmark: Any, tmp_path: Path) -> None:
    """Authority Immediate submit vs raw write+fdatasync vs the WAL alone, same record size."""
    n = 40
    auth, _ = bootstrap(tmp_path / "data", snapshot_every=0, snapshot_on_close=False)
    wal = WalFsWriter(tmp_path / "wal")
    size = 40 + len(__import__("actionqueue")._core.encode_events([task_create(0)]))
    data = b"r" * size
    fd = os.open(tmp_path / "raw", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    wires = [[task_create(i)] for i in range(6 * n + 1)]
    auth.submit_wire(wires.pop(), IMM)
    wal.append(task_create(0), "immediate")

    def raw() -> None:
        for _ in range(n):
            os.write(fd, data)
            os.fdatasync(fd)

    def wal_only() -> None:
        for i in range(n):
            wal.append(task_create(i), "immediate")

    def authority() -> None:
        for _ in range(n):
            auth.submit_wire(wires.pop(), IMM)

    try:
        raw_s, wal_s, auth_s = interleaved(benchmark, raw, wal_only, authority)
    finally:
        os.close(fd)
        wal.close()
        auth.close()
    STORAGE["raw_sync"] = 6 * n / raw_s
    STORAGE["wal_immediate_1"] = 6 * n / wal_s
    STORAGE["auth_immediate_1"] = 6 * n / auth_s


def submit_from_threads(auth: Any, threads: int, per_thread: int, durability: Any) -> None:
    """``threads`` threads, released together, each submitting ``per_thread`` TaskCreates."""
    barrier = threading.Barrier(threads)

    def run() -> None:
        wires = [[task_create(i)] for i in range(per_thread)]
        barrier.wait()
        for w in wires:
            auth.submit_wire(w, durability)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


@pytest.mark.parametrize("threads", [8, 32])
def test_immediate_many_threads(benchmark: Any, tmp_path: Path, threads: int) -> None:
    per_thread, single_n = (40, 30) if threads == 8 else (16, 30)
    auth, _ = bootstrap(tmp_path / "data", snapshot_every=0, snapshot_on_close=False)
    auth.submit_wire([task_create(0)], IMM)

    def single() -> None:
        for i in range(single_n):
            auth.submit_wire([task_create(i)], IMM)

    def many() -> None:
        submit_from_threads(auth, threads, per_thread, IMM)

    try:
        before = auth.stats()
        single_s, many_s = interleaved(benchmark, single, many)
        after = auth.stats()
    finally:
        auth.close()
    STORAGE[f"auth_immediate_1_near_{threads}"] = 6 * single_n / single_s
    STORAGE[f"auth_immediate_{threads}"] = 6 * threads * per_thread / many_s
    benchmark.extra_info["submits_per_sync"] = (after.submits - before.submits) / max(
        1, after.wal_syncs - before.wal_syncs
    )


def test_deferred_single_submits(benchmark: Any, tmp_path: Path) -> None:
    """One TaskCreate per submit, Deferred: the authority (check + append + apply) against the
    WAL's append alone, through the wire API and through typed commands."""
    n = 100_000
    wires = [[task_create(i)] for i in range(n)]
    auth, _ = bootstrap(tmp_path / "data", snapshot_every=0, snapshot_on_close=False)
    wal = WalFsWriter(tmp_path / "wal")
    wal_wires = [task_create(i) for i in range(n)]

    def wal_loop() -> None:
        append = wal.append
        for w in wal_wires:
            append(w, "deferred")

    def auth_loop() -> None:
        submit = auth.submit_wire
        for w in wires:
            submit(w, DEF)

    try:
        wal_s, auth_s = interleaved(benchmark, wal_loop, auth_loop, rounds=1)
        spec = TaskSpec(TaskId.new(), TaskPayload(b"p" * 40), RunPolicy.once())
        cmds = [
            TaskCreateCommand(None, TaskSpec(TaskId.new(), spec.payload, spec.run_policy), T0)
            for _ in range(n // 4)
        ]
        t = time.perf_counter()
        for c in cmds:
            auth.submit_command(c, DEF)
        cmd_s = time.perf_counter() - t
    finally:
        wal.close()
        auth.close()
    STORAGE["wal_deferred_1"] = n / wal_s
    STORAGE["auth_deferred_1"] = n / auth_s
    STORAGE["auth_deferred_1_commands"] = (n // 4) / cmd_s


def test_deferred_many_threads(benchmark: Any, tmp_path: Path) -> None:
    threads, per_thread = 8, 10_000
    auth, _ = bootstrap(tmp_path / "data", snapshot_every=0, snapshot_on_close=False)

    def many() -> None:
        submit_from_threads(auth, threads, per_thread, DEF)

    try:
        STORAGE["auth_deferred_8_threads"] = threads * per_thread / once(benchmark, many)
    finally:
        auth.close()


@pytest.mark.parametrize("immediate", [False, True])
def test_batches(benchmark: Any, tmp_path: Path, immediate: bool) -> None:
    """1000 single-event records per call (``submit_many_wire``) and 1000-event records."""
    auth, _ = bootstrap(tmp_path / "data", snapshot_every=0, snapshot_on_close=False)
    dur = IMM if immediate else DEF
    rounds = 50
    many = [[[task_create(i)] for i in range(1000)] for _ in range(rounds)]
    big = [[task_create(i) for i in range(1000)] for _ in range(rounds)]

    def run_many() -> None:
        for b in many:
            auth.submit_many_wire(b, dur)

    def run_big() -> None:
        for b in big:
            auth.submit_wire(b, dur)

    try:
        many_s = once(benchmark, run_many)
        t = time.perf_counter()
        run_big()
        big_s = time.perf_counter() - t
    finally:
        auth.close()
    tag = "immediate" if immediate else "deferred"
    STORAGE[f"auth_submit_many_{tag}_events"] = rounds * 1000 / many_s
    STORAGE[f"auth_batch1000_{tag}_events"] = rounds * 1000 / big_s


def build_finished(data: Path, runs: int) -> None:
    auth, _ = bootstrap(data, snapshot_every=0, snapshot_on_close=False)
    chunk: list[list[tuple[Any, ...]]] = []
    for i in range(runs):
        chunk.extend(lifecycle(i))
        if len(chunk) >= 3000:
            auth.submit_many_wire(chunk, DEF)
            chunk = []
    if chunk:
        auth.submit_many_wire(chunk, DEF)
    auth.close()


def test_replay(benchmark: Any, tmp_path: Path) -> None:
    """Full replay (no snapshot) of finished-run lifecycles vs verifying the same log."""
    runs = 50_000
    data = tmp_path / "data"
    build_finished(data, runs)
    t = time.perf_counter()
    v = verify(data / "wal")
    verify_s = time.perf_counter() - t
    holder: list[Any] = []

    def boot() -> None:
        a, r = bootstrap(data, snapshot_on_close=False)
        holder.append(r)
        a.close()

    seconds = once(benchmark, boot)
    report = holder[-1]
    assert report.snapshot_path is None
    assert report.events_replayed == v.events
    STORAGE["verify_events_rust"] = v.events / verify_s
    STORAGE["replay_events"] = report.events_replayed / (report.replay_ms / 1000 or 1e-9)
    STORAGE["bootstrap_full_replay_events"] = report.events_replayed / seconds


SIZES = [100_000] + ([1_000_000] if os.environ.get("AQ_BENCH_1M") else [])


@pytest.mark.parametrize("runs", SIZES)
def test_snapshot_and_restart(benchmark: Any, tmp_path: Path, runs: int) -> None:
    """Snapshot write, load and restart (snapshot + empty tail) with ``runs`` finished runs."""
    data = tmp_path / "data"
    build_finished(data, runs)
    auth, _ = bootstrap(data, snapshot_every=0, snapshot_on_close=False)
    t = time.perf_counter()
    info = auth.snapshot()
    write_s = time.perf_counter() - t
    auth.close()
    assert info is not None
    t = time.perf_counter()
    loaded = snapshot.load(info.path)
    load_s = time.perf_counter() - t
    assert loaded.run_count == runs
    del loaded
    holder: list[Any] = []

    def restart() -> None:
        a, r = bootstrap(data, snapshot_on_close=False)
        holder.append(r)
        a.close()

    restart_s = once(benchmark, restart)
    report = holder[-1]
    assert report.snapshot_sequence == info.sequence
    assert report.events_replayed == 0
    k = f"{runs // 1000}k"
    STORAGE[f"snapshot_write_s_{k}"] = write_s
    STORAGE[f"snapshot_load_s_{k}"] = load_s
    STORAGE[f"snapshot_bytes_{k}"] = info.bytes
    STORAGE[f"restart_s_{k}"] = restart_s
    benchmark.extra_info.update(
        snapshot_bytes=info.bytes, write_s=write_s, load_s=load_s, restart_s=restart_s
    )
