"""actionqueue's own workloads, and the hook for adding more.

Our API is being built while this harness is; every workload here checks what it needs with
imports and attribute look-ups and raises :class:`Unavailable` (reported as skipped, with the
reason) when it is absent or shaped differently. Nothing here is imported statically, so the
harness runs on a tree that has no WAL yet.

Written against the API announced in issue 3 and docs/DESIGN.md::

    from actionqueue.storage.wal.fs_writer import WalFsWriter
    w = WalFsWriter(directory)
    w.append([event_tuple, ...], durability)   # durability.name in {"IMMEDIATE", "DEFERRED"}

To add a workload once an API lands, write a ``run(ctx) -> Sample`` function (see
:mod:`actionqueue.bench.timing`) and pass a :class:`Workload` to :func:`register_ours`, or add
it to :func:`workloads` below.
"""

from __future__ import annotations

import importlib
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actionqueue.bench.baselines import BATCH_1000, FDATASYNC_PER_OP, NO_SYNC
from actionqueue.bench.durability import Durability
from actionqueue.bench.timing import Op, time_calls, time_threads
from actionqueue.bench.workload import (
    FULL,
    RunContext,
    Sample,
    SizeClass,
    System,
    Unavailable,
    Workload,
)

WAL_WRITER_MODULE = "actionqueue.storage.wal.fs_writer"
WAL_READER_MODULE = "actionqueue.storage.wal.fs_reader"

#: Where a DurabilityPolicy-like type may live, most specific first.
_DURABILITY_HOMES = (
    ("actionqueue.storage.wal.fs_writer", "DurabilityPolicy"),
    ("actionqueue.storage.wal.fs_writer", "Durability"),
    ("actionqueue.storage.wal", "DurabilityPolicy"),
    ("actionqueue.storage.wal", "Durability"),
    ("actionqueue.core.mutation", "DurabilityPolicy"),
    ("actionqueue", "DurabilityPolicy"),
)

_registered: list[Workload] = []


def register_ours(workload: Workload) -> None:
    """Add one of our workloads to every later harness run in this process."""
    if any(w.name == workload.name for w in _registered):
        raise ValueError(f"workload {workload.name!r} is already registered")
    _registered.append(workload)


