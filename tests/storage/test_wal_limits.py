"""WalFsWriter / WalFsReader at their limits: the lock when LOCK is deleted, append_many's
all-or-nothing validation, the end of the sequence space, preallocate and argument checks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from wal_samples import uid

from actionqueue import errors
from actionqueue.storage.recovery import bootstrap
from actionqueue.storage.wal import MAX_SEQUENCE, WalFsReader, WalFsWriter, verify


def read_all(path: Path) -> list[tuple[int, tuple[object, ...]]]:
    return [(e.sequence, e.event) for e in WalFsReader(path)]


def test_deleting_the_lock_file_does_not_let_a_second_writer_in(tmp_path: Path) -> None:
    w1 = WalFsWriter(tmp_path)
    w1.append((10, 1), "immediate")
    os.unlink(tmp_path / "LOCK")
    with pytest.raises(errors.DataDirLockedError) as info:
        WalFsWriter(tmp_path)
    assert info.value.path == str(tmp_path)
    # A replacement LOCK file does not help either.
    (tmp_path / "LOCK").write_bytes(b"")
    with pytest.raises(errors.DataDirLockedError):
        WalFsWriter(tmp_path)
    assert w1.append((10, 2), "immediate") == (2, 2)
    w1.close()
    with WalFsWriter(tmp_path) as w2:
        assert w2.append((11, 3), "immediate") == (3, 3)
    assert read_all(tmp_path) == [(1, (10, 1)), (2, (10, 2)), (3, (11, 3))]


@pytest.mark.parametrize(
    ("batches", "error"),
    [
        ([[(10, 2)], [(9, uid(1), "x" * 5000, 2)]], errors.RecordTooLargeError),
        ([[(10, 2)], [], [(10, 3)]], errors.ValidationError),
        ([[(10, 2)], [(10, "bad")], [(10, 3)]], errors.WrongTypeError),
        ([[(10, 2)], "not a batch"], errors.WrongTypeError),
    ],
    ids=["oversized", "empty-batch", "wrong-type", "not-a-batch"],
)
def test_append_many_writes_nothing_when_any_batch_is_bad(
    tmp_path: Path, batches: list[Any], error: type[Exception]
) -> None:
    with WalFsWriter(tmp_path, max_record_size=1000) as w:
        w.append((10, 1), "immediate")
        with pytest.raises(error):
            w.append_many(batches, "immediate")
        assert (w.next_sequence, w.synced_sequence) == (2, 1)
        assert w.stats().appends == 1
        assert w.append_many([[(10, 2)], [(10, 3), (10, 4)]], "immediate") == 4
        assert w.synced_sequence == 4
    assert [s for s, _ in read_all(tmp_path)] == [1, 2, 3, 4]


def test_the_end_of_the_sequence_space_is_refused_and_the_log_stays_usable(
    tmp_path: Path,
) -> None:
    with WalFsWriter(tmp_path, start_sequence=MAX_SEQUENCE - 1, preallocate=0) as w:
        with pytest.raises(errors.ValidationError, match="last sequence"):
            w.append([(10, 1), (10, 2), (10, 3)], "immediate")
        with pytest.raises(errors.ValidationError, match="last sequence"):
            w.append_many([[(10, 1)], [(10, 2), (10, 3)]], "immediate")
        assert w.next_sequence == MAX_SEQUENCE - 1
        assert w.append([(10, 1), (10, 2)], "immediate") == (MAX_SEQUENCE - 1, MAX_SEQUENCE)
        with pytest.raises(errors.ValidationError, match="last sequence"):
            w.append((10, 3), "immediate")
    assert read_all(tmp_path) == [(MAX_SEQUENCE - 1, (10, 1)), (MAX_SEQUENCE, (10, 2))]
    assert verify(tmp_path).last_sequence == MAX_SEQUENCE
    with WalFsWriter(tmp_path) as w:
        assert w.next_sequence == MAX_SEQUENCE + 1


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"start_sequence": 2**64}, errors.ValidationError, "start_sequence"),
        ({"start_sequence": 2**64 - 1}, errors.ValidationError, "start_sequence"),
        ({"start_sequence": 0}, errors.ValidationError, "start_sequence"),
        ({"start_sequence": "1"}, errors.WrongTypeError, "start_sequence"),
        ({"segment_size": -1}, errors.ValidationError, "segment_size"),
        ({"max_record_size": 2**64}, errors.ValidationError, "max_record_size"),
        ({"preallocate": -1}, errors.ValidationError, "preallocate"),
        ({"preallocate": 2**62}, errors.ValidationError, "preallocate"),
        ({"preallocate": 2**30 + 1}, errors.ValidationError, "preallocate"),
        ({"preallocate": 1.5}, errors.WrongTypeError, "preallocate"),
    ],
)
def test_writer_arguments_are_checked_before_anything_is_created(
    tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], names: str
) -> None:
    with pytest.raises(error, match=names):
        WalFsWriter(tmp_path / "wal", **kwargs)
    assert not (tmp_path / "wal").exists()


def test_reader_arguments_are_checked(tmp_path: Path) -> None:
    with WalFsWriter(tmp_path) as w:
        w.append([(10, 1), (10, 2)], "immediate")
    with pytest.raises(errors.ValidationError, match="batch_size"):
        WalFsReader(tmp_path, batch_size=0)
    with pytest.raises(errors.ValidationError, match="start"):
        WalFsReader(tmp_path, start=2**64)
    with pytest.raises(errors.ValidationError, match="start"):
        WalFsReader(tmp_path, start=-1)
    r = WalFsReader(tmp_path)
    for bad in (0, -1, 2**64):
        with pytest.raises(errors.ValidationError, match="max_events"):
            r.read_batch(bad)
    with pytest.raises(errors.WrongTypeError, match="max_events"):
        r.read_batch("3")  # type: ignore[arg-type]
    with pytest.raises(errors.ValidationError, match="sequence"):
        r.seek(-1)
    with pytest.raises(errors.WrongTypeError, match="sequence"):
        r.seek("3")  # type: ignore[arg-type]
    with (
        pytest.raises(errors.ValidationError, match="expected_sequence"),
        WalFsWriter(tmp_path) as w,
    ):
        w.append((10, 3), "immediate", expected_sequence=-1)
    r.seek(2)
    assert [e.sequence for e in r] == [2]
    assert [s for s, _ in read_all(tmp_path)] == [1, 2]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"preallocate": -1}, errors.ValidationError),
        ({"preallocate": 2**62}, errors.ValidationError),
        ({"segment_size": 2**64}, errors.ValidationError),
        ({"max_record_size": "big"}, errors.WrongTypeError),
        # BUG: these reached the core as they were and came back as a raw OverflowError /
        # TypeError instead of a typed error naming the argument.
        ({"snapshot_every": -1}, errors.ValidationError),
        ({"snapshot_every": 2**64}, errors.ValidationError),
        ({"snapshot_every": 1.5}, errors.WrongTypeError),
        ({"keep_snapshots": -1}, errors.ValidationError),
        ({"max_snapshot_size": -1}, errors.ValidationError),
        ({"sync_interval": "1"}, errors.WrongTypeError),
        ({"snapshot_on_close": "yes"}, errors.WrongTypeError),
        ({"digest": 1}, errors.WrongTypeError),
    ],
)
def test_bootstrap_wal_arguments_are_checked(
    tmp_path: Path, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error, match=next(iter(kwargs))):
        bootstrap(tmp_path / "data", **kwargs)
    assert not (tmp_path / "data").exists()


def test_authority_snapshot_arguments_are_checked(tmp_path: Path) -> None:
    from actionqueue.storage.mutation import StorageMutationAuthority
    from actionqueue.storage.recovery.reducer import ReplayReducer

    with WalFsWriter(tmp_path / "wal") as w:
        for kwargs, error in (
            ({"snapshot_every": -1}, errors.ValidationError),
            ({"keep_snapshots": 2**64}, errors.ValidationError),
            ({"snapshot_on_close": None}, errors.WrongTypeError),
        ):
            with pytest.raises(error, match=next(iter(kwargs))):
                StorageMutationAuthority(w, ReplayReducer(), **kwargs)  # type: ignore[arg-type]
