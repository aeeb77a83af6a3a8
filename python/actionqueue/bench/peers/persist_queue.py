"""persist-queue's ``SQLiteAckQueue``: put, and get + ack.

Durability, from persist-queue 1.1 ``persistqueue/sqlbase.py``: every connection runs
``PRAGMA journal_mode=WAL`` and nothing else, so ``synchronous`` is SQLite's compiled default;
``auto_commit=True`` (forced on for the ack queue) commits each put/get/ack in its own
transaction through ``with_conditional_transaction``. With the usual default
(``SQLITE_DEFAULT_WAL_SYNCHRONOUS=2``, FULL) every commit fsyncs the WAL; the probe reads the
PRAGMA from the live connection so the table says what *this* machine's SQLite does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actionqueue.bench.baselines import FDATASYNC_PER_OP
from actionqueue.bench.durability import Durability
from actionqueue.bench.peers._sqlite import pragmas
from actionqueue.bench.timing import Op, time_calls, time_threads
from actionqueue.bench.workload import RunContext, Sample, SizeClass, System, Workload


def open_queue(workdir: Path, multithreading: bool) -> Any:
    """A SQLiteAckQueue in ``workdir`` with the library's defaults (see module doc)."""
    persistqueue = importlib.import_module("persistqueue")
    # multithreading=True is the library's switch for use from several threads (a separate
    # putter connection, check_same_thread off); single-threaded runs keep its default.
    return persistqueue.SQLiteAckQueue(str(workdir / "pq"), multithreading=multithreading)


def _probe(workdir: Path) -> dict[str, str]:
    q = open_queue(workdir, multithreading=False)
    try:
        return pragmas(q._putter)
    finally:
        q.close()


SYSTEM = System(
    name="persist-queue SQLiteAckQueue",
    durability_evidence=(
        "sqlbase.py sets only PRAGMA journal_mode=WAL; synchronous stays SQLite's default "
        "(FULL on common builds: fsync per commit); auto_commit=True, one transaction per "
        "put, per get (mark unack) and per ack."
    ),
    requires=("persistqueue",),
    distribution="persist-queue",
    probe=_probe,
)


def _submit(threads: int) -> Callable[[RunContext], Sample]:
    def run(ctx: RunContext) -> Sample:
        q = open_queue(ctx.workdir, multithreading=threads > 1)
        payload = ctx.payload
        try:

            def make_op(_thread: int) -> Op:
                return lambda _i: q.put(payload)

            return time_threads(make_op, threads, ctx.ops)
        finally:
            q.close()

    return run


def _claim_complete(ctx: RunContext) -> Sample:
    q = open_queue(ctx.workdir, multithreading=False)
    try:
        for _ in range(ctx.ops):
            q.put(ctx.payload)

        def op(_i: int) -> None:
            item = q.get(block=False, raw=True)
            q.ack(id=item["pqid"])

        return time_calls(op, ctx.ops)
    finally:
        q.close()


def workloads() -> list[Workload]:
    """persist-queue workloads; durability as its defaults give it (see module doc)."""
    return [
        *(
            Workload(
                name=f"persist-queue.submit.t{t}",
                system=SYSTEM,
                kind="submit",
                durability=Durability.FSYNC_PER_OP,
                run=_submit(t),
                size=SizeClass.DURABLE,
                threads=t,
                baseline=FDATASYNC_PER_OP,
                note="put(); no batch API" + ("" if t == 1 else "; multithreading=True"),
            )
            for t in (1, 8, 32)
        ),
        Workload(
            name="persist-queue.claim-complete",
            system=SYSTEM,
            kind="claim-complete",
            durability=Durability.FSYNC_PER_OP,
            run=_claim_complete,
            size=SizeClass.DURABLE,
            baseline=FDATASYNC_PER_OP,
            note="get() + ack(): 2 transactions per item",
        ),
    ]