def _import(module: str, issue: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Unavailable(f"{module} is not importable yet ({issue}): {exc}") from None


def _durability(name: str) -> object:
    """The durability object whose ``.name`` is ``name``, wherever the project defines it."""
    for module, attr in _DURABILITY_HOMES:
        try:
            owner = getattr(importlib.import_module(module), attr, None)
        except ImportError:
            continue
        member = getattr(owner, name, None)
        if member is not None and getattr(member, "name", None) == name:
            return member
    raise Unavailable(f"no durability object named {name} in any of {_DURABILITY_HOMES}")


def wal_api() -> tuple[Any, object, object]:
    """``(WalFsWriter, IMMEDIATE, DEFERRED)`` or :class:`Unavailable` saying what is missing."""
    module = _import(WAL_WRITER_MODULE, "issue 3")
    writer = getattr(module, "WalFsWriter", None)
    if writer is None or not callable(getattr(writer, "append", None)):
        raise Unavailable(f"{WAL_WRITER_MODULE}.WalFsWriter with an append() method is missing")
    return writer, _durability("IMMEDIATE"), _durability("DEFERRED")


def _check_wal() -> str | None:
    try:
        wal_api()
    except Unavailable as exc:
        return str(exc)
    return None


OURS_WAL = System(
    name="actionqueue WAL",
    durability_evidence=(
        "WalFsWriter.append(events, IMMEDIATE) returns after fdatasync of the record "
        "(group commit shares one sync among concurrent appenders); DEFERRED returns after "
        "write(); SPEC §5-§6, issue 3"
    ),
    check=_check_wal,
    is_ours=True,
)


def task_create_event(payload: bytes, at_ms: int) -> tuple[object, ...]:
    """A TaskCreate wire tuple (docs/DESIGN.md) carrying ``payload``: our 100-byte record."""
    spec: tuple[object, ...] = (
        uuid.uuid4().bytes,  # id
        "bench",  # handler
        payload,
        None,  # content_type
        ((0,), (0, None, None)),  # policy: Once, misfire catch_up
        (1, None, None, 0, (0,), (False, False, [])),  # constraints
        (0, [], None),  # metadata: priority, tags, description
        None,  # dedupe_key
    )
    return (0, spec, at_ms, at_ms)


def _open_writer(workdir: Path) -> Any:
    writer_cls, _, _ = wal_api()
    try:
        return writer_cls(str(workdir / "wal"))
    except TypeError as exc:
        raise Unavailable(f"WalFsWriter(directory) signature differs: {exc}") from None


def _close(writer: Any) -> None:
    close = getattr(writer, "close", None)
    if callable(close):
        close()


def _warm_up(writer: Any, event: tuple[object, ...], durability: object) -> None:
    # One untimed append: creates the segment (as the baselines open their file untimed) and
    # turns an API mismatch into a clear "skipped" instead of an error mid-measurement.
    try:
        writer.append([event], durability)
    except (TypeError, ValueError, AttributeError) as exc:
        raise Unavailable(f"WalFsWriter.append([TaskCreate], durability) refused: {exc}") from None


def _wal_append(durability_name: str, threads: int) -> Callable[[RunContext], Sample]:
    def run(ctx: RunContext) -> Sample:
        durability = _durability(durability_name)
        writer = _open_writer(ctx.workdir)
        try:
            now = int(time.time() * 1000)
            _warm_up(writer, task_create_event(ctx.payload, now), durability)
            # Events are built before timing: uuid4 costs about as much as a Deferred append.
            events = [[task_create_event(ctx.payload, now)] for _ in range(ctx.ops)]
            append = writer.append

            def make_op(thread: int) -> Op:
                mine = events[thread::threads]
                return lambda i: append(mine[i], durability)

            return time_threads(make_op, threads, ctx.ops)
        finally:
            _close(writer)

    return run


def _wal_append_batch(durability_name: str, size: int) -> Callable[[RunContext], Sample]:
    def run(ctx: RunContext) -> Sample:
        durability = _durability(durability_name)
        writer = _open_writer(ctx.workdir)
        try:
            now = int(time.time() * 1000)
            _warm_up(writer, task_create_event(ctx.payload, now), durability)
            batches = [
                [task_create_event(ctx.payload, now) for _ in range(size)] for _ in range(ctx.ops)
            ]
            return time_calls(
                lambda i: writer.append(batches[i], durability), ctx.ops, records_per_call=size
            )
        finally:
            _close(writer)

    return run


def _wal_replay(ctx: RunContext) -> Sample:
    """Events/s of a full scan by WalFsReader over a log written (untimed) just before."""
    reader_module = _import(WAL_READER_MODULE, "issue 3")
    reader_cls = getattr(reader_module, "WalFsReader", None)
    if reader_cls is None:
        raise Unavailable(f"{WAL_READER_MODULE}.WalFsReader is missing")
    durability = _durability("DEFERRED")
    writer = _open_writer(ctx.workdir)
    now = int(time.time() * 1000)
    total = ctx.ops * 1000
    try:
        for _ in range(ctx.ops):
            writer.append([task_create_event(ctx.payload, now) for _ in range(1000)], durability)
    finally:
        _close(writer)
    try:
        reader = reader_cls(str(ctx.workdir / "wal"))
    except TypeError as exc:
        raise Unavailable(f"WalFsReader(directory) signature differs: {exc}") from None
    start = time.perf_counter_ns()
    count = sum(1 for _ in reader)
    elapsed = time.perf_counter_ns() - start
    _close(reader)
    if count < total:
        raise RuntimeError(f"replay read {count} events, expected at least {total}")
    return Sample(count, elapsed / 1e9)


def _wal_workloads() -> list[Workload]:
    out: list[Workload] = [
        Workload(
            name=f"ours-wal-immediate.submit.t{t}",
            system=OURS_WAL,
            kind="submit",
            durability=Durability.GROUP_COMMIT,
            run=_wal_append("IMMEDIATE", t),
            size=SizeClass.DURABLE,
            threads=t,
            baseline=FDATASYNC_PER_OP,
            note="WalFsWriter.append([TaskCreate], IMMEDIATE)",
        )
        for t in (1, 8, 32)
    ]
    out += [
        Workload(
            name="ours-wal-deferred.submit.t1",
            system=OURS_WAL,
            kind="submit",
            durability=Durability.OS_BUFFERED,
            run=_wal_append("DEFERRED", 1),
            size=SizeClass.BUFFERED,
            baseline=NO_SYNC,
            note="WalFsWriter.append([TaskCreate], DEFERRED)",
        ),
        Workload(
            name="ours-wal-immediate.submit-batch-1000",
            system=OURS_WAL,
            kind="submit-batch",
            durability=Durability.FSYNC_PER_BATCH,
            run=_wal_append_batch("IMMEDIATE", 1000),
            size=SizeClass.BATCHES,
            batch=1000,
            baseline=BATCH_1000,
            note="one append of 1000 TaskCreate events (one record, one sync)",
        ),
        Workload(
            name="ours-wal-deferred.submit-batch-1000",
            system=OURS_WAL,
            kind="submit-batch",
            durability=Durability.OS_BUFFERED,
            run=_wal_append_batch("DEFERRED", 1000),
            size=SizeClass.BATCHES,
            batch=1000,
            baseline=NO_SYNC,
            note="one append of 1000 TaskCreate events",
        ),
        Workload(
            name="ours-wal.replay",
            system=OURS_WAL,
            kind="replay",
            durability=Durability.NOT_APPLICABLE,
            run=_wal_replay,
            size=SizeClass.BATCHES,
            note="full scan with WalFsReader; records/s = events/s",
        ),
    ]
    return out


# --- authority, engine, recovery (issue 4, issue 5) ------------------------------------------

AUTHORITY_MODULE = "actionqueue.storage.mutation"
RECOVERY_MODULE = "actionqueue.storage.recovery"
ENGINE_MODULE = "actionqueue.engine"


def _check_authority() -> str | None:
    try:
        mod = _import(AUTHORITY_MODULE, "issue 4")
    except Unavailable as exc:
        return str(exc)
    cls = getattr(mod, "StorageMutationAuthority", None)
    if cls is None or not callable(getattr(cls, "submit_wire", None)):
        return f"{AUTHORITY_MODULE}.StorageMutationAuthority.submit_wire is missing"
    return None


OURS_AUTHORITY = System(
    name="actionqueue authority",
    durability_evidence=(
        "StorageMutationAuthority.submit_wire(events, IMMEDIATE): validated by the reducer's dry "
        "run, appended as one WAL record and applied; returns after fdatasync (group commit "
        "with concurrent submitters); DEFERRED returns after write(); SPEC §5, issue 4"
    ),
    check=_check_authority,
    is_ours=True,
)


def _open_authority(workdir: Path, **options: Any) -> Any:
    if (reason := _check_authority()) is not None:
        raise Unavailable(reason)
    bootstrap = getattr(_import(RECOVERY_MODULE, "issue 4"), "bootstrap", None)
    if bootstrap is None:
        raise Unavailable(f"{RECOVERY_MODULE}.bootstrap is missing")
    options.setdefault("snapshot_every", 0)
    options.setdefault("snapshot_on_close", False)
    authority, report = bootstrap(str(workdir / "data"), **options)
    return authority, report


def _authority_submit(durability_name: str, threads: int) -> Callable[[RunContext], Sample]:
    def run(ctx: RunContext) -> Sample:
        durability = _durability(durability_name)
        auth, _ = _open_authority(ctx.workdir)
        try:
            now = int(time.time() * 1000)
            auth.submit_wire([task_create_event(ctx.payload, now)], durability)
            records = [[task_create_event(ctx.payload, now)] for _ in range(ctx.ops)]
            submit = auth.submit_wire

            def make_op(thread: int) -> Op:
                mine = records[thread::threads]
                return lambda i: submit(mine[i], durability)

            return time_threads(make_op, threads, ctx.ops)
        finally:
            auth.close()

    return run


def _authority_batches(
    durability_name: str, size: int, prepare: Callable[[Any, RunContext, int, object], Op]
) -> Callable[[RunContext], Sample]:
    """Times ``ctx.ops`` calls of ``size`` records each on a fresh authority, after one untimed
    warm-up submit; ``prepare(auth, ctx, now, durability)`` builds everything the calls need
    before the clock starts and returns the call (``call(i)`` makes the i-th)."""

    def run(ctx: RunContext) -> Sample:
        durability = _durability(durability_name)
        auth, _ = _open_authority(ctx.workdir)
        try:
            now = int(time.time() * 1000)
            auth.submit_wire([task_create_event(ctx.payload, now)], durability)
            call = prepare(auth, ctx, now, durability)
            return time_calls(call, ctx.ops, records_per_call=size)
        finally:
            auth.close()

    return run


def _authority_batch(durability_name: str, size: int) -> Callable[[RunContext], Sample]:
    """``size`` TaskCreate wire tuples per record through ``submit_wire``."""

    def prepare(auth: Any, ctx: RunContext, now: int, durability: object) -> Op:
        batches = [
            [task_create_event(ctx.payload, now) for _ in range(size)] for _ in range(ctx.ops)
        ]
        submit = auth.submit_wire
        return lambda i: submit(batches[i], durability)

    return _authority_batches(durability_name, size, prepare)


def _authority_uniform(durability_name: str, size: int) -> Callable[[RunContext], Sample]:
    """The task batch API: ``size`` tasks of one template per record through
    ``submit_uniform_wire`` (what ``ActionQueue.submit_many`` uses) — the same TaskCreate
    events as :func:`_authority_batch`, without a wire tuple per event."""

    def prepare(auth: Any, ctx: RunContext, now: int, durability: object) -> Op:
        from actionqueue.core.ids import random_id_bytes

        if not callable(getattr(auth, "submit_uniform_wire", None)):
            raise Unavailable("StorageMutationAuthority.submit_uniform_wire is missing")
        template = task_create_event(ctx.payload, now)[1]
        payloads = [(ctx.payload, None)] * size
        ids = [random_id_bytes(size) for _ in range(ctx.ops)]
        submit = auth.submit_uniform_wire
        return lambda i: submit(template, payloads, (), now, now, ids[i], durability)

    return _authority_batches(durability_name, size, prepare)


def _authority_async(concurrency: int) -> Callable[[RunContext], Sample]:
    """``concurrency`` asyncio tasks on one event loop, each awaiting its Immediate submits."""

    def run(ctx: RunContext) -> Sample:
        import asyncio

        durability = _durability("IMMEDIATE")
        auth, _ = _open_authority(ctx.workdir)
        if not callable(getattr(auth, "submit_wire_async", None)):
            auth.close()
            raise Unavailable("StorageMutationAuthority.submit_wire_async is missing")
        try:
            now = int(time.time() * 1000)
            auth.submit_wire([task_create_event(ctx.payload, now)], durability)
            records = [[task_create_event(ctx.payload, now)] for _ in range(ctx.ops)]
            latencies: list[int] = []
            clock = time.perf_counter_ns

            async def producer(k: int) -> None:
                submit = auth.submit_wire_async
                for r in records[k::concurrency]:
                    t = clock()
                    await submit(r, durability)
                    latencies.append(clock() - t)

            async def main() -> int:
                start = clock()
                await asyncio.gather(*(producer(k) for k in range(concurrency)))
                return clock() - start

            elapsed = asyncio.run(main())
            return Sample(ctx.ops, elapsed / 1e9, latencies)
        finally:
            auth.close()

    return run


def _engine_drain(durability_name: str) -> Callable[[RunContext], Sample]:
    """Drain N Ready runs one at a time: ``dispatch_next`` (Ready -> Leased -> Running + attempt
    start, one record) then ``finish_attempt`` (attempt finish + Completed, one record)."""

    def run(ctx: RunContext) -> Sample:
        engine_mod = _import(ENGINE_MODULE, "issue 5")
        core = _import("actionqueue.core", "issue 2")
        durability = _durability(durability_name)
        deferred = _durability("DEFERRED")
        auth, _ = _open_authority(ctx.workdir)
        try:
            clock = engine_mod.ManualClock(int(time.time() * 1000))
            engine = engine_mod.Engine(auth, clock, owner="bench", durability=durability)
            spec, task_id, once = core.TaskSpec, core.TaskId, core.RunPolicy.once()
            for i in range(0, ctx.ops, 5_000):
                engine.submit_many(
                    [
                        spec(task_id.new(), ctx.payload, once)
                        for _ in range(min(5_000, ctx.ops - i))
                    ],
                    durability=deferred,
                )
            engine.tick()
            auth.flush()
            success = core.AttemptOutcome.SUCCESS
            dispatch, finish = engine.dispatch_next, engine.finish_attempt

            def op(_i: int) -> None:
                (d,) = dispatch(limit=1)
                finish(d.run_id, d.attempt_id, success)

            return time_calls(op, ctx.ops)
        finally:
            auth.close()

    return run


def _history(workdir: Path, runs: int, snapshot: bool, payload: bytes) -> Path:
    """A data directory holding ``runs`` finished runs (9 events each), closed cleanly with
    (or without) a snapshot at the end."""
    auth, _ = _open_authority(workdir, snapshot_on_close=snapshot)
    now = int(time.time() * 1000)
    chunk: list[list[tuple[object, ...]]] = []
    deferred = _durability("DEFERRED")
    for i in range(runs):
        task = task_create_event(payload, now)
        t = task[1][0]  # type: ignore[index]
        r, a = uuid.uuid4().bytes, uuid.uuid4().bytes
        chunk += [
            [task, (1, r, t, 0, now, now), (2, r, 0, 1, None, None, now)],
            [
                (2, r, 1, 2, None, None, now),
                (5, r, "bench", now + 30_000, now),
                (2, r, 2, 3, None, None, now),
                (3, r, a, now),
            ],
            [(4, r, a, 0, None, None, now + i), (2, r, 3, 6, None, None, now + i)],
        ]
        if len(chunk) >= 3_000:
            auth.submit_many_wire(chunk, deferred)
            chunk = []
    if chunk:
        auth.submit_many_wire(chunk, deferred)
    auth.close()
    return workdir


def _recovery(runs: int, snapshot: bool) -> Callable[[RunContext], Sample]:
    """Open time of a data directory with ``runs`` finished runs: records/s = events of
    history per second of open; the latency column is the open itself."""

    def run(ctx: RunContext) -> Sample:
        _history(ctx.workdir, runs, snapshot, ctx.payload)
        samples: list[int] = []
        for _ in range(min(ctx.ops, 3)):
            start = time.perf_counter_ns()
            auth, report = _open_authority(ctx.workdir)
            samples.append(time.perf_counter_ns() - start)
            used = report.snapshot_path is not None
            auth.close()
            if used != snapshot:
                raise RuntimeError(f"recovery used a snapshot: {used}, expected {snapshot}")
        return Sample(runs * 9 * len(samples), sum(samples) / 1e9, samples)

    return run


def _restart(ctx: RunContext) -> Sample:
    """SPEC 10's restart: a million finished runs and a snapshot in ``--full`` (its 100
    batches); 10k runs per batch otherwise, so the quick run stays quick."""
    runs = 1_000_000 if ctx.ops >= FULL.batches else 10_000 * ctx.ops
    return _recovery(runs, True)(ctx)


def _replay(ctx: RunContext) -> Sample:
    """Replay events/s (the reducer over the log, no snapshot), from the recovery report."""
    runs = 20_000 * max(1, ctx.ops // 10)
    _history(ctx.workdir, runs, False, ctx.payload)
    auth, report = _open_authority(ctx.workdir)
    auth.close()
    return Sample(report.events_replayed, max(report.replay_ms, 1e-3) / 1000)


def _authority_workloads() -> list[Workload]:
    out: list[Workload] = []
    for t in (1, 8, 32):
        out.append(
            Workload(
                name=f"ours-authority-immediate.submit.t{t}",
                system=OURS_AUTHORITY,
                kind="submit",
                durability=Durability.GROUP_COMMIT,
                run=_authority_submit("IMMEDIATE", t),
                size=SizeClass.DURABLE,
                threads=t,
                baseline=FDATASYNC_PER_OP,
                note="submit_wire([TaskCreate], IMMEDIATE): check + append + apply + sync",
            )
        )
    for c in (8, 32):
        out.append(
            Workload(
                name=f"ours-authority-immediate.submit-async.c{c}",
                system=OURS_AUTHORITY,
                kind="submit-async",
                durability=Durability.GROUP_COMMIT,
                run=_authority_async(c),
                size=SizeClass.DURABLE,
                threads=c,
                baseline=FDATASYNC_PER_OP,
                note=f"{c} asyncio tasks on one loop awaiting submit_wire_async(IMMEDIATE)",
            )
        )
    for t in (1, 8, 32):
        out.append(
            Workload(
                name=f"ours-authority-deferred.submit.t{t}",
                system=OURS_AUTHORITY,
                kind="submit",
                durability=Durability.OS_BUFFERED,
                run=_authority_submit("DEFERRED", t),
                size=SizeClass.BUFFERED,
                threads=t,
                baseline=NO_SYNC,
                note="submit_wire([TaskCreate], DEFERRED)",
            )
        )
    out += [
        Workload(
            name="ours-authority-immediate.submit-batch-1000",
            system=OURS_AUTHORITY,
            kind="submit-batch",
            durability=Durability.FSYNC_PER_BATCH,
            run=_authority_batch("IMMEDIATE", 1000),
            size=SizeClass.BATCHES,
            batch=1000,
            baseline=BATCH_1000,
            note="one submit_wire of 1000 TaskCreate events (one record, one sync)",
        ),
        Workload(
            name="ours-authority-deferred.submit-batch-1000",
            system=OURS_AUTHORITY,
            kind="submit-batch",
            durability=Durability.OS_BUFFERED,
            run=_authority_batch("DEFERRED", 1000),
            size=SizeClass.BATCHES,
            batch=1000,
            baseline=NO_SYNC,
            note="one submit_wire of 1000 TaskCreate events",
        ),
        Workload(
            name="ours-authority-immediate.submit-uniform-1000",
            system=OURS_AUTHORITY,
            kind="submit-batch",
            durability=Durability.FSYNC_PER_BATCH,
            run=_authority_uniform("IMMEDIATE", 1000),
            size=SizeClass.BATCHES,
            batch=1000,
            baseline=BATCH_1000,
            note="the task batch API: 1000 tasks of one template, one submit_uniform_wire "
            "(one record, one sync)",
        ),
        Workload(
            name="ours-authority-deferred.submit-uniform-1000",
            system=OURS_AUTHORITY,
            kind="submit-batch",
            durability=Durability.OS_BUFFERED,
            run=_authority_uniform("DEFERRED", 1000),
            size=SizeClass.BATCHES,
            batch=1000,
            baseline=NO_SYNC,
            note="the task batch API: 1000 tasks of one template, one submit_uniform_wire",
        ),
        Workload(
            name="ours-engine-immediate.claim-complete",
            system=OURS_AUTHORITY,
            kind="claim-complete",
            durability=Durability.GROUP_COMMIT,
            run=_engine_drain("IMMEDIATE"),
            size=SizeClass.DURABLE,
            baseline=FDATASYNC_PER_OP,
            note="Engine.dispatch_next(limit=1) + finish_attempt: 2 records, 2 syncs per run",
        ),
        Workload(
            name="ours-engine-deferred.claim-complete",
            system=OURS_AUTHORITY,
            kind="claim-complete",
            durability=Durability.OS_BUFFERED,
            run=_engine_drain("DEFERRED"),
            size=SizeClass.BUFFERED,
            baseline=NO_SYNC,
            note="Engine.dispatch_next(limit=1) + finish_attempt, no handler",
        ),
    ]
    for runs in (10_000, 50_000):
        for snap in (False, True):
            how = "snapshot" if snap else "full-replay"
            out.append(
                Workload(
                    name=f"ours-recovery.open-{how}.{runs // 1000}k-runs",
                    system=OURS_AUTHORITY,
                    kind="recovery",
                    durability=Durability.NOT_APPLICABLE,
                    run=_recovery(runs, snap),
                    size=SizeClass.BATCHES,
                    note=(
                        f"bootstrap() of {runs:,} finished runs ({runs * 9:,} events) "
                        + ("from a snapshot + empty tail" if snap else "by replaying the log")
                        + "; records/s = history events per second of open, latency = one open"
                    ),
                )
            )
    out.append(
        Workload(
            name="ours-recovery.open-snapshot.restart",
            system=OURS_AUTHORITY,
            kind="recovery",
            durability=Durability.NOT_APPLICABLE,
            run=_restart,
            size=SizeClass.BATCHES,
            note=(
                "bootstrap() of 1M finished runs (9M events) from a snapshot + empty tail in "
                "--full (10k runs per batch otherwise); target: one open < 1 s (latency column)"
            ),
        )
    )
    out.append(
        Workload(
            name="ours-recovery.replay",
            system=OURS_AUTHORITY,
            kind="replay",
            durability=Durability.NOT_APPLICABLE,
            run=_replay,
            size=SizeClass.BATCHES,
            note="reducer replay of finished-run lifecycles (recovery report's replay_ms)",
        )
    )
    return out


# --- runtime (issue 6) -----------------------------------------------------------------------

OURS_RUNTIME = System(
    name="actionqueue runtime",
    durability_evidence=(
        "ActionQueue.open(dir, durability=...): every state change of a run goes through the "
        "WAL at that durability; SPEC §9, issue 6"
    ),
    check=lambda: None if _facade() is not None else "actionqueue.ActionQueue (issue 6) is absent",
    is_ours=True,
)


def _facade() -> Any:
    return getattr(importlib.import_module("actionqueue"), "ActionQueue", None)


#: Tasks per ``submit_many`` call in the lifecycle rows (one WAL record each).
LIFECYCLE_BATCH = 1_000


def _lifecycle(durability_name: str, batched: bool) -> Callable[[RunContext], Sample]:
    """Submit N no-op tasks, then time ``run_until_idle()`` draining them (issue 6 example).

    ``batched`` submits with ``submit_many`` (``LIFECYCLE_BATCH`` tasks per record): the row
    SPEC §10's lifecycle targets read, since it measures the runtime's own work per run
    (dispatch, handler, finish records) rather than one submit round trip per task — single
    Immediate submits from one thread cannot beat the fsync rate, whatever the runtime does.
    The unbatched row (one ``submit`` per task) is kept next to it for that reason.
    """

    def run(ctx: RunContext) -> Sample:
        facade = _facade()
        if facade is None:
            raise Unavailable("actionqueue.ActionQueue (issue 6) is absent")
        durability = _durability(durability_name)
        try:
            q = facade.open(str(ctx.workdir / "aq"), durability=durability)
        except TypeError as exc:
            raise Unavailable(f"ActionQueue.open(dir, durability=...) differs: {exc}") from None
        try:
            q.handler("bench-noop")(lambda _ctx, _payload: None)
            start = time.perf_counter_ns()
            if batched:
                for i in range(0, ctx.ops, LIFECYCLE_BATCH):
                    q.submit_many("bench-noop", [ctx.payload] * min(LIFECYCLE_BATCH, ctx.ops - i))
            else:
                for _ in range(ctx.ops):
                    q.submit("bench-noop", ctx.payload)
            q.run_until_idle()
            elapsed = time.perf_counter_ns() - start
            return Sample(ctx.ops, elapsed / 1e9)
        finally:
            _close(q)

    return run


def _latency(durability_name: str) -> Callable[[RunContext], Sample]:
    """Submit -> handler start on an idle queue (background dispatch loop running): one task
    at a time; the latency column is the delay from ``submit()`` being called to the
    handler's first line."""

    def run(ctx: RunContext) -> Sample:
        import threading

        facade = _facade()
        if facade is None:
            raise Unavailable("actionqueue.ActionQueue (issue 6) is absent")
        durability = _durability(durability_name)
        q = facade.open(str(ctx.workdir / "aq"), durability=durability)
        started: list[int] = []
        ran = threading.Event()
        clock = time.perf_counter_ns

        def handler(_ctx: object, _payload: object) -> None:
            started.append(clock())
            ran.set()

        try:
            q.handler("bench-latency")(handler)
            q.start()
            latencies: list[int] = []
            calls = min(ctx.ops, 300)
            begin = clock()
            for _ in range(calls):
                ran.clear()
                t = clock()
                q.submit("bench-latency", ctx.payload)
                if not ran.wait(10):
                    raise RuntimeError("the handler did not start within 10 s")
                latencies.append(started[-1] - t)
            return Sample(calls, (clock() - begin) / 1e9, latencies)
        finally:
            _close(q)

    return run


def _runtime_workloads() -> list[Workload]:
    out = [
        Workload(
            name=f"ours-runtime-{name.lower()}.lifecycle{suffix}",
            system=OURS_RUNTIME,
            kind="lifecycle",
            durability=durability,
            run=_lifecycle(name, batched),
            size=size,
            batch=LIFECYCLE_BATCH if batched else 1,
            note=(
                f"submit_many ({LIFECYCLE_BATCH:,} tasks per record) + run_until_idle(), no-op "
                "handler, default executor"
                if batched
                else "one submit() per task + run_until_idle(), no-op handler, default executor"
            ),
        )
        for batched, suffix in ((True, ""), (False, "-single-submits"))
        for name, durability, size in (
            ("DEFERRED", Durability.OS_BUFFERED, SizeClass.BUFFERED),
            # Batched, Immediate costs one sync per record, not per task: size it like the
            # buffered rows so the run is long enough to mean something.
            (
                "IMMEDIATE",
                Durability.GROUP_COMMIT,
                SizeClass.BUFFERED if batched else SizeClass.DURABLE,
            ),
        )
    ]
    out += [
        Workload(
            name=f"ours-runtime-{name.lower()}.latency",
            system=OURS_RUNTIME,
            kind="latency",
            durability=durability,
            run=_latency(name),
            size=SizeClass.DURABLE,
            note="submit -> handler start, one task at a time, background loop (q.start())",
        )
        for name, durability in (
            ("DEFERRED", Durability.OS_BUFFERED),
            ("IMMEDIATE", Durability.GROUP_COMMIT),
        )
    ]
    return out


def workloads() -> list[Workload]:
    """Our workloads: WAL, authority/engine/recovery, runtime, then anything added with
    :func:`register_ours`."""
    return [*_wal_workloads(), *_authority_workloads(), *_runtime_workloads(), *_registered]
