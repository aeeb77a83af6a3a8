"""Opening a data directory from the CLI: a lock-free read-only view, or the locked writer.

**Read-only view** (inspection commands): the newest valid snapshot that is not newer than the
log (see :func:`_build_view`) is loaded into a standalone
:class:`~actionqueue.storage.recovery.reducer.ReplayReducer` and the WAL after it is replayed,
without taking the directory lock and without writing a byte. It works while a queue has the
directory open: the reader stops at the end of what was written (a record still being written
looks like a crash tail and is left out), so the view is the state as of the last complete
record, and the writer's appends, preallocation and rotations are never mistaken for corruption
(``docs/FORMAT.md`` §6). If a checkpoint deletes the segments or snapshots being read meanwhile
(the reader then finds a file gone: ``ENOENT``), the view is built again, a bounded number of
times (:func:`vanished`).

**Writer** (commands that change something): :func:`open_authority` runs the normal recovery
(``bootstrap``), which takes the lock; a live queue makes it fail with ``DataDirLockedError``.

Neither ever creates the data directory: a missing or foreign directory is an error, so the CLI
never writes outside a directory actionqueue created.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from actionqueue.cli.errors import CliError
from actionqueue.core.ids import RunId, TaskId
from actionqueue.core.run.run_instance import RunInstance
from actionqueue.core.run.state import RunState
from actionqueue.errors import RecoveryError, SnapshotError, WalCorruptionError
from actionqueue.storage import snapshot as snapshots
from actionqueue.storage._queries import ProjectionQueries, TaskRecord
from actionqueue.storage.mutation import StorageMutationAuthority
from actionqueue.storage.recovery.bootstrap import bootstrap
from actionqueue.storage.recovery.reducer import ReplayReducer
from actionqueue.storage.wal.fs_reader import WalFsReader
from actionqueue.storage.wal.fs_writer import DEFAULT_MAX_RECORD_SIZE, WalFsWriter

__all__ = [
    "ReadView",
    "check_data_dir",
    "iter_runs",
    "list_tasks",
    "log_last_sequence",
    "open_authority",
    "read_view",
    "resolve_id",
    "set_aside_newer_snapshots",
    "vanished",
]

_PAGE = 1024

#: How many times a read is started again when a live writer's checkpoint deletes files under it.
READ_ATTEMPTS = 5


def vanished(exc: BaseException) -> bool:
    """Whether ``exc`` says a file disappeared under a lock-free reader (``ENOENT``).

    The only thing that deletes files in a data directory is a live writer's checkpoint after a
    snapshot (old WAL segments, snapshots past ``keep_snapshots``). The Rust reader reports it
    as ``StorageIOError`` with ``errno`` ENOENT, Python's own calls as ``FileNotFoundError``;
    either way the reader listed files that are gone now, and reading again lists what is
    there (a newer snapshot and the segments after it).
    """
    return isinstance(exc, OSError) and exc.errno == errno.ENOENT


def wal_dir(data_dir: str) -> str:
    return os.path.join(data_dir, "wal")


def snapshot_dir(data_dir: str) -> str:
    return os.path.join(data_dir, "snapshots")


def looks_like_data_dir(path: str) -> bool:
    """Whether ``path`` holds only what actionqueue writes (``wal/``, ``snapshots/``)."""
    try:
        names = set(os.listdir(path))
    except OSError:
        return False
    return "wal" in names and names <= {"wal", "snapshots"}


def check_data_dir(data_dir: str) -> None:
    """Refuses a missing directory or one that is not an actionqueue data directory."""
    if not os.path.exists(data_dir):
        raise CliError(
            f"no data directory at {data_dir}",
            "pass --data-dir (or set ACTIONQUEUE_DATA_DIR); `actionqueue demo` creates "
            "./actionqueue-data",
            "no_data_dir",
        )
    if not os.path.isdir(data_dir):
        raise CliError(f"{data_dir} is not a directory", None, "no_data_dir")
    if not os.path.isdir(wal_dir(data_dir)):
        raise CliError(
            f"{data_dir} is not an actionqueue data directory (it has no wal/ directory)",
            "pass the directory given to ActionQueue.open() / bootstrap()",
            "no_data_dir",
        )


@dataclass
class ReadView:
    """The state of a data directory, read without the lock."""

    data_dir: str
    state: ReplayReducer
    snapshot_sequence: int | None
    records_replayed: int
    events_replayed: int
    torn_tail: dict[str, object] | None
    snapshots_skipped: list[tuple[str, str]] = field(default_factory=list)
    max_record_size: int = DEFAULT_MAX_RECORD_SIZE


def _segment_firsts(wal: str) -> list[int]:
    """The first sequences the segments' names carry (``docs/FORMAT.md`` §2)."""
    return [int(n[:-4]) for n in os.listdir(wal) if n.endswith(".wal") and n[:-4].isdigit()]


def _log_reaches(wal: str, sequence: int, max_record_size: int) -> bool:
    """Whether the log holds ``sequence`` (or went past it: a segment named after it exists,
    so the writer had written it when creating that segment)."""
    if any(first > sequence for first in _segment_firsts(wal)):
        return True
    return bool(WalFsReader(wal, start=sequence, max_record_size=max_record_size).read_batch(1))


