"""A real full filesystem (a tiny tmpfs): a clear typed error naming ENOSPC, nothing half
written, and a reopen after space is freed recovers every acknowledged commit.

Injected ENOSPC/EIO on every operation are covered in Rust (`rust/wal/crash_tests.rs`,
`rust/authority_fault_tests.rs`); this checks the same promise against the kernel's own
``ENOSPC``. It needs permission to mount a tmpfs (root, as on the project's machines and CI)
and is skipped otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from actionqueue.core import RunPolicy, TaskId, TaskPayload, TaskSpec
from actionqueue.engine import Engine, ManualClock
from actionqueue.errors import ActionQueueError, StorageError, StorageFailedError
from actionqueue.storage.mutation import StorageMutationAuthority

pytestmark = pytest.mark.timeout(60)

T0 = 1_700_000_000_000
# No snapshots: the point is the WAL on a full disk (a snapshot of this state would not fit).
SMALL = {
    "segment_size": 128 * 1024,
    "preallocate": 16 * 1024,
    "snapshot_every": 0,
    "snapshot_on_close": False,
}


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _spec() -> TaskSpec:
    return TaskSpec(TaskId.new(), TaskPayload(b"p" * 3000), RunPolicy.once())


def test_a_full_disk_refuses_commits_and_loses_nothing_acknowledged(tiny_fs: Path) -> None:
    filler = tiny_fs / "filler"  # room to free later, as an operator would
    filler.write_bytes(b"\0" * 96 * 1024)
    data = tiny_fs / "queue"
    auth = StorageMutationAuthority.open(data, **SMALL)
    engine = Engine(auth, ManualClock(T0))
    acknowledged: list[TaskId] = []
    failure: StorageError | None = None
    for _ in range(1_000):  # the disk holds far fewer than this
        try:
            acknowledged.append(engine.submit(_spec()))
        except StorageError as e:
            failure = e
            break
    assert failure is not None, "the tiny filesystem never filled up"
    assert acknowledged, "nothing fit before the disk was full"
    text = str(failure)
    assert "No space left" in text or str(errno.ENOSPC) in text, text
    # The disk filled while the WAL preallocated segment space, so only zeros were at stake:
    # that commit is refused with nothing written and the queue stays consistent and
    # readable; every later commit is refused the same way until space is freed. (A failed
    # write of a record itself would fail the authority instead: covered by the injected
    # faults in rust/authority_fault_tests.rs.)
    with pytest.raises(StorageError, match=r"No space left|28"):
        engine.submit(_spec())
    if auth.failed is None:
        assert auth.task_count == len(acknowledged)
    else:
        with pytest.raises(StorageFailedError, match=r"No space left|28"):
            auth.counts()
    if auth.failed is None:
        # A snapshot cannot fit either: it fails cleanly and gives its partial file back.
        with pytest.raises(StorageError, match=r"No space left|28"):
            auth.snapshot()
        assert not list((data / "snapshots").glob("*.tmp"))
    with contextlib.suppress(ActionQueueError):
        auth.close()

    filler.unlink()
    with StorageMutationAuthority.open(data, **SMALL) as again:
        for task_id in acknowledged:
            assert again.get_task(task_id) is not None, f"acknowledged task {task_id} lost"
        assert len(again.runs_in_state(0, 10_000, None)) >= len(acknowledged)
        Engine(again, ManualClock(T0)).submit(_spec())  # usable again once space is back
