"""Physical baselines: what the filesystem itself allows, measured in the same run.

Every other number is divided by one of these, so a loaded or slow machine moves numerator
and denominator together. Records are appended to a file in the same directory tree as the
peers' databases, so the filesystem (and its journal) is the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from actionqueue.bench.durability import Durability
from actionqueue.bench.timing import Op, time_calls, time_threads
from actionqueue.bench.workload import RunContext, Sample, SizeClass, System, Workload

# fdatasync skips the inode-metadata flush that fsync also does; it is what a WAL uses.
# macOS has no os.fdatasync: fall back to fsync there (the table names the call).
_sync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)

BASELINE = System(
    name="baseline",
    durability_evidence=(
        "raw os.write + os.fdatasync on a file in the target directory: the physical limit; "
        "no library code in the loop"
    ),
    is_baseline=True,
)

#: Names other modules refer to when they pick the baseline for their ratios.
FDATASYNC_PER_OP = "baseline.fdatasync-per-op.t1"
NO_SYNC = "baseline.no-sync.t1"
BATCH_1000 = "baseline.batch-1000.one-fdatasync"

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND


def _append_file(workdir: Path) -> int:
    return os.open(workdir / "baseline.log", _OPEN_FLAGS, 0o644)


def _fdatasync_per_op(threads: int) -> Callable[[RunContext], Sample]:
    def run(ctx: RunContext) -> Sample:
        fd = _append_file(ctx.workdir)
        try:
            payload = ctx.payload

            def make_op(_thread: int) -> Op:
                # Threads share one O_APPEND descriptor: the naive "every op syncs" design,
                # so any speed-up with threads is the kernel/journal merging syncs.
                def op(_i: int) -> None:
                    os.write(fd, payload)
                    _sync(fd)

                return op

            return time_threads(make_op, threads, ctx.ops)
        finally:
            os.close(fd)

    return run


def _prealloc_fdatasync(ctx: RunContext) -> Sample:
    # Zero-filled, already-synced file space: fdatasync then only flushes data, no extent or
    # size metadata (SPEC §10 measured ~110 µs here vs ~180 µs for an append).
    size = len(ctx.payload)
    fd = os.open(ctx.workdir / "prealloc.log", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"\0" * (size * ctx.ops))
        os.fsync(fd)
        payload = ctx.payload

        def op(i: int) -> None:
            os.pwrite(fd, payload, i * size)
            _sync(fd)

        return time_calls(op, ctx.ops)
    finally:
        os.close(fd)


def _no_sync(ctx: RunContext) -> Sample:
    fd = _append_file(ctx.workdir)
    try:
        payload = ctx.payload
        return time_calls(lambda _i: os.write(fd, payload), ctx.ops)
    finally:
        os.close(fd)


def _sync_every(k: int) -> Callable[[RunContext], Sample]:
    def run(ctx: RunContext) -> Sample:
        fd = _append_file(ctx.workdir)
        try:
            payload = ctx.payload

            def op(i: int) -> None:
                os.write(fd, payload)
                if i % k == k - 1:
                    _sync(fd)

            sample = time_calls(op, ctx.ops)
            _sync(fd)  # untimed: leave nothing dirty for the next workload to pay for
            return sample
        finally:
            os.close(fd)

    return run


def _batch_one_sync(records: int) -> Callable[[RunContext], Sample]:
    def run(ctx: RunContext) -> Sample:
        fd = _append_file(ctx.workdir)
        try:
            buffer = ctx.payload * records

            def op(_i: int) -> None:
                os.write(fd, buffer)
                _sync(fd)

            return time_calls(op, ctx.ops, records_per_call=records)
        finally:
            os.close(fd)

    return run


def workloads() -> list[Workload]:
    """The baseline workloads, in table order."""
    per_op = [
        Workload(
            name=f"baseline.fdatasync-per-op.t{t}",
            system=BASELINE,
            kind="write",
            durability=Durability.FSYNC_PER_OP,
            run=_fdatasync_per_op(t),
            size=SizeClass.DURABLE,
            threads=t,
            baseline=None if t == 1 else FDATASYNC_PER_OP,
            note="append 100 B + fdatasync" + ("" if t == 1 else f"; {t} threads, one fd"),
        )
        for t in (1, 8, 32)
    ]
    return [
        per_op[0],
        Workload(
            name="baseline.fdatasync-per-op.prealloc",
            system=BASELINE,
            kind="write",
            durability=Durability.FSYNC_PER_OP,
            run=_prealloc_fdatasync,
            size=SizeClass.DURABLE,
            baseline=FDATASYNC_PER_OP,
            note="pwrite into preallocated, zeroed, synced space + fdatasync",
        ),
        *per_op[1:],
        Workload(
            name=NO_SYNC,
            system=BASELINE,
            kind="write",
            durability=Durability.OS_BUFFERED,
            run=_no_sync,
            size=SizeClass.BUFFERED,
            note="append 100 B, no sync",
        ),
        *(
            Workload(
                name=f"baseline.fdatasync-per-{k}",
                system=BASELINE,
                kind="write",
                durability=Durability.FSYNC_EVERY_K,
                run=_sync_every(k),
                size=SizeClass.CEILING,
                baseline=FDATASYNC_PER_OP,
                note=f"append 100 B, one fdatasync per {k} records (group-commit ceiling)",
            )
            for k in (100, 1000)
        ),
        Workload(
            name=BATCH_1000,
            system=BASELINE,
            kind="write-batch",
            durability=Durability.FSYNC_PER_BATCH,
            run=_batch_one_sync(1000),
            size=SizeClass.BATCHES,
            batch=1000,
            baseline=FDATASYNC_PER_OP,
            note="one write of 1000 x 100 B + one fdatasync",
        ),
    ]
