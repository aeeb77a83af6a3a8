"""Helpers shared by the SQLite-based peers."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from actionqueue.bench.baselines import FDATASYNC_PER_OP, NO_SYNC
from actionqueue.bench.durability import Durability
from actionqueue.bench.workload import RunContext, Sample, SizeClass, System, Workload

Run = Callable[[RunContext], Sample]

_SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def pragmas(conn: Any) -> dict[str, str]:
    """The durability-relevant PRAGMAs of a live connection, as the peer configured it."""
    journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    sync = int(conn.execute("PRAGMA synchronous").fetchone()[0])
    return {
        "journal_mode": str(journal),
        "synchronous": f"{sync} ({_SYNCHRONOUS.get(sync, '?')})",
        "sqlite_version": sqlite3.sqlite_version,
    }


def default_and_full_workloads(
    peer: str,
    systems: tuple[System, System],
    submit: Callable[[bool, int], Run],
    claim: Callable[[bool], Run],
    *,
    submit_note: str,
    threaded_note: str,
    claim_note: str,
) -> list[Workload]:
    """Submit (1/8/32 threads) and claim-complete workloads of a peer twice: at its own
    durability (``systems[0]``, os-buffered) and forced to ``synchronous=FULL`` (``systems[1]``,
    one fsync per op), each compared with the baseline of its durability class.
    ``submit(full, threads)`` and ``claim(full)`` build the timed runs."""
    out: list[Workload] = []
    for full, system, tag in ((False, systems[0], "default"), (True, systems[1], "full")):
        durability = Durability.FSYNC_PER_OP if full else Durability.OS_BUFFERED
        size = SizeClass.DURABLE if full else SizeClass.BUFFERED
        base = FDATASYNC_PER_OP if full else NO_SYNC
        out += [
            Workload(
                name=f"{peer}-{tag}.submit.t{t}",
                system=system,
                kind="submit",
                durability=durability,
                run=submit(full, t),
                size=size,
                threads=t,
                baseline=base,
                note=submit_note + ("" if t == 1 else threaded_note),
            )
            for t in (1, 8, 32)
        ]
        out.append(
            Workload(
                name=f"{peer}-{tag}.claim-complete",
                system=system,
                kind="claim-complete",
                durability=durability,
                run=claim(full),
                size=size,
                baseline=base,
                note=claim_note,
            )
        )
    return out
