"""Raw ``sqlite3`` in WAL mode: the floor every SQLite-based peer stands on.

One row per transaction (``INSERT`` in autocommit), a 1000-row transaction for batches, and a
claim/complete drain of two transactions per item (mark claimed, then delete), the shape a
crash-safe "ack" queue needs. Threads share one connection behind a lock, as persist-queue
and huey do: separate connections would hit SQLite's busy handler, which sleeps in
millisecond steps under write contention and measures the sleep, not the disk.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from actionqueue.bench.baselines import BATCH_1000, FDATASYNC_PER_OP, NO_SYNC
from actionqueue.bench.durability import Durability
from actionqueue.bench.peers._sqlite import pragmas
from actionqueue.bench.timing import Op, time_calls, time_threads
from actionqueue.bench.workload import RunContext, Sample, SizeClass, System, Workload

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS queue ("
    "id INTEGER PRIMARY KEY, status INTEGER NOT NULL DEFAULT 0, payload BLOB NOT NULL)"
)


def connect(workdir: Path, synchronous: str) -> sqlite3.Connection:
    """An autocommit WAL-mode connection with the given synchronous level and the table."""
    # isolation_level=None: autocommit, so every bare INSERT is its own transaction and we
    # issue BEGIN/COMMIT explicitly where a transaction spans several statements.
    conn = sqlite3.connect(workdir / "queue.db", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(_SCHEMA)
    return conn


def _system(synchronous: str) -> System:
    promise = (
        "fsync of the WAL on every commit"
        if synchronous == "FULL"
        else "no fsync on commit (WAL synced at checkpoints only)"
    )

    def probe(workdir: Path) -> dict[str, str]:
        conn = connect(workdir, synchronous)
        try:
            return pragmas(conn)
        finally:
            conn.close()

    return System(
        name=f"sqlite3 WAL {synchronous}",
        durability_evidence=(
            f"journal_mode=WAL, synchronous={synchronous} set by the harness: {promise}."
        ),
        requires=("sqlite3",),
        probe=probe,
    )


FULL = _system("FULL")
NORMAL = _system("NORMAL")


def _submit(synchronous: str, threads: int) -> Callable[[RunContext], Sample]:
    def run(ctx: RunContext) -> Sample:
        conn = connect(ctx.workdir, synchronous)
        lock = threading.Lock()
        payload = ctx.payload
        try:

            def make_op(_thread: int) -> Op:
                def op(_i: int) -> None:
                    with lock:
                        conn.execute("INSERT INTO queue(payload) VALUES (?)", (payload,))

                return op

            return time_threads(make_op, threads, ctx.ops)
        finally:
            conn.close()

    return run


def _submit_batch(synchronous: str, size: int) -> Callable[[RunContext], Sample]:
    def run(ctx: RunContext) -> Sample:
        conn = connect(ctx.workdir, synchronous)
        rows = [(ctx.payload,)] * size
        try:

            def op(_i: int) -> None:
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO queue(payload) VALUES (?)", rows)
                conn.execute("COMMIT")

            return time_calls(op, ctx.ops, records_per_call=size)
        finally:
            conn.close()

    return run


def _claim_complete(synchronous: str) -> Callable[[RunContext], Sample]:
    def run(ctx: RunContext) -> Sample:
        conn = connect(ctx.workdir, synchronous)
        try:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO queue(payload) VALUES (?)", [(ctx.payload,)] * ctx.ops)
            conn.execute("COMMIT")

            def op(_i: int) -> None:
                # Claim: one durable transaction marks the oldest ready row in flight...
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute(
                    "SELECT id, payload FROM queue WHERE status = 0 ORDER BY id LIMIT 1"
                ).fetchone()
                conn.execute("UPDATE queue SET status = 1 WHERE id = ?", (row[0],))
                conn.execute("COMMIT")
                # ...complete: a second one removes it once the (no-op) work is done.
                conn.execute("DELETE FROM queue WHERE id = ?", (row[0],))

            return time_calls(op, ctx.ops)
        finally:
            conn.close()

    return run


def workloads() -> list[Workload]:
    """Raw sqlite3 workloads for synchronous FULL and NORMAL."""
    out: list[Workload] = []
    for synchronous, system in (("FULL", FULL), ("NORMAL", NORMAL)):
        durable = synchronous == "FULL"
        per_op = Durability.FSYNC_PER_OP if durable else Durability.OS_BUFFERED
        size = SizeClass.DURABLE if durable else SizeClass.BUFFERED
        base = FDATASYNC_PER_OP if durable else NO_SYNC
        prefix = f"sqlite3-wal-{synchronous.lower()}"
        out += [
            Workload(
                name=f"{prefix}.submit.t{t}",
                system=system,
                kind="submit",
                durability=per_op,
                run=_submit(synchronous, t),
                size=size,
                threads=t,
                baseline=base,
                note="one INSERT per transaction" + ("" if t == 1 else "; shared conn + lock"),
            )
            for t in (1, 8, 32)
        ]
        out.append(
            Workload(
                name=f"{prefix}.submit-batch-1000",
                system=system,
                kind="submit-batch",
                durability=Durability.FSYNC_PER_BATCH if durable else Durability.OS_BUFFERED,
                run=_submit_batch(synchronous, 1000),
                size=SizeClass.BATCHES,
                batch=1000,
                baseline=BATCH_1000 if durable else NO_SYNC,
                note="executemany of 1000 rows in one transaction",
            )
        )
        out.append(
            Workload(
                name=f"{prefix}.claim-complete",
                system=system,
                kind="claim-complete",
                durability=per_op,
                run=_claim_complete(synchronous),
                size=size,
                baseline=base,
                note="2 transactions per item: mark claimed, delete",
            )
        )
    return out
