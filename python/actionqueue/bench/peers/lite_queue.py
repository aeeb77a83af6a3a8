"""litequeue's ``LiteQueue``: put, and pop + done.

Durability, from litequeue 0.9 ``litequeue.py`` ``LiteQueue.__init__``: it always runs
``PRAGMA journal_mode = WAL`` and ``PRAGMA synchronous = NORMAL`` on an autocommit connection,
so commits are **not** fsynced (os-buffered). There is no option for FULL; the
``litequeue-full`` variant sets ``PRAGMA synchronous=FULL`` on ``q.conn`` after opening, a
configuration of ours, to compare at fsync-per-op durability. ``put`` is one INSERT; ``pop`` is
one ``BEGIN IMMEDIATE`` transaction (select + mark locked); ``done`` one UPDATE.
Threads share the queue's single connection (``check_same_thread=False``), which is safe for
single statements because Python's sqlite3 reports ``threadsafety == 3`` (serialized); litequeue
does not document thread safety, and ``pop`` (a multi-statement transaction) is not run from
several threads here.
"""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actionqueue.bench.peers._sqlite import default_and_full_workloads, pragmas
from actionqueue.bench.timing import Op, time_calls, time_threads
from actionqueue.bench.workload import (
    RunContext,
    Sample,
    System,
    Unavailable,
    Workload,
)


def open_queue(workdir: Path, full: bool) -> Any:
    """A LiteQueue in ``workdir``; ``full`` switches its connection to synchronous=FULL."""
    litequeue = importlib.import_module("litequeue")
    q = litequeue.LiteQueue(str(workdir / "litequeue.db"))
    if full:
        q.conn.execute("PRAGMA synchronous=FULL")
    return q


def _probe_for(full: bool) -> Callable[[Path], dict[str, str]]:
    def probe(workdir: Path) -> dict[str, str]:
        q = open_queue(workdir, full)
        try:
            return pragmas(q.conn)
        finally:
            q.close()

    return probe


def _threads_ok() -> str | None:
    if sqlite3.threadsafety != 3:
        return f"sqlite3.threadsafety is {sqlite3.threadsafety}, not 3 (serialized)"
    return None


DEFAULT = System(
    name="litequeue (default)",
    durability_evidence=(
        "LiteQueue.__init__ hard-codes PRAGMA journal_mode=WAL and synchronous=NORMAL: "
        "no fsync per commit."
    ),
    requires=("litequeue",),
    distribution="litequeue",
    probe=_probe_for(False),
)
FULL = System(
    name="litequeue (synchronous=FULL, set by us)",
    durability_evidence=(
        "litequeue has no durability option; the harness runs PRAGMA synchronous=FULL on "
        "q.conn after opening, so each commit fsyncs the WAL."
    ),
    requires=("litequeue",),
    distribution="litequeue",
    probe=_probe_for(True),
)


def _put(full: bool, threads: int) -> Callable[[RunContext], Sample]:
    def run(ctx: RunContext) -> Sample:
        if threads > 1 and (reason := _threads_ok()):
            raise Unavailable(reason)
        q = open_queue(ctx.workdir, full)
        data = ctx.payload.decode("ascii")  # litequeue stores TEXT
        try:

            def make_op(_thread: int) -> Op:
                return lambda _i: q.put(data)

            return time_threads(make_op, threads, ctx.ops)
        finally:
            q.close()

    return run


def _pop_done(full: bool) -> Callable[[RunContext], Sample]:
    def run(ctx: RunContext) -> Sample:
        q = open_queue(ctx.workdir, full)
        data = ctx.payload.decode("ascii")
        try:
            for _ in range(ctx.ops):
                q.put(data)

            def op(_i: int) -> None:
                message = q.pop()
                q.done(message.message_id)

            return time_calls(op, ctx.ops)
        finally:
            q.close()

    return run


def workloads() -> list[Workload]:
    """litequeue workloads at its own durability (NORMAL) and forced to FULL."""
    return default_and_full_workloads(
        "litequeue",
        (DEFAULT, FULL),
        _put,
        _pop_done,
        submit_note="put(); no batch API",
        threaded_note="; one shared connection",
        claim_note="pop() + done(): 2 transactions per item; single thread only",
    )