def log_last_sequence(wal: str, *, max_record_size: int = DEFAULT_MAX_RECORD_SIZE) -> int:
    """The log's last sequence (0: no records), reading only its last segment (records up to
    ``max_record_size`` bytes)."""
    firsts = _segment_firsts(wal)
    if not firsts:
        return 0
    last = max(firsts) - 1  # a segment's name is the first sequence it holds or would hold
    reader = WalFsReader(wal, start=max(firsts), max_record_size=max_record_size)
    while batch := reader.read_batch(65_536):
        last = batch[-1][0]
    return last


def _build_view(data_dir: str, max_record_size: int) -> ReadView:
    """The newest usable snapshot + the WAL after it (or the whole WAL), reading records of up
    to ``max_record_size`` bytes.

    A snapshot newer than the log describes a history the log no longer has (the log was cut
    by ``wal repair`` or restored from an older copy): it is skipped with that reason, as
    opening the queue does (``docs/durability.md``, "What happens at restart"), but left in
    place: the view never writes. The next queue open renames it to ``<name>.stale``.
    """
    wal = wal_dir(data_dir)
    snap_dir = snapshot_dir(data_dir)
    skipped: list[tuple[str, str]] = []
    for f in snapshots.list_snapshots(snap_dir) if os.path.isdir(snap_dir) else []:
        try:
            state = snapshots.load(f.path)
        except (SnapshotError, OSError) as exc:
            if vanished(exc):
                raise  # deleted by a checkpoint since listed: the view is built again
            skipped.append((f.path, str(exc)))
            continue
        records, events = state.replay_wal(wal, max_record_size=max_record_size)
        # Nothing after the snapshot: normal when it was taken at the end of the log, unless
        # the log ends before it (checked only then: it costs a read of the last segment).
        if records == 0 and not _log_reaches(wal, f.sequence, max_record_size):
            last = log_last_sequence(wal, max_record_size=max_record_size)
            skipped.append(
                (
                    f.path,
                    f"snapshot at sequence {f.sequence} is newer than the log (last sequence "
                    f"{last}): it describes a history this log no longer has "
                    "(cut by repair, or restored from an older copy); not used (the next queue "
                    "open renames it to .stale)",
                )
            )
            continue
        return _finish_view(data_dir, state, f.sequence, records, events, skipped, max_record_size)
    state = ReplayReducer()
    records, events = state.replay_wal(wal, max_record_size=max_record_size)
    return _finish_view(data_dir, state, None, records, events, skipped, max_record_size)


def _finish_view(
    data_dir: str,
    state: ReplayReducer,
    seq: int | None,
    records: int,
    events: int,
    skipped: list[tuple[str, str]],
    max_record_size: int,
) -> ReadView:
    reader = WalFsReader(
        wal_dir(data_dir), start=state.latest_sequence + 1, max_record_size=max_record_size
    )
    for _entry in reader:
        pass  # normally nothing: replay_wal read it all; this finds the torn tail, if any
    return ReadView(
        data_dir,
        state,
        seq,
        records,
        events,
        reader.torn_tail,
        snapshots_skipped=skipped,
        max_record_size=max_record_size,
    )


def set_aside_newer_snapshots(
    data_dir: str, *, max_record_size: int = DEFAULT_MAX_RECORD_SIZE
) -> tuple[int, list[tuple[str, int, str]]]:
    """Renames the snapshots newer than the log to ``<name>.stale`` (``.stale.1``, ... if
    taken), as opening a queue does, holding the directory lock meanwhile; returns the log's
    last sequence and ``(path, sequence, renamed_to)`` for each. For ``wal repair``, right
    after it cut the log (with the ``max_record_size`` it read the log with: the writer's
    recovery reads the last segment).

    An empty log is left alone with its snapshots: opening refuses that case (the snapshots
    hold the state, the log is what is missing) and so does this.
    """
    snap_dir = snapshot_dir(data_dir)
    # Opening the WAL's writer takes the lock and writes nothing to a sound log.
    with WalFsWriter(wal_dir(data_dir), preallocate=0, max_record_size=max_record_size) as wal:
        last = wal.next_sequence - 1
        if last == 0 or not os.path.isdir(snap_dir):
            return last, []
        moved = [
            (f.path, f.sequence, snapshots.set_aside(f))
            for f in snapshots.list_snapshots(snap_dir)
            if f.sequence > last
        ]
    return last, moved


def read_view(data_dir: str, *, max_record_size: int = DEFAULT_MAX_RECORD_SIZE) -> ReadView:
    """Snapshot + WAL tail, replayed in memory without the lock (see the module docs).
    ``max_record_size``: the largest WAL record read (the CLI's ``--max-record-size``)."""
    check_data_dir(data_dir)
    last: OSError | None = None
    for _ in range(READ_ATTEMPTS):
        try:
            return _build_view(data_dir, max_record_size)
        except RecoveryError as exc:
            # A checkpoint deleted the segments after the snapshot we loaded (a newer snapshot
            # replaced it): the log no longer continues our state. Read again.
            last = exc
        except OSError as exc:
            if not vanished(exc):
                raise
            last = exc  # a segment or snapshot we listed was deleted by a checkpoint
    assert last is not None
    if isinstance(last, RecoveryError):
        raise last  # the same gap every time: the data is damaged, not moving
    raise CliError(
        f"could not read {data_dir}: a live queue's checkpoints deleted the files being read "
        f"{READ_ATTEMPTS} times in a row (last: {last})",
        "run the command again; a queue that snapshots very often "
        "(snapshot_every) makes this likelier",
        "error",
    )


