"""huey's SQLite storage (what ``SqliteHuey`` uses), driven directly: enqueue and dequeue.

Durability, from huey 3.5 ``huey/storage.py`` ``SqliteStorage``: ``journal_mode='wal'``; the
``fsync`` argument defaults to ``None``, which leaves ``synchronous`` at SQLite's compiled
default (FULL on common builds: fsync per commit); ``fsync=True`` sets ``synchronous=2``
(FULL) and ``fsync=False`` sets ``synchronous=0`` (OFF: never syncs). One connection shared
by all threads behind ``storage.lock``; ``enqueue`` is one autocommit INSERT; ``dequeue`` is
one ``BEGIN EXCLUSIVE`` transaction that selects and deletes the task (no ack: a consumer that
crashes after dequeue loses the task, so one transaction per claimed item).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actionqueue.bench.baselines import FDATASYNC_PER_OP, NO_SYNC
from actionqueue.bench.durability import Durability
from actionqueue.bench.peers._sqlite import pragmas
from actionqueue.bench.timing import Op, time_calls, time_threads
from actionqueue.bench.workload import RunContext, Sample, SizeClass, System, Workload


def open_queue(workdir: Path, fsync: bool | None) -> Any:
    """huey's SqliteStorage in ``workdir``; ``fsync=None`` is huey's default."""
    storage = importlib.import_module("huey.storage")
    return storage.SqliteStorage(name="bench", filename=str(workdir / "huey.db"), fsync=fsync)


def _probe_for(fsync: bool | None) -> Callable[[Path], dict[str, str]]:
    def probe(workdir: Path) -> dict[str, str]:
        s = open_queue(workdir, fsync)
        try:
            return pragmas(s.conn)
        finally:
            s.close()

    return probe


DEFAULT = System(
    name="huey SqliteStorage (default)",
    durability_evidence=(
        "SqliteStorage(fsync=None) default: journal_mode=wal, synchronous left at SQLite's "
        "default (FULL on common builds: fsync per commit)."
    ),
    requires=("huey.storage",),
    distribution="huey",
    probe=_probe_for(None),
)
NO_FSYNC = System(
    name="huey SqliteStorage (fsync=False)",
    durability_evidence=(
        "SqliteStorage(fsync=False) sets PRAGMA synchronous=0 (OFF): commits are never "
        "synced; a power loss can lose acknowledged tasks."
    ),
    requires=("huey.storage",),
    distribution="huey",
    probe=_probe_for(False),
)


def _enqueue(fsync: bool | None, threads: int) -> Callable[[RunContext], Sample]:
    def run(ctx: RunContext) -> Sample:
        s = open_queue(ctx.workdir, fsync)
        payload = ctx.payload
        try:

            def make_op(_thread: int) -> Op:
                return lambda _i: s.enqueue(payload)

            return time_threads(make_op, threads, ctx.ops)
        finally:
            s.close()

    return run


def _dequeue(fsync: bool | None) -> Callable[[RunContext], Sample]:
    def run(ctx: RunContext) -> Sample:
        s = open_queue(ctx.workdir, fsync)
        try:
            for _ in range(ctx.ops):
                s.enqueue(ctx.payload)
            return time_calls(lambda _i: s.dequeue(), ctx.ops)
        finally:
            s.close()

    return run


def workloads() -> list[Workload]:
    """huey storage workloads at its default durability and with fsync=False."""
    out: list[Workload] = []
    for fsync, system, tag in ((None, DEFAULT, "default"), (False, NO_FSYNC, "nofsync")):
        durable = fsync is None
        durability = Durability.FSYNC_PER_OP if durable else Durability.OS_BUFFERED
        size = SizeClass.DURABLE if durable else SizeClass.BUFFERED
        base = FDATASYNC_PER_OP if durable else NO_SYNC
        out += [
            Workload(
                name=f"huey-{tag}.submit.t{t}",
                system=system,
                kind="submit",
                durability=durability,
                run=_enqueue(fsync, t),
                size=size,
                threads=t,
                baseline=base,
                note="storage.enqueue(); no batch API; one connection + lock",
            )
            for t in (1, 8, 32)
        ]
        out.append(
            Workload(
                name=f"huey-{tag}.claim-complete",
                system=system,
                kind="claim-complete",
                durability=durability,
                run=_dequeue(fsync),
                size=size,
                baseline=base,
                note="storage.dequeue(): select + delete in 1 transaction, no ack",
            )
        )
    return out
