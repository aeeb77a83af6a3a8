"""Reading a log while its writer appends: a prefix of the records, never an error.

The writer preallocates zeros ahead of its records (which a reader may have buffered before the
writer overwrote them) and trims them at every rotation (the file shrinks under the reader).
Each test runs a writer thread against a reading loop for a bounded time; a reader that
mistakes the writer for corruption fails them within a few reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from actionqueue.cli.store import read_view
from actionqueue.core.ids import RunId, TaskId
from actionqueue.core.mutation import DurabilityPolicy, RunCreateCommand, TaskCreateCommand
from actionqueue.core.task.run_policy import RunPolicy
from actionqueue.core.task.task_spec import TaskPayload, TaskSpec
from actionqueue.storage.recovery import bootstrap
from actionqueue.storage.wal import WalFsReader, WalFsWriter, verify

SECONDS = 0.6
NOW = 1_700_000_000_000


@contextmanager
def appending(step: Callable[[int], None]) -> Iterator[list[int]]:
    """Runs ``step(i)`` for i = 0, 1, ... in a thread; yields ``[appends done]``."""
    done = [0]
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            while not stop.is_set():
                step(done[0])
                done[0] += 1
        except BaseException as exc:  # reported by the test, not lost in the thread
            failure.append(exc)

    th = threading.Thread(target=run)
    th.start()
    try:
        yield done
    finally:
        stop.set()
        th.join()
    assert not failure, failure


def test_a_live_log_reads_as_a_prefix_holding_every_finished_append(tmp_path: Path) -> None:
    # Small segments and a large preallocation: a rotation (and a shrinking file) every few
    # records, and zeros far ahead of the write position.
    w = WalFsWriter(tmp_path, segment_size=8192, preallocate=256 << 10)
    reads = 0
    with appending(
        lambda i: w.append([(12, i, k) for k in range(8)], "immediate" if i % 7 else "deferred")
    ) as done:
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline or reads < 5:
            before = done[0]  # appends that had returned when this read began
            seqs = [e.sequence for e in WalFsReader(tmp_path)]
            assert seqs == list(range(1, len(seqs) + 1))
            assert len(seqs) >= 8 * before
            reads += 1
    w.close()
    assert verify(tmp_path).events == 8 * done[0]


def test_read_view_of_a_live_queue_never_fails(data_dir: Path) -> None:
    authority, _ = bootstrap(
        data_dir, segment_size=16 << 10, preallocate=256 << 10, snapshot_every=0
    )

    def submit(i: int) -> None:
        spec = TaskSpec(TaskId.new(), TaskPayload(b"p" * 200), RunPolicy.once())
        authority.submit_batch(
            [
                TaskCreateCommand(None, spec, NOW),
                RunCreateCommand(None, RunId.new(), spec.task_id, 0, NOW, NOW),
            ],
            DurabilityPolicy.IMMEDIATE if i % 5 == 0 else DurabilityPolicy.DEFERRED,
        )

    latest = 0
    views = 0
    with appending(submit):
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline or views < 5:
            view = read_view(str(data_dir))
            assert view.state.latest_sequence >= latest
            latest = view.state.latest_sequence
            views += 1
    authority.close()