@contextmanager
def open_authority(data_dir: str, **options: object) -> Iterator[StorageMutationAuthority]:
    """The locked writer (full recovery); closed on exit. No snapshot at close unless asked."""
    check_data_dir(data_dir)
    options.setdefault("snapshot_on_close", False)
    options.setdefault("snapshot_every", 0)
    authority, _report = bootstrap(data_dir, **options)  # type: ignore[arg-type]
    try:
        yield authority
    finally:
        authority.close()


def iter_runs(
    q: ProjectionQueries,
    states: list[RunState] | None = None,
    *,
    tag: str | None = None,
    handler: str | None = None,
) -> Iterator[RunInstance]:
    """Every run held, state by state (each state in its index order); with ``tag`` /
    ``handler``, only the runs of tasks carrying that tag / routed to that handler (filtered
    in the core, without a run tuple for every run left out)."""
    filters = {"tag": tag, "handler": handler} if tag is not None or handler is not None else {}
    for st in states if states else list(RunState):
        cursor: bytes | None = None
        while True:
            rows, cursor = q.runs_page(st, _PAGE, cursor, **filters)
            for row in rows:
                yield RunInstance.from_wire(row)
            if cursor is None:
                break


def list_tasks(view: ReadView) -> list[TaskRecord]:
    """Every task held, oldest first (creation time, then creation order).

    The projection has no task listing, so ids come from the runs held and from the TaskCreate
    events still in the WAL (a task created before the snapshot whose runs were all pruned is
    not listed; it is finished anyway, or it would still have runs).

    Tasks created in the same millisecond are ordered by WAL sequence: the TaskCreate's when the
    log still holds it, else the earliest sequence among its runs (runs are created with or
    after their task, so both keys follow creation order).
    """
    order: dict[bytes, int] = {}
    for run in iter_runs(view.state):
        key = run.task_id.bytes
        seq = run.created_seq if run.created_seq is not None else 0  # the store always sets it
        order[key] = min(order.get(key, seq), seq)
    for _ in range(READ_ATTEMPTS):
        try:
            for entry in WalFsReader(wal_dir(view.data_dir), max_record_size=view.max_record_size):
                if entry.event[0] == 0:
                    key = entry.event[1][0]
                    order[key] = min(order.get(key, entry.sequence), entry.sequence)
        except WalCorruptionError:
            break  # the view was built; listing what it knows beats failing here
        except OSError as exc:
            if not vanished(exc):
                raise
            # A checkpoint deleted the segment being read: scan what is left (the keys found
            # so far are WAL sequences too, so they still order the tasks).
            continue
        break
    out = [t for t in (view.state.get_task(i) for i in order) if t is not None]
    out.sort(key=lambda t: (t.created_at, order[t.task_id.bytes]))
    return out


def resolve_id(q: ProjectionQueries, text: str, view: ReadView | None = None) -> TaskId | RunId:
    """A run or task id from its text or a unique prefix of it (like git's short hashes)."""
    needle = text.strip().lower()
    if not needle:
        raise CliError("empty id", None, "usage")
    try:
        rid = RunId(needle)
    except ValueError:
        rid = None
    if rid is not None:
        if q.get_run(rid) is not None:
            return rid
        tid = TaskId(needle)
        if q.get_task(tid) is not None:
            return tid
        raise CliError(
            f"no task or run with id {text}",
            "list ids with `actionqueue tasks` or `actionqueue runs` (pruned ones are gone)",
            "not_found",
        )
    bare = needle.replace("-", "")
    if len(bare) < 4 or any(c not in "0123456789abcdef" for c in bare):
        raise CliError(
            f"{text!r} is not an id",
            "give a run or task id (a UUID) or at least 4 leading hex digits of one",
            "usage",
        )
    found: dict[str, TaskId | RunId] = {}
    for run in iter_runs(q):
        if run.run_id.bytes.hex().startswith(bare):
            found[str(run.run_id)] = run.run_id
        if run.task_id.bytes.hex().startswith(bare):
            found[str(run.task_id)] = run.task_id
    if view is not None and not found:
        for t in list_tasks(view):
            if t.task_id.bytes.hex().startswith(bare):
                found[str(t.task_id)] = t.task_id
    if not found:
        raise CliError(
            f"no task or run id starts with {text}",
            "list ids with `actionqueue tasks` or `actionqueue runs`",
            "not_found",
        )
    if len(found) > 1:
        some = ", ".join(sorted(found)[:4])
        raise CliError(f"id prefix {text} is ambiguous: {some}", "give more digits", "usage")
    return next(iter(found.values()))
