"""A log written with a larger ``max_record_size`` than it is read with.

Its big records are intact: a smaller reader reports them as too large
(``RecordTooLargeError`` naming segment, offset, sequence and size), never as corruption, and
neither recovery nor ``repair`` cuts anything for them (the adversarial scenario: a 4096-byte
writer limit, read with 1024).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from authority_helpers import T0, create, segments, wal_files
from wal_samples import uid

from actionqueue import errors
from actionqueue.core.ids import TaskId
from actionqueue.core.mutation import DurabilityPolicy
from actionqueue.core.task.constraints import TaskConstraints
from actionqueue.core.task.metadata import TaskMetadata
from actionqueue.core.task.run_policy import RunPolicy
from actionqueue.core.task.task_spec import TaskPayload, TaskSpec
from actionqueue.storage.recovery import bootstrap
from actionqueue.storage.wal import WalFsReader, WalFsWriter, repair, verify

WRITER_MAX = 4096
READER_MAX = 1024
IMM = DurabilityPolicy.IMMEDIATE


def spec(payload: bytes) -> TaskSpec:
    return TaskSpec(
        TaskId.new(), TaskPayload(payload), RunPolicy.once(), TaskConstraints(), TaskMetadata()
    )


def write_wal(path: Path) -> int:
    """Small, big (over READER_MAX), small, with the writer's larger limit. Returns the big
    record's offset."""
    with WalFsWriter(path, max_record_size=WRITER_MAX, preallocate=0) as w:
        w.append((10, 1), "immediate")
        w.append((9, uid(1), "x" * 3000, 2), "immediate")
        w.append((10, 3), "immediate")
    return [e.offset for e in WalFsReader(path, max_record_size=WRITER_MAX)][1]


def check_too_large(exc: errors.RecordTooLargeError, offset: int) -> None:
    assert not isinstance(exc, errors.WalCorruptionError)
    assert exc.segment is not None
    assert exc.segment.endswith(".wal")
    assert (exc.offset, exc.sequence, exc.max_size) == (offset, 2, READER_MAX)
    assert READER_MAX < exc.size <= WRITER_MAX
    assert f"open it with max_record_size >= {exc.size}" in str(exc)


def test_a_smaller_reader_reports_too_large_and_nothing_is_cut(tmp_path: Path) -> None:
    offset = write_wal(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.wal")}
    reader = iter(WalFsReader(tmp_path, max_record_size=READER_MAX, batch_size=1))
    assert next(reader).sequence == 1
    with pytest.raises(errors.RecordTooLargeError) as info:
        next(reader)
    check_too_large(info.value, offset)
    with pytest.raises(errors.RecordTooLargeError) as info:
        verify(tmp_path, max_record_size=READER_MAX)
    check_too_large(info.value, offset)
    for cut in (False, True):
        with pytest.raises(errors.RecordTooLargeError) as info:
            repair(tmp_path, truncate_at_first_corruption=cut, max_record_size=READER_MAX)
        check_too_large(info.value, offset)
    with pytest.raises(errors.RecordTooLargeError):
        WalFsWriter(tmp_path, max_record_size=READER_MAX)
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.wal")} == before
    size = info.value.size
    assert [e.sequence for e in WalFsReader(tmp_path, max_record_size=size)] == [1, 2, 3]
    assert verify(tmp_path, max_record_size=size).events == 3
    assert repair(tmp_path, max_record_size=size).segment is None


def test_bootstrap_with_a_smaller_limit_refuses_without_calling_it_corrupt(
    tmp_path: Path,
) -> None:
    d = tmp_path / "data"
    opts = {"segment_size": 8192, "preallocate": 0, "snapshot_every": 0}
    a, _ = bootstrap(d, max_record_size=WRITER_MAX, snapshot_on_close=False, **opts)
    for payload in (b"a", b"x" * 3000, b"c"):
        a.submit_batch(create(spec(payload), T0)[0], IMM)
    live = a.state_digest()
    a.close()
    before = wal_files(d)
    with pytest.raises(errors.RecordTooLargeError) as info:
        bootstrap(d, max_record_size=READER_MAX, **opts)
    assert info.value.sequence == 3  # the second task's TaskCreate + RunCreate batch
    assert info.value.segment == str(segments(d)[0])
    assert wal_files(d) == before
    b, report = bootstrap(d, max_record_size=WRITER_MAX, digest=True, **opts)
    assert report.digest == live
    b.close()
