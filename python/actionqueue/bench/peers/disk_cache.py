"""diskcache's ``Deque``: append, and popleft.

Durability, from diskcache 5.6 ``diskcache/core.py`` ``DEFAULT_SETTINGS``:
``sqlite_journal_mode='wal'`` and ``sqlite_synchronous=1`` (NORMAL), applied as PRAGMAs on
every connection, so commits are **not** fsynced (os-buffered). ``Deque()`` builds
``Cache(directory, eviction_policy='none')`` with those defaults. The ``diskcache-full``
variant uses ``Deque.fromcache(Cache(dir, eviction_policy='none', sqlite_synchronous=2))``, a
documented setting, for fsync-per-op durability. ``append`` runs ``push`` inside
``transact()`` (``BEGIN IMMEDIATE`` ... ``COMMIT``); ``popleft`` is ``pull``, one transaction
that selects and deletes (no ack). Thread-safe: one SQLite connection per thread; concurrent
writers contend on SQLite's file lock and its busy handler (which sleeps while it waits).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actionqueue.bench.peers._sqlite import default_and_full_workloads, pragmas
from actionqueue.bench.timing import Op, time_calls, time_threads
from actionqueue.bench.workload import RunContext, Sample, System, Workload


def open_queue(workdir: Path, full: bool) -> Any:
    """A diskcache Deque in ``workdir``; ``full`` sets sqlite_synchronous=2."""
    diskcache = importlib.import_module("diskcache")
    settings: dict[str, Any] = {"eviction_policy": "none"}
    if full:
        settings["sqlite_synchronous"] = 2
    cache = diskcache.Cache(str(workdir / "dc"), **settings)
    return diskcache.Deque.fromcache(cache)


def _probe_for(full: bool) -> Callable[[Path], dict[str, str]]:
    def probe(workdir: Path) -> dict[str, str]:
        d = open_queue(workdir, full)
        try:
            return pragmas(d.cache._con)
        finally:
            d.cache.close()

    return probe


DEFAULT = System(
    name="diskcache Deque (default)",
    durability_evidence=(
        "core.py DEFAULT_SETTINGS: sqlite_journal_mode='wal', sqlite_synchronous=1 (NORMAL): "
        "no fsync per commit."
    ),
    requires=("diskcache",),
    distribution="diskcache",
    probe=_probe_for(False),
)
FULL = System(
    name="diskcache Deque (sqlite_synchronous=2)",
    durability_evidence=(
        "Cache(..., sqlite_synchronous=2) (a documented setting) makes every commit fsync the WAL."
    ),
    requires=("diskcache",),
    distribution="diskcache",
    probe=_probe_for(True),
)


def _append(full: bool, threads: int) -> Callable[[RunContext], Sample]:
    def run(ctx: RunContext) -> Sample:
        d = open_queue(ctx.workdir, full)
        payload = ctx.payload
        try:

            def make_op(_thread: int) -> Op:
                return lambda _i: d.append(payload)

            return time_threads(make_op, threads, ctx.ops)
        finally:
            d.cache.close()

    return run


def _popleft(full: bool) -> Callable[[RunContext], Sample]:
    def run(ctx: RunContext) -> Sample:
        d = open_queue(ctx.workdir, full)
        try:
            d.extend([ctx.payload] * ctx.ops)
            return time_calls(lambda _i: d.popleft(), ctx.ops)
        finally:
            d.cache.close()

    return run


def workloads() -> list[Workload]:
    """diskcache workloads at its own durability (NORMAL) and with sqlite_synchronous=2."""
    return default_and_full_workloads(
        "diskcache",
        (DEFAULT, FULL),
        _append,
        _popleft,
        submit_note="Deque.append(); no batch API",
        threaded_note="; conn per thread",
        claim_note="Deque.popleft(): 1 transaction per item, no ack",
    )
